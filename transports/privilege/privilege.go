// Package privilege grants transports the XEP-0356 privileged-entity
// permissions, in both namespaces in use: urn:xmpp:privilege:2 (Slidge) and
// urn:xmpp:privilege:1 (Spectrum 2).
//
//   - roster: get and set the rosters of local users, limited to contacts in
//     the transport's own domain (a transport manages its contacts, never the
//     rest of a roster);
//   - message (outgoing): a transport forwards a message a user sent from the
//     other network's own app; it comes back to the user's clients as a
//     "sent" carbon (XEP-0280) and into the user's archive (XEP-0313);
//   - presence (managed_entity): the transport gets a copy of every local
//     user's broadcast presence.
//
// The module sits on the local zone's hook bus: the stanzas it handles have
// already crossed the boundary once, as they came from the transport zone,
// and what it does with them stays inside the local zone.
package privilege

import (
	"context"
	"errors"
	"sync"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/mod/roster"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Namespaces.
const (
	NS1       = "urn:xmpp:privilege:1"
	NS2       = "urn:xmpp:privilege:2"
	nsForward = "urn:xmpp:forward:0"
)

// Permission values.
const (
	None          = "none"
	Get           = "get"
	Set           = "set"
	Both          = "both"
	Outgoing      = "outgoing"
	ManagedEntity = "managed_entity"
)

// Priority of the module's hooks: above the roster, message and presence
// modules (0), below blocking and policy hooks that must see stanzas first.
const Priority = 50

// Perms are one transport's permissions. Empty values mean none.
type Perms struct {
	Roster   string
	Message  string
	Presence string
	Version  int // 1 or 2; 0 means 2
}

// NS returns the namespace the transport speaks.
func (p Perms) NS() string {
	if p.Version == 1 {
		return NS1
	}
	return NS2
}

func (p Perms) any() bool {
	return nonNone(p.Roster) || nonNone(p.Message) || nonNone(p.Presence)
}

func nonNone(s string) bool { return s != "" && s != None }

func (p Perms) rosterGet() bool { return p.Roster == Get || p.Roster == Both }
func (p Perms) rosterSet() bool { return p.Roster == Set || p.Roster == Both }

// Module is the privileged-entity module.
type Module struct {
	bus    *hook.Bus
	roster *roster.Module
	log    logrus.FieldLogger
	server string // the domain that grants (from of the advertisement)

	mu    sync.RWMutex
	perms map[string]Perms // transport domain → permissions
}

// New returns the module. server is the domain the permission
// advertisement comes from (the primary hosted domain).
func New(r *roster.Module, server string, log logrus.FieldLogger) *Module {
	return &Module{roster: r, server: server, log: log, perms: make(map[string]Perms)}
}

// Grant sets the permissions of the transport serving domain.
func (m *Module) Grant(domain string, p Perms) {
	m.mu.Lock()
	m.perms[domain] = p
	m.mu.Unlock()
}

// Perms returns the permissions of domain.
func (m *Module) Perms(domain string) (Perms, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.perms[domain]
	return p, ok && p.any()
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindIQ, Addr: hook.AddrBare}, Priority, m.rosterIQ)
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindMessage, Addr: hook.AddrHost}, Priority, m.message)
	bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindPresence, Addr: hook.AddrNone}, Priority, m.presence)
	bus.OnSessionEnded(Priority, m.sessionEnded)
}

// Advertisement returns the message that tells the transport serving
// domain its permissions (XEP-0356 §3), or nil when it has none.
func (m *Module) Advertisement(domain string) *stanza.Stanza {
	p, ok := m.Perms(domain)
	if !ok {
		return nil
	}
	ns := p.NS()
	priv := stanza.NewElement(ns, "privilege")
	add := func(access, typ string) {
		if typ == "" {
			typ = None
		}
		priv.Append(stanza.NewElement(ns, "perm", "access", access, "type", typ))
	}
	add("roster", p.Roster)
	add("message", p.Message)
	add("presence", p.Presence)
	from, err := jid.New("", m.server, "")
	if err != nil {
		return nil
	}
	to, err := jid.New("", domain, "")
	if err != nil {
		return nil
	}
	return &stanza.Stanza{Kind: stanza.KindMessage, From: from, To: to, ID: "privilege-" + domain,
		Children: []stanza.Node{{El: priv}}}
}

