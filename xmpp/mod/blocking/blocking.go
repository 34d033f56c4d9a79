// Package blocking implements XEP-0191 blocking command: a per-account
// list of blocked JIDs, managed with blocklist/block/unblock and enforced
// on every stanza between the account and a blocked entity.
//
// Enforcement runs as hooks at priority HookPriority, above every handler
// that delivers or processes stanzas (message, presence: 0..100), so a
// blocked stanza never reaches them:
//
//   - Inbound from a blocked entity (XEP-0191 §3.3): presence is dropped
//     without a reply; iq get/set gets service-unavailable and other iqs
//     are dropped; message of type normal/chat gets service-unavailable
//     (the SHOULD in §3.3; the user then looks like an account that
//     cannot receive) and other message types are dropped.
//   - Outbound from a client to a blocked entity: not-acceptable with
//     <blocked xmlns='urn:xmpp:blocking:errors'/>, sent straight to the
//     sending session. Error stanzas and iq results are dropped instead
//     (they must never be answered with an error), and presence
//     unsubscribe/unsubscribed passes, so a user can still end a
//     subscription with someone they blocked.
//   - Presence the server generates for a local account (broadcasts,
//     probes) towards an entity that account blocked is dropped when it
//     reaches a local recipient. Unavailable presence passes: it only
//     says what blocking implies.
//
// Stanzas from the account itself and from the server are never blocked,
// so blocking one's own domain cannot cut the account off from its server.
// When the blocklist cannot be read, stanzas pass (and the error is
// logged): an outage must not silently eat messages.
//
// It must not import c2s, s2s, transports or other modules.
package blocking

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Namespaces.
const (
	NS       = "urn:xmpp:blocking"
	NSErrors = "urn:xmpp:blocking:errors"
)

// HookPriority is the priority of the enforcement hooks.
const HookPriority = 1000

// MaxItems caps one account's blocklist, which is read per stanza.
const MaxItems = 5000

// interestedKey marks a session that requested the blocklist and so gets
// pushes (XEP-0191 §3.3).
const interestedKey = "blocking.interested"

// Store is the storage this module needs.
type Store interface {
	Blocklist(ctx context.Context, user string) ([]string, error)
	Block(ctx context.Context, user string, jids ...string) error
	Unblock(ctx context.Context, user string, jids ...string) error
	BlockedSet(ctx context.Context, user string) (map[string]struct{}, error)
	Roster(ctx context.Context, user string) ([]storage.RosterItem, uint64, error)
}

// Module is the blocking command module.
type Module struct {
	bus   *hook.Bus
	store Store
	log   logrus.FieldLogger
	ids   atomic.Uint64
}

// New returns the module.
func New(store Store, log logrus.FieldLogger) *Module {
	return &Module{store: store, log: log}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.HandleIQ(hook.AddrHost, NS, "blocklist", m.blocklist)
	bus.HandleIQ(hook.AddrHost, NS, "block", m.block)
	bus.HandleIQ(hook.AddrHost, NS, "unblock", m.unblock)
	bus.AddFeature(hook.AddrHost, NS)
	for _, k := range []stanza.Kind{stanza.KindMessage, stanza.KindPresence, stanza.KindIQ} {
		for _, a := range []hook.Addr{hook.AddrBare, hook.AddrFull} {
			bus.On(hook.Event{Dir: hook.In, Kind: k, Addr: a}, HookPriority, m.inbound)
		}
		for _, a := range []hook.Addr{hook.AddrHost, hook.AddrBare, hook.AddrFull} {
			bus.On(hook.Event{Dir: hook.Out, Kind: k, Addr: a}, HookPriority, m.outbound)
		}
	}
}

