// Package presence implements RFC 6121 presence: the subscription state
// machine with pre-approval and pending states (§3), initial presence with
// probes and broadcast (§4.2–4.4), directed presence (§4.6) and unavailable
// presence when a session ends.
//
// Stanzas it generates go out through the bus, so copies for contacts
// outside the company still cross the router's boundary.
package presence

import (
	"context"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/mod/roster"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Module is the presence module.
type Module struct {
	bus    *hook.Bus
	roster *roster.Module
	log    logrus.FieldLogger
	// blocked reports whether user blocks peer (XEP-0191); presence the
	// server sends on the user's behalf never goes to a blocked peer.
	blocked func(ctx context.Context, user string, peer jid.JID) bool
}

// SetBlocked installs the blocklist check (the blocking module's Blocks).
func (m *Module) SetBlocked(f func(ctx context.Context, user string, peer jid.JID) bool) {
	m.blocked = f
}

// New returns the module; it updates rosters through r.
func New(r *roster.Module, log logrus.FieldLogger) *Module {
	return &Module{roster: r, log: log}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindPresence, Addr: hook.AddrNone}, 0, m.outBroadcast)
	for _, a := range []hook.Addr{hook.AddrHost, hook.AddrBare, hook.AddrFull} {
		bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindPresence, Addr: a}, 0, m.outDirected)
	}
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindPresence, Addr: hook.AddrBare}, 0, m.inBare)
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindPresence, Addr: hook.AddrFull}, 0, m.inFull)
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindPresence, Addr: hook.AddrHost}, 0, m.inHost)
	bus.OnSessionEnded(0, m.sessionEnded)
}

func isSubscription(t string) bool {
	switch t {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		return true
	}
	return false
}

func hasFrom(it storage.RosterItem) bool {
	return it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth
}

func hasTo(it storage.RosterItem) bool {
	return it.Subscription == storage.SubTo || it.Subscription == storage.SubBoth
}

// send routes a server-generated stanza. Availability and probes from a
// user to a peer the user blocks are dropped here, whatever zone the peer
// is in; subscription management still goes through so a user can end a
// subscription with someone they blocked.
func (m *Module) send(ctx context.Context, st *stanza.Stanza) {
	switch st.Type {
	case "", "unavailable", "probe":
		if m.blocked != nil && st.From.Localpart() != "" && m.blocked(ctx, st.From.Localpart(), st.To) {
			return
		}
	}
	m.bus.Send(ctx, st)
}

// copyTo returns a copy of p addressed to to, from from.
func copyTo(p *stanza.Stanza, from, to jid.JID) *stanza.Stanza {
	c := p.ShallowCopy()
	c.From, c.To = from, to
	return c
}

// outBroadcast handles presence without 'to' from a client: initial,
// updated and unavailable presence (RFC 6121 §4.2, §4.4, §4.5).
func (m *Module) outBroadcast(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	s := m.bus.Sessions().Get(st.From)
	if s == nil {
		return true
	}
	switch st.Type {
	case "":
		m.available(ctx, s, st)
	case "unavailable":
		m.unavailable(ctx, s, st)
	default:
		// Subscription requests and probes need a 'to'; errors from a
		// client without one have nowhere to go.
		if st.Type != "error" {
			m.bus.Bounce(ctx, env, stanza.BadRequest, "this presence type needs a 'to'")
		}
	}
	return true
}