// from returns the permissions of the transport a stanza comes from: only
// the transport's own domain (no localpart, no resource) speaks for it.
func (m *Module) from(env *router.Envelope) (string, Perms, bool) {
	st := env.Stanza
	if env.Src.Zone != router.ZoneTransport || st.From.Localpart() != "" || st.From.Resourcepart() != "" {
		return "", Perms{}, false
	}
	d := st.From.Domainpart()
	if d != env.Src.Domain {
		return "", Perms{}, false
	}
	p, ok := m.Perms(d)
	return d, p, ok
}

// rosterIQ answers roster get/set from a privileged transport (§4).
func (m *Module) rosterIQ(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	q := st.Payload()
	if q == nil || q.Name.Space != roster.NS || q.Name.Local != "query" {
		return false
	}
	domain, p, ok := m.from(env)
	if !ok {
		return false // the roster module refuses it as for anyone else
	}
	owner := st.To.Bare()
	var reply *stanza.Stanza
	switch {
	case st.Type == "get" && p.rosterGet():
		reply = m.rosterGet(ctx, st, owner, domain)
	case st.Type == "set" && p.rosterSet():
		reply = m.rosterSet(ctx, st, q, owner, domain)
	default:
		reply = stanza.Bounce(st, stanza.Forbidden, "the transport has no such roster permission")
	}
	m.bus.Reply(ctx, env, reply)
	return true
}

