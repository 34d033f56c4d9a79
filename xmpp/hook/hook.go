// Package hook is the local zone of the router: a typed event bus that
// feature modules (roster, presence, message, disco, ...) attach to, keyed by
// direction, stanza kind and address type, in the manner of Prosody's
// "message/bare" events. It implements router.Local.
//
// It must not import c2s, s2s, transports, policy or any module.
package hook

import (
	"context"
	"encoding/xml"
	"sort"
	"sync"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
)

// Dir is the direction of an event.
type Dir uint8

// Directions: Out runs on the sender's server for stanzas from a local
// client session before routing; In runs when a stanza reaches the local zone.
const (
	Out Dir = iota + 1
	In
)

// Addr classifies the 'to' address.
type Addr uint8

// Address kinds.
const (
	AddrNone Addr = iota + 1 // no 'to' (outbound only)
	AddrHost                 // a hosted domain
	AddrBare                 // an account's bare JID
	AddrFull                 // a full JID
)

// Event names one hook point, e.g. {In, KindMessage, AddrBare}.
type Event struct {
	Dir  Dir
	Kind stanza.Kind
	Addr Addr
}

// Handler processes an event; returning true consumes the stanza.
type Handler func(ctx context.Context, env *router.Envelope) bool

// IQHandler answers an iq request; a non-nil reply is routed back. A
// handler that routes its own answer returns nil.
type IQHandler func(ctx context.Context, env *router.Envelope) *stanza.Stanza

// Accounts tells whether an account exists on a hosted domain.
type Accounts interface {
	Exists(ctx context.Context, username string) (bool, error)
}

// Router is what the bus needs to send replies.
type Router interface {
	Route(ctx context.Context, env *router.Envelope) error
	Forward(ctx context.Context, env *router.Envelope) error
}

type entry struct {
	prio int
	h    Handler
}

type iqKey struct {
	addr Addr
	name xml.Name
}

// Bus is the local zone. Register handlers before serving.
type Bus struct {
	hosts      map[string]bool
	components map[string]router.Deliverer
	// discoItems are further entities the server lists in its disco#items
	// (transports: XEP-0100 says clients find gateways there).
	discoItems map[string]bool
	accounts   Accounts
	sessions   *sessions.Table
	router     Router

	mu       sync.RWMutex
	handlers map[Event][]entry
	iq       map[iqKey]IQHandler
	features map[Addr][]string
	idents   []Identity
	life     lifecycle
}

// Identity is a disco identity of the server.
type Identity struct{ Category, Type, Name string }

// New returns a bus serving hosts.
func New(hosts []string, accounts Accounts, table *sessions.Table) *Bus {
	b := &Bus{
		hosts:      make(map[string]bool),
		components: make(map[string]router.Deliverer),
		accounts:   accounts,
		sessions:   table,
		handlers:   make(map[Event][]entry),
		iq:         make(map[iqKey]IQHandler),
		features:   make(map[Addr][]string),
	}
	for _, h := range hosts {
		b.hosts[h] = true
	}
	return b
}

// SetRouter gives the bus the router it sends replies through.
func (b *Bus) SetRouter(r Router) { b.router = r }

// Router returns the router.
func (b *Bus) Router() Router { return b.router }

// Sessions returns the session table.
func (b *Bus) Sessions() *sessions.Table { return b.sessions }

// Accounts returns the account checker.
func (b *Bus) Accounts() Accounts { return b.accounts }

// IsHost reports whether domain is a hosted domain.
func (b *Bus) IsHost(domain string) bool { return b.hosts[domain] }