// Matches reports whether j is covered by a blocklist entry, using the
// XEP-0191 §4 (XEP-0016) rules: user@domain/resource matches only that
// resource, user@domain any resource, domain/resource only that address,
// and domain the domain, everything at it and its subdomains.
func Matches(set map[string]struct{}, j jid.JID) bool {
	if len(set) == 0 || j.Equal(jid.JID{}) {
		return false
	}
	if _, ok := set[j.String()]; ok {
		return true
	}
	if _, ok := set[j.Bare().String()]; ok {
		return true
	}
	for d := j.Domainpart(); d != ""; {
		if _, ok := set[d]; ok {
			return true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return false
}

// Blocks reports whether local account user has blocked peer. The
// presence module can use it to leave blocked contacts out of broadcasts
// to other servers.
func (m *Module) Blocks(ctx context.Context, user string, peer jid.JID) bool {
	set, err := m.store.BlockedSet(ctx, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading blocklist")
		return false
	}
	return Matches(set, peer)
}

// isServer reports whether j is one of our hosted domains itself.
func (m *Module) isServer(j jid.JID) bool {
	return j.Localpart() == "" && j.Resourcepart() == "" && m.bus.IsHost(j.Domainpart())
}

// isAccount reports whether j is an address of a local account.
func (m *Module) isAccount(j jid.JID) bool {
	return j.Localpart() != "" && m.bus.IsHost(j.Domainpart())
}

// inbound enforces the blocklist of the recipient, and of a local sender
// for the presence the server generates on its behalf.
func (m *Module) inbound(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	owner := st.To
	if owner.Localpart() == "" || st.From.Bare().Equal(owner.Bare()) {
		return false
	}
	if !m.isServer(st.From) && m.Blocks(ctx, owner.Localpart(), st.From) {
		m.refuseInbound(ctx, env)
		return true
	}
	if st.Kind == stanza.KindPresence && (st.Type == "" || st.Type == "probe") &&
		m.isAccount(st.From) && m.Blocks(ctx, st.From.Localpart(), owner) {
		return true
	}
	return false
}

func (m *Module) refuseInbound(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	switch st.Kind {
	case stanza.KindMessage:
		if st.Type == "" || st.Type == "normal" || st.Type == "chat" {
			m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
		}
	case stanza.KindIQ:
		if st.IsRequest() {
			m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
		}
	}
}

// outbound stops a client's stanzas to entities its account blocked.
func (m *Module) outbound(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	to := st.To
	if !m.isAccount(st.From) || to.Bare().Equal(st.From.Bare()) || m.isServer(to) {
		return false
	}
	if st.Kind == stanza.KindPresence && (st.Type == "unsubscribe" || st.Type == "unsubscribed") {
		return false
	}
	if !m.Blocks(ctx, st.From.Localpart(), to) {
		return false
	}
	if st.IsError() || st.Kind == stanza.KindIQ && st.Type == "result" {
		return true
	}
	reply := stanza.ErrorReply(st, stanza.Cancel, stanza.NotAcceptable, "")
	if e := reply.Child("", "error"); e != nil {
		e.Append(stanza.NewElement(NSErrors, "blocked"))
	}
	// Straight to the session: routed, the error (from the blocked JID)
	// would itself be refused by the inbound check.
	if s := m.bus.Sessions().Get(st.From); s != nil {
		_ = s.Send(reply)
	}
	return true
}

// owner returns the account a blocking command is for: only a local
// client may manage its own list, addressed to its bare JID (the usual
// no-'to' form) or to its server.
func (m *Module) owner(env *router.Envelope) (jid.JID, bool) {
	st := env.Stanza
	from := st.From
	if env.Src.Zone != router.ZoneLocal || !m.isAccount(from) {
		return jid.JID{}, false
	}
	if st.To.Equal(from.Bare()) || st.To.Localpart() == "" && st.To.Resourcepart() == "" && st.To.Domainpart() == from.Domainpart() {
		return from.Bare(), true
	}
	return jid.JID{}, false
}

func (m *Module) blocklist(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if _, ok := m.owner(env); !ok {
		return stanza.Bounce(st, stanza.Forbidden, "a blocklist belongs to its owner")
	}
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "the blocklist is changed with block and unblock")
	}
	user := st.From.Localpart()
	list, err := m.store.Blocklist(ctx, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading blocklist")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	if s := m.bus.Sessions().Get(st.From); s != nil {
		s.SetValue(interestedKey, true)
	}
	return st.Result(itemsElement("blocklist", list))
}

