// Package private implements XEP-0049 private XML storage: one element per
// (namespace, local name) per account, readable and writable only by the
// account itself. Clients still keep XEP-0048 bookmarks and preferences
// here, so it must be reliable but must not become free bulk storage.
//
// Choices (XEP-0049 leaves them open):
//   - Another account's storage: forbidden (the condition §3 prefers).
//   - A set without a child: not-acceptable (§2 MUST); a get without a
//     child or with more than one: bad-request (§2 "Bad Format").
//   - Reserved namespaces (jabber:*, http://jabber.org/*, vcard-temp) and
//     elements without a namespace of their own: not-acceptable, so
//     private storage cannot shadow real protocols.
//   - An element larger than the cap: not-acceptable.
//   - Nothing stored: the requested element comes back empty, as every
//     deployed server does and clients expect.
//
// It must not import c2s, s2s, transports or other modules.
package private

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NS is the XEP-0049 namespace.
const NS = "jabber:iq:private"

// DefaultMaxBytes caps one stored element (serialized); large bookmark
// lists stay well below it.
const DefaultMaxBytes = 256 << 10

// Store is the private XML storage this module needs.
type Store interface {
	Private(ctx context.Context, user, key string) ([]byte, error)
	SetPrivate(ctx context.Context, user, key string, xml []byte) error
}

// Module is the private storage responder.
type Module struct {
	store    Store
	maxBytes int
	log      logrus.FieldLogger
}

// New returns the module; maxBytes <= 0 means DefaultMaxBytes.
func New(store Store, maxBytes int, log logrus.FieldLogger) *Module {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &Module{store: store, maxBytes: maxBytes, log: log}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	bus.HandleIQ(hook.AddrBare, NS, "query", m.handle)
	bus.AddFeature(hook.AddrHost, NS)
}

// Key is the storage key of an element: "namespace localname".
func Key(name xml.Name) string { return name.Space + " " + name.Local }

// Reserved reports whether ns may not be used for private storage: no
// namespace of its own (the stream's), or one of XEP-0049's reserved ones.
func Reserved(ns string) bool {
	return ns == "" || ns == NS || ns == "vcard-temp" ||
		strings.HasPrefix(ns, "jabber:") || strings.HasPrefix(ns, "http://jabber.org/")
}

func (m *Module) handle(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if env.Src.Zone != router.ZoneLocal || !st.From.Bare().Equal(st.To.Bare()) {
		return stanza.Bounce(st, stanza.Forbidden, "private storage belongs to its owner")
	}
	children := st.Payload().Elements()
	for _, c := range children {
		if Reserved(c.Name.Space) {
			return stanza.Bounce(st, stanza.NotAcceptable, "namespace "+c.Name.Space+" is reserved")
		}
	}
	if st.Type == "get" {
		return m.get(ctx, st, children)
	}
	return m.set(ctx, st, children)
}

func (m *Module) get(ctx context.Context, st *stanza.Stanza, children []*stanza.Element) *stanza.Stanza {
	if len(children) != 1 {
		return stanza.Bounce(st, stanza.BadRequest, "a private storage get names exactly one element")
	}
	want := children[0]
	user := st.From.Localpart()
	b, err := m.store.Private(ctx, user, Key(want.Name))
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading private storage")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	el := &stanza.Element{Name: want.Name}
	if len(b) > 0 {
		if el, err = decode(b); err != nil {
			m.log.WithError(err).WithField("user", user).Error("stored private XML is not XML")
			return stanza.Bounce(st, stanza.InternalServerError, "")
		}
	}
	return st.Result(stanza.NewElement(NS, "query").Append(el))
}

// set stores every child under its own key. XEP-0049 allows several
// elements in one set; all are checked before any is written.
func (m *Module) set(ctx context.Context, st *stanza.Stanza, children []*stanza.Element) *stanza.Stanza {
	if len(children) == 0 {
		return stanza.Bounce(st, stanza.NotAcceptable, "nothing to store")
	}
	blobs := make([][]byte, len(children))
	for i, c := range children {
		blobs[i] = c.AppendXML(nil, "", stanza.NSClient)
		if len(blobs[i]) > m.maxBytes {
			return stanza.Bounce(st, stanza.NotAcceptable, fmt.Sprintf("%s is larger than %d bytes", c.Name.Local, m.maxBytes))
		}
	}
	user := st.From.Localpart()
	for i, c := range children {
		if err := m.store.SetPrivate(ctx, user, Key(c.Name), blobs[i]); err != nil {
			m.log.WithError(err).WithField("user", user).Error("storing private XML")
			return stanza.Bounce(st, stanza.InternalServerError, "")
		}
	}
	return st.Result()
}

// decode parses a stored element.
func decode(b []byte) (*stanza.Element, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return stanza.ReadElement(d, se.Copy())
		}
	}
}