// Hosts returns the hosted domains.
func (b *Bus) Hosts() []string {
	out := make([]string, 0, len(b.hosts))
	for h := range b.hosts {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// AddComponent serves domain (e.g. conference.example.com) with d.
func (b *Bus) AddComponent(domain string, d router.Deliverer) {
	b.mu.Lock()
	b.components[domain] = d
	b.mu.Unlock()
}

// AddDiscoItem lists jid in the server's disco#items (XEP-0030) besides
// the internal components, e.g. a transport's domain (XEP-0100 §4.1).
func (b *Bus) AddDiscoItem(jid string) {
	b.mu.Lock()
	if b.discoItems == nil {
		b.discoItems = map[string]bool{}
	}
	b.discoItems[jid] = true
	b.mu.Unlock()
}

// DiscoItems returns what the server lists in its disco#items: the
// internal components and the items added with AddDiscoItem, sorted.
func (b *Bus) DiscoItems() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]string, 0, len(b.components)+len(b.discoItems))
	for d := range b.components {
		out = append(out, d)
	}
	for d := range b.discoItems {
		if _, dup := b.components[d]; !dup {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// Components returns the internal component domains.
func (b *Bus) Components() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]string, 0, len(b.components))
	for d := range b.components {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// ZoneOf implements part of router.Resolver: hosted and component domains
// are local.
func (b *Bus) ZoneOf(domain string) router.Zone {
	if b.hosts[domain] {
		return router.ZoneLocal
	}
	b.mu.RLock()
	_, ok := b.components[domain]
	b.mu.RUnlock()
	if ok {
		return router.ZoneLocal
	}
	return router.ZoneNone
}

// On registers h for ev; higher prio runs first.
func (b *Bus) On(ev Event, prio int, h Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	list := append(b.handlers[ev], entry{prio: prio, h: h})
	sort.SliceStable(list, func(i, j int) bool { return list[i].prio > list[j].prio })
	b.handlers[ev] = list
}

// HandleIQ registers the handler for iq get/set whose payload is
// space/local, addressed to a host (AddrHost) or an account (AddrBare).
func (b *Bus) HandleIQ(addr Addr, space, local string, h IQHandler) {
	b.mu.Lock()
	b.iq[iqKey{addr, xml.Name{Space: space, Local: local}}] = h
	b.mu.Unlock()
}

// AddFeature advertises a disco feature on the host (AddrHost) or on
// accounts (AddrBare).
func (b *Bus) AddFeature(addr Addr, ns ...string) {
	b.mu.Lock()
	b.features[addr] = append(b.features[addr], ns...)
	b.mu.Unlock()
}

// Features returns the advertised features for addr, sorted.
func (b *Bus) Features(addr Addr) []string {
	b.mu.RLock()
	out := append([]string(nil), b.features[addr]...)
	b.mu.RUnlock()
	sort.Strings(out)
	return out
}

// AddIdentity adds a server disco identity.
func (b *Bus) AddIdentity(id Identity) {
	b.mu.Lock()
	b.idents = append(b.idents, id)
	b.mu.Unlock()
}

// Identities returns the server disco identities.
func (b *Bus) Identities() []Identity {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return append([]Identity(nil), b.idents...)
}

func (b *Bus) fire(ctx context.Context, ev Event, env *router.Envelope) bool {
	b.mu.RLock()
	list := b.handlers[ev]
	b.mu.RUnlock()
	for _, e := range list {
		if e.h(ctx, env) {
			return true
		}
	}
	return false
}

// Fire runs the handlers of ev (for modules that re-dispatch).
func (b *Bus) Fire(ctx context.Context, ev Event, env *router.Envelope) bool {
	return b.fire(ctx, ev, env)
}

func (b *Bus) addrOf(j jid.JID) Addr {
	switch {
	case j.Equal(jid.JID{}):
		return AddrNone
	case j.Resourcepart() != "":
		if j.Localpart() == "" {
			return AddrFull // domain/resource: treated as full
		}
		return AddrFull
	case j.Localpart() == "":
		return AddrHost
	}
	return AddrBare
}

// Outbound implements router.Local: sender-side processing for stanzas from
// local client sessions.
func (b *Bus) Outbound(ctx context.Context, env *router.Envelope) bool {
	ev := Event{Dir: Out, Kind: env.Stanza.Kind, Addr: b.addrOf(env.Stanza.To)}
	return b.fire(ctx, ev, env)
}

// Deliver implements router.Deliverer for the local zone.
func (b *Bus) Deliver(ctx context.Context, env *router.Envelope) error {
	st := env.Stanza
	domain := st.To.Domainpart()
	if domain == "" {
		domain = env.Dst.Domain
	}
	if !b.hosts[domain] {
		b.mu.RLock()
		d := b.components[domain]
		b.mu.RUnlock()
		if d != nil {
			return d.Deliver(ctx, env)
		}
		b.bounce(ctx, env, stanza.ItemNotFound, "")
		return nil
	}
	addr := b.addrOf(st.To)
	if addr == AddrNone {
		// RFC 6120 §10.3: no 'to' from an account means its own bare JID.
		if env.Src.Zone == router.ZoneLocal && st.From.Localpart() != "" && b.hosts[st.From.Domainpart()] {
			st.To = st.From.Bare()
			addr = AddrBare
		} else {
			addr = AddrHost
		}
	}
	if addr == AddrBare || addr == AddrFull {
		if ok, err := b.accounts.Exists(ctx, st.To.Localpart()); err == nil && !ok {
			b.noSuchUser(ctx, env)
			return nil
		}
	}
	if st.Kind == stanza.KindIQ && st.IsRequest() && addr != AddrFull {
		// In hooks (blocking, policy) see requests before the handlers.
		if b.fire(ctx, Event{Dir: In, Kind: st.Kind, Addr: addr}, env) {
			return nil
		}
		b.handleIQ(ctx, env, addr)
		return nil
	}
	if b.fire(ctx, Event{Dir: In, Kind: st.Kind, Addr: addr}, env) {
		return nil
	}
	// Defaults when no module took the stanza.
	if addr == AddrFull {
		if s := b.sessions.Get(st.To); s != nil {
			return s.Send(st)
		}
	}
	if st.IsRequest() {
		b.bounce(ctx, env, stanza.ServiceUnavailable, "")
	}
	return nil
}

func (b *Bus) handleIQ(ctx context.Context, env *router.Envelope, addr Addr) {
	st := env.Stanza
	p := st.Payload()
	if p == nil || len(st.Elements()) != 1 {
		b.bounce(ctx, env, stanza.BadRequest, "an iq request carries exactly one payload")
		return
	}
	b.mu.RLock()
	h := b.iq[iqKey{addr, p.Name}]
	if h == nil && addr == AddrBare && st.From.Bare().Equal(st.To) {
		// Server features asked of one's own account (ping, time, ...).
		h = b.iq[iqKey{AddrHost, p.Name}]
	}
	b.mu.RUnlock()
	if h == nil {
		b.bounce(ctx, env, stanza.ServiceUnavailable, "")
		return
	}
	if reply := h(ctx, env); reply != nil {
		b.Reply(ctx, env, reply)
	}
}

// noSuchUser applies RFC 6121 §8.5.2.2 to a stanza for a missing account.
func (b *Bus) noSuchUser(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	switch st.Kind {
	case stanza.KindPresence:
		if st.Type == "subscribe" || st.Type == "probe" {
			// Tell the contact there is no subscription to be had.
			reply := &stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribed", To: st.From.Bare(), From: st.To.Bare()}
			b.Send(ctx, reply)
		}
	case stanza.KindMessage:
		if st.Type != "error" && st.Type != "groupchat" && st.Type != "headline" {
			b.bounce(ctx, env, stanza.ServiceUnavailable, "")
		}
	case stanza.KindIQ:
		if st.IsRequest() {
			b.bounce(ctx, env, stanza.ServiceUnavailable, "")
		}
	}
}

// Reply routes reply as the answer to env's stanza, from the server.
func (b *Bus) Reply(ctx context.Context, env *router.Envelope, reply *stanza.Stanza) {
	if reply.From.Equal(jid.JID{}) {
		reply.From = env.Stanza.To
	}
	if reply.To.Equal(jid.JID{}) {
		reply.To = env.Stanza.From
	}
	_ = b.router.Forward(ctx, &router.Envelope{Stanza: reply, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: env.Dst.Domain}})
}

// Send routes a stanza the server generated. From must be set.
func (b *Bus) Send(ctx context.Context, st *stanza.Stanza) {
	_ = b.router.Forward(ctx, &router.Envelope{Stanza: st, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: st.From.Domainpart()}})
}

func (b *Bus) bounce(ctx context.Context, env *router.Envelope, cond stanza.Condition, text string) {
	reply := stanza.Bounce(env.Stanza, cond, text)
	if reply == nil {
		return
	}
	b.Reply(ctx, env, reply)
}

// Bounce sends an error reply for env's stanza.
func (b *Bus) Bounce(ctx context.Context, env *router.Envelope, cond stanza.Condition, text string) {
	b.bounce(ctx, env, cond, text)
}