func (m *Module) rosterGet(ctx context.Context, st *stanza.Stanza, owner jid.JID, domain string) *stanza.Stanza {
	items, err := m.roster.Items(ctx, owner)
	if err != nil {
		m.log.WithError(err).WithField("user", owner.Localpart()).Error("reading roster for a transport")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	out := stanza.NewElement(roster.NS, "query")
	for _, it := range items {
		if inDomain(it.JID, domain) && roster.Visible(it) {
			out.Append(roster.ItemElement(it))
		}
	}
	return st.Result(out)
}

func inDomain(contact, domain string) bool {
	j, err := jid.Parse(contact)
	return err == nil && j.Domainpart() == domain
}

// rosterSet applies the items of a privileged roster set. Every item must
// be in the transport's domain; nothing is changed otherwise.
func (m *Module) rosterSet(ctx context.Context, st *stanza.Stanza, q *stanza.Element, owner jid.JID, domain string) *stanza.Stanza {
	type change struct {
		contact jid.JID
		remove  bool
		item    storage.RosterItem
	}
	var changes []change
	for _, el := range q.Elements() {
		if el.Name.Local != "item" || el.Name.Space != roster.NS {
			continue
		}
		contact, err := jid.Parse(el.AttrValue("jid"))
		if err != nil || el.AttrValue("jid") == "" {
			return stanza.Bounce(st, stanza.JIDMalformed, "an item's jid is not valid")
		}
		contact = contact.Bare()
		if contact.Domainpart() != domain {
			return stanza.Bounce(st, stanza.Forbidden, "a transport may only manage contacts in its own domain ("+domain+")")
		}
		sub := el.AttrValue("subscription")
		if sub == "remove" {
			changes = append(changes, change{contact: contact, remove: true})
			continue
		}
		switch storage.Subscription(sub) {
		case "", storage.SubNone, storage.SubTo, storage.SubFrom, storage.SubBoth:
		default:
			return stanza.Bounce(st, stanza.BadRequest, "unknown subscription "+sub)
		}
		it := storage.RosterItem{JID: contact.String(), Name: el.AttrValue("name"), Subscription: storage.Subscription(sub)}
		for _, g := range el.Elements() {
			if g.Name.Local == "group" && g.Name.Space == roster.NS && g.Text() != "" && len(it.Groups) < roster.MaxGroups {
				it.Groups = append(it.Groups, g.Text())
			}
		}
		changes = append(changes, change{contact: contact, item: it})
	}
	if len(changes) == 0 {
		return stanza.Bounce(st, stanza.BadRequest, "a roster set carries at least one item")
	}
	for _, c := range changes {
		if c.remove {
			if err := m.roster.Remove(ctx, owner, c.contact); err != nil && !errors.Is(err, storage.ErrNotFound) {
				m.log.WithError(err).WithField("user", owner.Localpart()).Error("transport roster removal")
				return stanza.Bounce(st, stanza.InternalServerError, "")
			}
			continue
		}
		if err := m.update(ctx, owner, c.item); err != nil {
			m.log.WithError(err).WithField("user", owner.Localpart()).Error("transport roster set")
			return stanza.Bounce(st, stanza.InternalServerError, "")
		}
	}
	return st.Result()
}

// update stores an item: name and groups as the transport says; the
// subscription too when it gives one (it knows the other network's state).
func (m *Module) update(ctx context.Context, owner jid.JID, it storage.RosterItem) error {
	unlock := m.roster.Lock(owner.Localpart())
	defer unlock()
	cur, ok, err := m.roster.Item(ctx, owner, mustJID(it.JID))
	if err != nil {
		return err
	}
	if !ok {
		cur = storage.RosterItem{JID: it.JID, Subscription: storage.SubNone}
	}
	cur.Name, cur.Groups = it.Name, it.Groups
	if it.Subscription != "" {
		cur.Subscription = it.Subscription
		cur.Ask, cur.PendingIn = false, false
	}
	return m.roster.Update(ctx, owner, cur)
}

func mustJID(s string) jid.JID {
	j, _ := jid.Parse(s)
	return j
}

// message unwraps a message a transport sends on a user's behalf (§5).
func (m *Module) message(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	domain, p, ok := m.from(env)
	if !ok {
		return false
	}
	priv := st.Child(p.NS(), "privilege")
	if priv == nil {
		// The other version's namespace: tell the transport, do not drop.
		if st.Child(NS1, "privilege") == nil && st.Child(NS2, "privilege") == nil {
			return false
		}
		m.bus.Bounce(ctx, env, stanza.BadRequest, "this server grants privileges in "+p.NS())
		return true
	}
	if p.Message != Outgoing {
		m.bus.Bounce(ctx, env, stanza.Forbidden, "the transport may not send messages on behalf of users")
		return true
	}
	fwd := priv.Child(nsForward, "forwarded")
	var inner *stanza.Element
	if fwd != nil {
		inner = fwd.Child("", "message")
	}
	if inner == nil {
		m.bus.Bounce(ctx, env, stanza.BadRequest, "no forwarded message")
		return true
	}
	msg, err := stanza.FromElement(inner)
	if err != nil {
		m.bus.Bounce(ctx, env, stanza.JIDMalformed, "the forwarded message's addresses are not valid")
		return true
	}
	user := msg.From
	switch {
	case user.Localpart() == "" || !m.bus.IsHost(user.Domainpart()):
		m.bus.Bounce(ctx, env, stanza.Forbidden, "the forwarded message must come from a user of this server")
		return true
	case msg.To.Domainpart() != domain:
		m.bus.Bounce(ctx, env, stanza.Forbidden, "the forwarded message must go to a contact of the transport ("+domain+")")
		return true
	}
	if ok, err := m.bus.Accounts().Exists(ctx, user.Localpart()); err != nil || !ok {
		m.bus.Bounce(ctx, env, stanza.ItemNotFound, "no such user")
		return true
	}
	msg.From = user.Bare()
	// The user's own server processes it as the user's outgoing message:
	// archive and "sent" carbons. It is not routed on: it already went
	// out on the other network, and routing it would cross again.
	out := &router.Envelope{Seq: env.Seq, Stanza: msg, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: user.Domainpart()},
		Flags: router.BoundaryDone}
	m.bus.Outbound(ctx, out)
	return true
}

// presence copies a user's broadcast presence to transports with the
// managed_entity presence permission (§6). It never consumes.
func (m *Module) presence(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if st.Type != "" && st.Type != "unavailable" {
		return false
	}
	for _, d := range m.presenceDomains() {
		c := st.ShallowCopy()
		c.To, _ = jid.New("", d, "")
		m.bus.Send(ctx, c)
	}
	return false
}

func (m *Module) sessionEnded(ctx context.Context, s *sessions.Session) {
	for _, d := range m.presenceDomains() {
		to, _ := jid.New("", d, "")
		m.bus.Send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: s.JID, To: to})
	}
}

func (m *Module) presenceDomains() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	for d, p := range m.perms {
		if p.Presence == ManagedEntity {
			out = append(out, d)
		}
	}
	return out
}
