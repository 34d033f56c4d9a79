// Package disco answers XEP-0030 service discovery for the server and, on
// behalf of accounts, for their bare JIDs. It owns no feature list of its
// own: every module advertises through hook.Bus.AddFeature, and disco
// reports what the bus holds at query time.
//
// Bare-JID queries follow XEP-0030 §8 (Security Considerations), which
// forbids directory harvesting and leaking presence: disco#info is answered
// only for the account itself and for contacts with a 'from' or 'both'
// subscription (everyone else gets service-unavailable, exactly as for a
// missing account); disco#items lists the account's resources only to the
// account itself and is an empty result for everyone else.
//
// It must not import c2s, s2s, transports or other modules.
package disco

import (
	"context"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Namespaces.
const (
	NSInfo  = "http://jabber.org/protocol/disco#info"
	NSItems = "http://jabber.org/protocol/disco#items"
)

// Store is the roster lookup disco needs to decide who may see an
// account's information.
type Store interface {
	RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, bool, error)
}

// Module is the service discovery responder.
type Module struct {
	bus   *hook.Bus
	store Store
	log   logrus.FieldLogger
}

// New returns the module.
func New(store Store, log logrus.FieldLogger) *Module {
	return &Module{store: store, log: log}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.HandleIQ(hook.AddrHost, NSInfo, "query", m.hostInfo)
	bus.HandleIQ(hook.AddrHost, NSItems, "query", m.hostItems)
	bus.HandleIQ(hook.AddrBare, NSInfo, "query", m.accountInfo)
	bus.HandleIQ(hook.AddrBare, NSItems, "query", m.accountItems)
	bus.AddFeature(hook.AddrHost, NSInfo, NSItems)
	bus.AddFeature(hook.AddrBare, NSInfo, NSItems)
}

// check applies what every disco request needs: type get, and no node,
// since neither the server nor accounts publish any nodes yet.
func check(st *stanza.Stanza) *stanza.Stanza {
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "service discovery is read-only")
	}
	if st.Payload().AttrValue("node") != "" {
		return stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	return nil
}

func (m *Module) hostInfo(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if e := check(st); e != nil {
		return e
	}
	ids := m.bus.Identities()
	hasServer := false
	for _, id := range ids {
		if id.Category == "server" {
			hasServer = true
		}
	}
	// The composition root adds server/im with the configured name; this
	// keeps the reply valid (RFC 6120 servers are category "server") if
	// it did not.
	if !hasServer {
		ids = append([]hook.Identity{{Category: "server", Type: "im"}}, ids...)
	}
	q := stanza.NewElement(NSInfo, "query")
	seen := map[hook.Identity]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			q.Append(identity(id))
		}
	}
	appendFeatures(q, m.bus.Features(hook.AddrHost))
	return st.Result(q)
}

func (m *Module) hostItems(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if e := check(st); e != nil {
		return e
	}
	q := stanza.NewElement(NSItems, "query")
	for _, d := range m.bus.DiscoItems() {
		q.Append(stanza.NewElement(NSItems, "item", "jid", d))
	}
	return st.Result(q)
}

// maySee reports whether from may learn about account: it is the account,
// or the account shares its presence with from (RFC 6121 'from'/'both').
func (m *Module) maySee(ctx context.Context, from, account jid.JID) bool {
	if from.Bare().Equal(account.Bare()) {
		return true
	}
	it, ok, err := m.store.RosterItem(ctx, account.Localpart(), from.Bare().String())
	if err != nil {
		m.log.WithError(err).WithField("user", account.Localpart()).Error("reading roster for disco")
		return false
	}
	return ok && (it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth)
}

func (m *Module) accountInfo(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "service discovery is read-only")
	}
	if !m.maySee(ctx, st.From, st.To) {
		// Indistinguishable from a missing account (XEP-0030 §8).
		return stanza.Bounce(st, stanza.ServiceUnavailable, "")
	}
	if e := check(st); e != nil {
		return e
	}
	q := stanza.NewElement(NSInfo, "query")
	q.Append(identity(hook.Identity{Category: "account", Type: "registered"}))
	appendFeatures(q, m.bus.Features(hook.AddrBare))
	return st.Result(q)
}

func (m *Module) accountItems(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if e := check(st); e != nil {
		return e
	}
	q := stanza.NewElement(NSItems, "query")
	// Resources reveal presence: only the owner sees them. Anyone else
	// gets the empty set XEP-0030 §8 prescribes.
	if st.From.Bare().Equal(st.To.Bare()) {
		for _, s := range m.bus.Sessions().Resources(st.To) {
			q.Append(stanza.NewElement(NSItems, "item", "jid", s.JID.String(), "name", s.JID.Resourcepart()))
		}
	}
	return st.Result(q)
}

func identity(id hook.Identity) *stanza.Element {
	e := stanza.NewElement(NSInfo, "identity", "category", id.Category, "type", id.Type)
	if id.Name != "" {
		e.SetAttr("name", id.Name)
	}
	return e
}

// appendFeatures adds sorted features once each: two modules may
// advertise the same namespace.
func appendFeatures(q *stanza.Element, features []string) {
	for i, f := range features {
		if i > 0 && features[i-1] == f {
			continue
		}
		q.Append(stanza.NewElement(NSInfo, "feature", "var", f))
	}
}