// items parses the jid attributes of the <item/> children into
// normalized, distinct JID strings.
func items(p *stanza.Element) ([]string, *stanza.Condition, string) {
	var out []string
	seen := map[string]bool{}
	for _, it := range p.Elements() {
		if it.Name.Local != "item" || it.Name.Space != NS {
			continue
		}
		j, err := jid.Parse(it.AttrValue("jid"))
		if err != nil {
			c := stanza.JIDMalformed
			return nil, &c, fmt.Sprintf("invalid JID %q", it.AttrValue("jid"))
		}
		if s := j.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil, ""
}

func (m *Module) block(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	owner, ok := m.owner(env)
	if !ok {
		return stanza.Bounce(st, stanza.Forbidden, "a blocklist belongs to its owner")
	}
	if st.Type != "set" {
		return stanza.Bounce(st, stanza.BadRequest, "block is an iq set")
	}
	jids, cond, text := items(st.Payload())
	if cond != nil {
		return stanza.Bounce(st, *cond, text)
	}
	if len(jids) == 0 {
		return stanza.Bounce(st, stanza.BadRequest, "block needs at least one item")
	}
	user := owner.Localpart()
	current, err := m.store.BlockedSet(ctx, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading blocklist")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	added := map[string]struct{}{}
	for _, j := range jids {
		if _, ok := current[j]; !ok {
			added[j] = struct{}{}
		}
	}
	if len(current)+len(added) > MaxItems {
		return stanza.Bounce(st, stanza.NotAcceptable, "the blocklist is limited to "+strconv.Itoa(MaxItems)+" entries")
	}
	if err := m.store.Block(ctx, user, jids...); err != nil {
		m.log.WithError(err).WithField("user", user).Error("storing blocklist")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	m.hidePresence(ctx, owner, added)
	// Pushes go out before the result, so a client that sees the result
	// knows every resource has been told.
	m.push(owner, itemsElement("block", jids))
	return st.Result()
}

func (m *Module) unblock(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	owner, ok := m.owner(env)
	if !ok {
		return stanza.Bounce(st, stanza.Forbidden, "a blocklist belongs to its owner")
	}
	if st.Type != "set" {
		return stanza.Bounce(st, stanza.BadRequest, "unblock is an iq set")
	}
	jids, cond, text := items(st.Payload())
	if cond != nil {
		return stanza.Bounce(st, *cond, text)
	}
	user := owner.Localpart()
	current, err := m.store.BlockedSet(ctx, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading blocklist")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	// No items unblocks everything (§3.5).
	removed := map[string]struct{}{}
	if len(jids) == 0 {
		for j := range current {
			removed[j] = struct{}{}
		}
	}
	for _, j := range jids {
		if _, ok := current[j]; ok {
			removed[j] = struct{}{}
		}
	}
	if err := m.store.Unblock(ctx, user, jids...); err != nil {
		m.log.WithError(err).WithField("user", user).Error("storing blocklist")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	m.showPresence(ctx, owner, removed)
	m.push(owner, itemsElement("unblock", jids))
	return st.Result()
}

func itemsElement(local string, jids []string) *stanza.Element {
	e := stanza.NewElement(NS, local)
	for _, j := range jids {
		e.Append(stanza.NewElement(NS, "item", "jid", j))
	}
	return e
}

// push sends a block or unblock push to every resource of owner that
// requested the blocklist. Pushes are the owner's own data, so they go
// straight to the sessions like roster pushes.
func (m *Module) push(owner jid.JID, payload *stanza.Element) {
	for _, s := range m.bus.Sessions().Resources(owner) {
		if s.Value(interestedKey) == nil {
			continue
		}
		id := "block-push-" + strconv.FormatUint(m.ids.Add(1), 10)
		_ = s.Send(&stanza.Stanza{Kind: stanza.KindIQ, Type: "set", ID: id, From: owner, To: s.JID,
			Children: []stanza.Node{{El: payload}}})
	}
}

// presenceTargets returns the roster contacts covered by set that the
// owner shares presence with ('from' or 'both'), and those it is
// subscribed to ('to' or 'both').
func (m *Module) presenceTargets(ctx context.Context, owner jid.JID, set map[string]struct{}) (from, to []jid.JID) {
	if len(set) == 0 {
		return nil, nil
	}
	roster, _, err := m.store.Roster(ctx, owner.Localpart())
	if err != nil {
		m.log.WithError(err).WithField("user", owner.Localpart()).Error("reading roster for blocking")
		return nil, nil
	}
	for _, it := range roster {
		c, err := jid.Parse(it.JID)
		if err != nil || !Matches(set, c) {
			continue
		}
		if it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth {
			from = append(from, c)
		}
		if it.Subscription == storage.SubTo || it.Subscription == storage.SubBoth {
			to = append(to, c)
		}
	}
	return from, to
}

// hidePresence sends unavailable presence from each available resource
// to newly blocked entities that could see it (§3.3): contacts with a
// 'from' subscription and recipients of directed presence.
func (m *Module) hidePresence(ctx context.Context, owner jid.JID, added map[string]struct{}) {
	subscribers, _ := m.presenceTargets(ctx, owner, added)
	for _, s := range m.bus.Sessions().Available(owner) {
		targets := append([]jid.JID(nil), subscribers...)
		targets = append(targets, takeDirected(s, added)...)
		for _, c := range targets {
			m.bus.Send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: s.JID, To: c})
		}
	}
}

// takeDirected removes and returns the session's directed-presence
// recipients that set covers; the others are kept.
func takeDirected(s *sessions.Session, set map[string]struct{}) []jid.JID {
	var out []jid.JID
	for _, d := range s.TakeDirected() {
		if Matches(set, d) {
			out = append(out, d)
		} else {
			s.AddDirected(d)
		}
	}
	return out
}

// showPresence undoes hidePresence for unblocked entities (§3.4): each
// available resource's current presence goes to contacts with a 'from'
// subscription, and contacts the owner is subscribed to are probed so the
// owner sees them again.
func (m *Module) showPresence(ctx context.Context, owner jid.JID, removed map[string]struct{}) {
	subscribers, subscriptions := m.presenceTargets(ctx, owner, removed)
	for _, s := range m.bus.Sessions().Available(owner) {
		p := s.Presence()
		if p == nil {
			continue
		}
		for _, c := range subscribers {
			cp := p.ShallowCopy()
			cp.From, cp.To = s.JID, c
			m.bus.Send(ctx, cp)
		}
	}
	if len(m.bus.Sessions().Available(owner)) == 0 {
		return
	}
	for _, c := range subscriptions {
		m.bus.Send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "probe", From: owner, To: c})
	}
}
