// Package vcard stores and serves XEP-0054 vcard-temp profiles. Clients
// still use it for the nickname and, via XEP-0153, for avatars of contacts
// that do not publish PEP avatars, so the server answers for every account.
//
// Choices (XEP-0054 leaves them open):
//   - Own vCard with none stored: an empty <vCard/> result. Clients do
//     read-modify-write on their own profile; Conversations and Gajim take
//     an empty result as "no profile yet", while some older clients show
//     an error dialog for item-not-found.
//   - Someone else's vCard with none stored: item-not-found, because
//     XEP-0054 §3.3 requires an error there and both clients handle it as
//     "no avatar".
//   - Only the owner may set; another account's vCard gives forbidden and
//     the server's gives not-allowed (nobody may change it over XMPP).
//   - A vCard larger than the configured cap gives not-acceptable: the
//     request is understood but refused, and the client should shrink the
//     photo. The stanza limit bounds input anyway; the cap bounds storage.
//   - The server's own vCard carries just its configured name.
//
// It must not import c2s, s2s, transports or other modules.
package vcard

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NS is the vcard-temp namespace.
const NS = "vcard-temp"

// DefaultMaxBytes caps one stored vCard (serialized), enough for a
// base64 avatar of typical client size.
const DefaultMaxBytes = 256 << 10

// Store is the vCard storage this module needs.
type Store interface {
	VCard(ctx context.Context, user string) ([]byte, error)
	SetVCard(ctx context.Context, user string, xml []byte) error
}

// Module is the vcard-temp responder.
type Module struct {
	store      Store
	serverName string
	maxBytes   int
	log        logrus.FieldLogger
}

// New returns the module. serverName goes into the server's own vCard;
// maxBytes <= 0 means DefaultMaxBytes.
func New(store Store, serverName string, maxBytes int, log logrus.FieldLogger) *Module {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &Module{store: store, serverName: serverName, maxBytes: maxBytes, log: log}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	bus.HandleIQ(hook.AddrBare, NS, "vCard", m.account)
	bus.HandleIQ(hook.AddrHost, NS, "vCard", m.host)
	bus.AddFeature(hook.AddrHost, NS)
	bus.AddFeature(hook.AddrBare, NS)
}

func (m *Module) host(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.NotAllowed, "the server's vCard cannot be changed")
	}
	v := stanza.NewElement(NS, "vCard")
	if m.serverName != "" {
		v.Append(stanza.NewElement(NS, "FN").AppendText(m.serverName))
	}
	return st.Result(v)
}

func (m *Module) account(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	own := env.Src.Zone == router.ZoneLocal && st.From.Bare().Equal(st.To.Bare())
	user := st.To.Localpart()
	if st.Type == "set" {
		if !own {
			return stanza.Bounce(st, stanza.Forbidden, "only the owner may change a vCard")
		}
		return m.set(ctx, st, user)
	}
	b, err := m.store.VCard(ctx, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading vCard")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	if len(b) == 0 {
		if own {
			return st.Result(stanza.NewElement(NS, "vCard"))
		}
		return stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	v, err := decode(b)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("stored vCard is not XML")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	return st.Result(v)
}

func (m *Module) set(ctx context.Context, st *stanza.Stanza, user string) *stanza.Stanza {
	v := st.Payload()
	var b []byte
	// An empty <vCard/> clears the profile.
	if len(v.Elements()) > 0 {
		b = v.AppendXML(nil, "", stanza.NSClient)
		if len(b) > m.maxBytes {
			return stanza.Bounce(st, stanza.NotAcceptable, fmt.Sprintf("the vCard is larger than %d bytes", m.maxBytes))
		}
	}
	if err := m.store.SetVCard(ctx, user, b); err != nil {
		m.log.WithError(err).WithField("user", user).Error("storing vCard")
		return stanza.Bounce(st, stanza.InternalServerError, "")
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