func (m *Module) available(ctx context.Context, s *sessions.Session, p *stanza.Stanza) {
	owner := s.JID.Bare()
	initial := !s.Available()
	// Keep a copy without 'to': it is re-sent to probes and new resources.
	stored := p.ShallowCopy()
	stored.To = jid.JID{}
	s.SetPresence(stored, stanza.Priority(p))
	items, err := m.roster.Items(ctx, owner)
	if err != nil {
		m.log.WithError(err).WithField("user", owner.String()).Error("reading roster for presence")
	}
	// Contacts with a 'from' subscription get the broadcast.
	for _, it := range items {
		if hasFrom(it) {
			if c, err := jid.Parse(it.JID); err == nil {
				m.send(ctx, copyTo(p, s.JID, c))
			}
		}
	}
	// The user's own available resources, including this one (§4.2.2).
	others := m.bus.Sessions().Available(owner)
	for _, o := range others {
		_ = o.Send(copyTo(p, s.JID, o.JID))
	}
	if !initial {
		return
	}
	// The new resource learns about the user's other resources ...
	for _, o := range others {
		if o != s {
			if op := o.Presence(); op != nil {
				_ = s.Send(copyTo(op, o.JID, s.JID))
			}
		}
	}
	for _, it := range items {
		c, err := jid.Parse(it.JID)
		if err != nil {
			continue
		}
		// ... probes contacts it is subscribed to (§4.2.1) ...
		if hasTo(it) {
			m.send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "probe", From: owner, To: c})
		}
		// ... and gets subscription requests that waited while it was
		// offline (§3.1.3).
		if it.PendingIn {
			_ = s.Send(&stanza.Stanza{Kind: stanza.KindPresence, Type: "subscribe", From: c, To: owner})
		}
	}
}

func (m *Module) unavailable(ctx context.Context, s *sessions.Session, p *stanza.Stanza) {
	if !s.Available() {
		// Nothing was broadcast yet; only directed presence to revoke.
		m.revokeDirected(ctx, s, p)
		return
	}
	s.SetPresence(nil, 0)
	m.broadcastUnavailable(ctx, s, p)
}

// broadcastUnavailable sends p (type unavailable) to 'from' contacts, the
// user's other resources and directed-presence recipients (§4.5.2).
func (m *Module) broadcastUnavailable(ctx context.Context, s *sessions.Session, p *stanza.Stanza) {
	owner := s.JID.Bare()
	items, err := m.roster.Items(ctx, owner)
	if err != nil {
		m.log.WithError(err).WithField("user", owner.String()).Error("reading roster for presence")
	}
	sent := map[string]bool{}
	for _, it := range items {
		if hasFrom(it) {
			if c, err := jid.Parse(it.JID); err == nil {
				m.send(ctx, copyTo(p, s.JID, c))
				sent[c.String()] = true
			}
		}
	}
	for _, o := range m.bus.Sessions().Available(owner) {
		_ = o.Send(copyTo(p, s.JID, o.JID))
	}
	_ = s.Send(copyTo(p, s.JID, s.JID))
	for _, d := range s.TakeDirected() {
		if !sent[d.String()] && !sent[d.Bare().String()] {
			m.send(ctx, copyTo(p, s.JID, d))
		}
	}
}

func (m *Module) revokeDirected(ctx context.Context, s *sessions.Session, p *stanza.Stanza) {
	for _, d := range s.TakeDirected() {
		m.send(ctx, copyTo(p, s.JID, d))
	}
}

// sessionEnded broadcasts unavailable presence for a session that went
// away without sending it (RFC 6121 §4.5.3.2).
func (m *Module) sessionEnded(ctx context.Context, s *sessions.Session) {
	p := &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable"}
	if s.Available() {
		s.SetPresence(nil, 0)
		m.broadcastUnavailable(ctx, s, p)
		return
	}
	m.revokeDirected(ctx, s, p)
}

// outDirected handles presence with a 'to' from a client: subscription
// management (§3) and directed presence (§4.6).
func (m *Module) outDirected(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if isSubscription(st.Type) {
		m.outSubscription(ctx, env)
		return true
	}
	s := m.bus.Sessions().Get(st.From)
	if s == nil {
		return false
	}
	switch st.Type {
	case "":
		if !m.subscribedFrom(ctx, st.From.Bare(), st.To) {
			s.AddDirected(st.To)
		}
	case "unavailable":
		s.RemoveDirected(st.To)
	case "probe":
		// Clients do not probe (§4.3); the server does it for them.
		m.bus.Bounce(ctx, env, stanza.Forbidden, "the server sends presence probes")
		return true
	}
	return false
}

// subscribedFrom reports whether contact gets the owner's broadcasts anyway.
func (m *Module) subscribedFrom(ctx context.Context, owner, contact jid.JID) bool {
	it, ok, err := m.roster.Item(ctx, owner, contact)
	return err == nil && ok && hasFrom(it) && contact.Resourcepart() == ""
}

// outSubscription applies the user's side of RFC 6121 §3.
func (m *Module) outSubscription(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	owner := st.From.Bare()
	contact := st.To.Bare()
	if contact.Equal(owner) {
		m.bus.Bounce(ctx, env, stanza.BadRequest, "you cannot subscribe to yourself")
		return
	}
	// Subscription stanzas go out from and to bare JIDs (§3.1.2).
	out := st.ShallowCopy()
	out.From, out.To = owner, contact

	// Routing can deliver to a local contact, whose handling takes that
	// contact's roster lock: never route while holding one.
	unlock := m.roster.Lock(owner.Localpart())
	it, ok, err := m.roster.Item(ctx, owner, contact)
	if err != nil {
		unlock()
		m.log.WithError(err).Error("reading roster item")
		m.bus.Bounce(ctx, env, stanza.InternalServerError, "")
		return
	}
	if !ok {
		it = storage.RosterItem{JID: contact.String(), Subscription: storage.SubNone}
	}
	route := true
	var after func()
	switch st.Type {
	case "subscribe":
		if !hasTo(it) {
			it.Ask = true
		}
	case "subscribed":
		switch {
		case it.PendingIn:
			it.PendingIn = false
			it.Subscription = withFrom(it.Subscription)
			after = func() { m.sendCurrent(ctx, owner, contact) }
		case hasFrom(it):
			route = false // already subscribed: nothing to say
		default:
			// Pre-approval (§3.4): remembered, not sent.
			it.Approved = true
			route = false
		}
	case "unsubscribe":
		it.Ask = false
		it.Subscription = withoutTo(it.Subscription)
	case "unsubscribed":
		wasFrom := hasFrom(it)
		it.PendingIn, it.Approved = false, false
		it.Subscription = withoutFrom(it.Subscription)
		if wasFrom {
			after = func() { m.sendUnavailable(ctx, owner, contact) }
		}
	}
	if ok || roster.Visible(it) {
		if err := m.roster.Update(ctx, owner, it); err != nil {
			unlock()
			m.log.WithError(err).Error("updating roster")
			m.bus.Bounce(ctx, env, stanza.InternalServerError, "")
			return
		}
	}
	unlock()
	if route {
		m.send(ctx, out)
	}
	if after != nil {
		after()
	}
}

func withFrom(s storage.Subscription) storage.Subscription {
	if s == storage.SubTo || s == storage.SubBoth {
		return storage.SubBoth
	}
	return storage.SubFrom
}

func withTo(s storage.Subscription) storage.Subscription {
	if s == storage.SubFrom || s == storage.SubBoth {
		return storage.SubBoth
	}
	return storage.SubTo
}

func withoutFrom(s storage.Subscription) storage.Subscription {
	if s == storage.SubBoth || s == storage.SubTo {
		return storage.SubTo
	}
	return storage.SubNone
}

func withoutTo(s storage.Subscription) storage.Subscription {
	if s == storage.SubBoth || s == storage.SubFrom {
		return storage.SubFrom
	}
	return storage.SubNone
}

// sendCurrent sends the owner's current presence from every available
// resource to contact (after approving a subscription, or for a probe).
// It reports whether any resource was available.
func (m *Module) sendCurrent(ctx context.Context, owner, contact jid.JID) bool {
	any := false
	for _, s := range m.bus.Sessions().Available(owner) {
		if p := s.Presence(); p != nil {
			m.send(ctx, copyTo(p, s.JID, contact))
			any = true
		}
	}
	return any
}

func (m *Module) sendUnavailable(ctx context.Context, owner, contact jid.JID) {
	for _, s := range m.bus.Sessions().Available(owner) {
		m.send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: s.JID, To: contact})
	}
}

// deliverInterested gives a subscription stanza to the owner's available
// resources that requested the roster (§3.1.3).
func (m *Module) deliverInterested(owner jid.JID, st *stanza.Stanza) {
	for _, s := range m.bus.Sessions().Available(owner) {
		if s.Interested() {
			_ = s.Send(copyTo(st, st.From.Bare(), s.JID.Bare()))
		}
	}
}

// inHost: presence to the server itself carries no meaning for us.
func (m *Module) inHost(ctx context.Context, env *router.Envelope) bool { return true }

// inFull handles presence to one resource (§8.5.3.2.1).
func (m *Module) inFull(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if isSubscription(st.Type) || st.Type == "probe" {
		return m.inBare(ctx, env)
	}
	if s := m.bus.Sessions().Get(st.To); s != nil {
		_ = s.Send(st)
	}
	return true
}

// inBare handles presence to an account's bare JID (§8.5.2.1.1) and the
// contact side of the subscription state machine.
func (m *Module) inBare(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	owner := st.To.Bare()
	switch st.Type {
	case "", "unavailable":
		for _, s := range m.bus.Sessions().Available(owner) {
			_ = s.Send(st)
		}
		return true
	case "error":
		return true
	case "probe":
		m.inProbe(ctx, owner, st.From)
		return true
	}
	m.inSubscription(ctx, env, owner)
	return true
}

func (m *Module) inProbe(ctx context.Context, owner, from jid.JID) {
	contact := from.Bare()
	if !contact.Equal(owner) {
		it, ok, err := m.roster.Item(ctx, owner, contact)
		if err != nil || !ok || !hasFrom(it) {
			// Not subscribed: reveal nothing (§4.3.2).
			return
		}
	}
	if !m.sendCurrent(ctx, owner, from) {
		m.send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable", From: owner, To: from})
	}
}

// inSubscription applies the contact's side of §3 for an inbound request
// or answer from 'from' to local account owner.
func (m *Module) inSubscription(ctx context.Context, env *router.Envelope, owner jid.JID) {
	st := env.Stanza
	contact := st.From.Bare()
	if contact.Equal(owner) || contact.Equal(jid.JID{}) {
		return
	}
	unlock := m.roster.Lock(owner.Localpart())
	it, ok, err := m.roster.Item(ctx, owner, contact)
	if err != nil {
		unlock()
		m.log.WithError(err).Error("reading roster item")
		return
	}
	if !ok {
		it = storage.RosterItem{JID: contact.String(), Subscription: storage.SubNone}
	}
	changed, deliver := false, false
	var after func()
	switch st.Type {
	case "subscribe":
		switch {
		case hasFrom(it):
			// Already approved: answer for the user (§3.1.3).
			after = func() {
				m.send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "subscribed", From: owner, To: contact})
			}
		case it.Approved:
			it.Approved = false
			it.Subscription = withFrom(it.Subscription)
			changed = true
			after = func() {
				m.send(ctx, &stanza.Stanza{Kind: stanza.KindPresence, Type: "subscribed", From: owner, To: contact})
				m.sendCurrent(ctx, owner, contact)
			}
		default:
			if !it.PendingIn {
				it.PendingIn = true
				changed = true
			}
			deliver = true
		}
	case "subscribed":
		// Only an answer to our own pending request counts (§3.1.6).
		if it.Ask {
			it.Ask = false
			it.Subscription = withTo(it.Subscription)
			changed, deliver = true, true
		}
	case "unsubscribe":
		if hasFrom(it) || it.PendingIn {
			wasFrom := hasFrom(it)
			it.PendingIn, it.Approved = false, false
			it.Subscription = withoutFrom(it.Subscription)
			changed, deliver = true, true
			if wasFrom {
				after = func() { m.sendUnavailable(ctx, owner, contact) }
			}
		}
	case "unsubscribed":
		if hasTo(it) || it.Ask {
			it.Ask = false
			it.Subscription = withoutTo(it.Subscription)
			changed, deliver = true, true
		}
	}
	if changed {
		if err := m.roster.Update(ctx, owner, it); err != nil {
			unlock()
			m.log.WithError(err).Error("updating roster")
			return
		}
	}
	unlock()
	if deliver {
		m.deliverInterested(owner, st)
	}
	if after != nil {
		after()
	}
}
