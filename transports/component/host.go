// Package component is the accept side of the Jabber Component Protocol
// (XEP-0114): the host that external transports (biboumi, Slidge,
// Spectrum 2, Gatehouse's own IRC transport run as a process) connect to.
//
// A Host listens for component streams, authenticates each with the
// handshake (lowercase hex SHA-1 of stream id + shared secret), and then
// multiplexes the whole transport zone: the server installs it as the
// router's one transport Deliverer, and it hands each stanza to the stream
// of the component that serves the destination domain. Stanzas a component
// sends enter the router with the component's authenticated domain as their
// source, so the router's boundary sees every crossing.
//
// A component may only send from its own domain, exactly (XEP-0114 §3: the
// domain of 'from' MUST match the component's; subdomains are other
// domains). A foreign or malformed 'from' is a breach of that trust and
// ends the stream with invalid-from (RFC 6120 §4.9.3.9). A missing 'from'
// or 'to' is a bug, not an attack: as Prosody does, the stanza is answered
// with bad-request on the stream and the link, which serves every user of
// the transport, stays up.
//
// It must not import c2s, s2s, hook, policy or any feature module: it
// reaches the rest of the server only through the router.
package component

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Component is one external component the host accepts.
type Component struct {
	Domain string
	Secret []byte
	// Name and Type describe the component in service discovery while it
	// is offline: identity gateway/<Type> (XEP-0100), or component/generic
	// when Type is empty. With neither set, disco#info bounces like any
	// other stanza to an offline component.
	Name string
	Type string
}

// Config configures a Host.
type Config struct {
	Components []Component
	Limits     conn.Limits
	// Timeouts.Idle is the ping interval, Timeouts.Answer the time the
	// component has to send anything after a ping.
	Timeouts         conn.Timeouts
	HandshakeTimeout time.Duration
	// ServerDomain is the 'from' of the server's idle pings (the primary
	// hosted domain).
	ServerDomain string
	// Welcome, when set, runs once a link is up and carries stanzas, before
	// the component's first stanza is read: what the server tells every
	// new link (the XEP-0356 permission advertisement) goes out here.
	Welcome func(ctx context.Context, domain string)
	// Gone, when set, runs after a link went down (and the observer was
	// told): the server marks the transport's contacts offline.
	Gone func(ctx context.Context, domain string)
	// Rand supplies stream ids; nil means crypto/rand. Tests inject a
	// fixed source to make handshakes predictable.
	Rand io.Reader
}

// Router is what the host needs of the router.
type Router interface {
	Route(ctx context.Context, env *router.Envelope) error
	Forward(ctx context.Context, env *router.Envelope) error
}

// Link describes one authenticated component stream.
type Link struct {
	Domain string
	Conn   uint64 // connection id, as in router.Endpoint.Conn
	Remote string // the component's address
	Since  time.Time
}

// LinkObserver is told when a component link comes up or goes down (for
// the compliance archive). LinkUp runs after the handshake and before the
// link carries any stanza; an error refuses the link (the component gets
// internal-server-error), so a recorder that cannot record keeps the link
// closed. LinkDown runs after the link stopped carrying stanzas.
type LinkObserver interface {
	LinkUp(ctx context.Context, l Link) error
	LinkDown(ctx context.Context, l Link, reason string)
}

// Errors.
var (
	// ErrOffline: the destination component is not connected; the stanza
	// was bounced to its sender.
	ErrOffline = errors.New("component: transport not connected")
	// ErrUnknown: the destination domain is not a configured component.
	ErrUnknown = errors.New("component: unknown transport domain")
	// ErrDuplicate: two components with the same domain in the Config.
	ErrDuplicate = errors.New("component: domain configured twice")
)

// OfflineCondition is the stanza error for stanzas to a configured
// component that is not connected (issue 7: remote-server-timeout, as for a
// federated server that cannot be reached). The component is known but
// down right now, so the error type is "wait": clients may retry.
const OfflineCondition = stanza.RemoteServerTimeout

// Host accepts component streams and delivers the transport zone.
// Construct with New.
type Host struct {
	cfg    Config
	log    logrus.FieldLogger
	router Router
	ids    *atomic.Uint64
	comps  map[string]*Component // read-only after New

	mu        sync.Mutex
	observer  LinkObserver
	links     map[string]*stream // authenticated and carrying stanzas
	claimed   map[string]*stream // authenticated, link-up not finished
	streams   map[*stream]struct{}
	listeners []net.Listener
	closing   bool
	wg        sync.WaitGroup
}

// New returns a host for cfg. ids is the server-wide connection id counter
// (connection ids are unique across c2s and components).
func New(cfg Config, log logrus.FieldLogger, r Router, ids *atomic.Uint64) (*Host, error) {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	// Own copies: the caller's slices must not change a running host.
	comps := make([]Component, len(cfg.Components))
	for i, c := range cfg.Components {
		c.Secret = append([]byte(nil), c.Secret...)
		comps[i] = c
	}
	cfg.Components = comps
	h := &Host{cfg: cfg, log: log, router: r, ids: ids, comps: make(map[string]*Component),
		links: make(map[string]*stream), claimed: make(map[string]*stream), streams: make(map[*stream]struct{})}
	for i := range cfg.Components {
		c := &cfg.Components[i]
		if _, dup := h.comps[c.Domain]; dup {
			return nil, fmt.Errorf("%w: %s", ErrDuplicate, c.Domain)
		}
		h.comps[c.Domain] = c
	}
	return h, nil
}

// SetObserver installs the link observer. Links already up are not
// reported to it: install it before Serve.
func (h *Host) SetObserver(o LinkObserver) {
	h.mu.Lock()
	h.observer = o
	h.mu.Unlock()
}

func (h *Host) getObserver() LinkObserver {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.observer
}

// Domains returns the configured component domains, sorted.
func (h *Host) Domains() []string {
	out := make([]string, 0, len(h.comps))
	for d := range h.comps {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// Links returns the connected components, sorted by domain.
func (h *Host) Links() []Link {
	h.mu.Lock()
	out := make([]Link, 0, len(h.links))
	for _, st := range h.links {
		out = append(out, st.link)
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// Connected reports whether the component serving domain is connected.
func (h *Host) Connected(domain string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.links[domain] != nil
}

// Serve accepts component connections on ln until it is closed.
func (h *Host) Serve(ctx context.Context, ln net.Listener) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return ln.Close()
	}
	h.listeners = append(h.listeners, ln)
	h.mu.Unlock()
	err := conn.Accept(ln, func(nc net.Conn) bool {
		// Add only while not closing: Shutdown's Wait must never race
		// with an Add from zero.
		h.mu.Lock()
		if h.closing {
			h.mu.Unlock()
			_ = nc.Close()
			return false
		}
		h.wg.Add(1)
		h.mu.Unlock()
		go func() {
			defer h.wg.Done()
			h.handle(ctx, nc)
		}()
		return true
	})
	if err != nil {
		return fmt.Errorf("component: accept: %w", err)
	}
	return nil
}

// Shutdown stops accepting, closes every component stream with
// system-shutdown and waits for the streams to end or ctx to expire.
func (h *Host) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	for _, ln := range h.listeners {
		_ = ln.Close()
	}
	streams := make([]*stream, 0, len(h.streams))
	for st := range h.streams {
		streams = append(streams, st)
	}
	h.mu.Unlock()
	for _, st := range streams {
		st.c.CloseStream("system-shutdown", "the server is shutting down")
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, st := range streams {
			_ = st.c.Close()
		}
		return fmt.Errorf("component: shutdown: %w", ctx.Err())
	}
}

// Deliver implements router.Deliverer for the transport zone: it queues
// the stanza on the stream of the component serving its domain, or
// answers for a component that is not connected.
func (h *Host) Deliver(ctx context.Context, env *router.Envelope) error {
	domain := env.Dst.Domain
	h.mu.Lock()
	st := h.links[domain]
	h.mu.Unlock()
	if st == nil {
		return h.offline(ctx, env, domain)
	}
	if err := st.c.Send(env.Stanza); err != nil {
		// The link went down (or its queue overflowed and was cut) under
		// us: the sender learns as if it had been down before.
		_ = h.offline(ctx, env, domain)
		return fmt.Errorf("component: deliver to %s: %w", domain, err)
	}
	return nil
}

// offline answers a stanza for a component that is not connected: a
// disco#info request gets the configured identity, everything that may be
// answered gets an error of type wait.
func (h *Host) offline(ctx context.Context, env *router.Envelope, domain string) error {
	comp := h.comps[domain]
	if comp == nil {
		// The zone resolver and the host disagree (a domain marked as
		// transport without a component): no route, as for s2s.
		h.reply(ctx, domain, stanza.Bounce(env.Stanza, stanza.RemoteServerNotFound, ""))
		return fmt.Errorf("%w: %s", ErrUnknown, domain)
	}
	st := env.Stanza
	if r := offlineDisco(comp, st); r != nil {
		h.reply(ctx, domain, r)
		return nil
	}
	switch {
	case st.Kind == stanza.KindIQ && st.Type == "result":
		// Never answer an answer.
	case st.Kind == stanza.KindPresence && st.Type == "unavailable":
		// Nothing to tell: the sender is leaving anyway, and often its
		// session has already gone (presence sent when it ended).
	default:
		h.reply(ctx, domain, stanza.ErrorReply(st, stanza.Wait, OfflineCondition,
			"the "+domain+" transport is not connected; try again later"))
	}
	return fmt.Errorf("%w: %s", ErrOffline, domain)
}

// reply routes an answer the server gives on behalf of a component. The
// server speaks, so the source is the local zone and the reply does not
// cross the border again (the request already did, and was recorded).
func (h *Host) reply(ctx context.Context, domain string, r *stanza.Stanza) {
	if r == nil {
		return
	}
	env := &router.Envelope{Stanza: r, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: domain}, Flags: router.BoundaryDone}
	_ = h.router.Forward(ctx, env)
}

const nsDiscoInfo = "http://jabber.org/protocol/disco#info"

// offlineDisco returns the disco#info result for an offline component, or
// nil when st is not such a request or nothing is configured to answer.
func offlineDisco(c *Component, st *stanza.Stanza) *stanza.Stanza {
	if c.Name == "" && c.Type == "" {
		return nil
	}
	if st.Kind != stanza.KindIQ || st.Type != "get" || st.To.Localpart() != "" || st.To.Resourcepart() != "" {
		return nil
	}
	q := st.Payload()
	if q == nil || q.Name.Space != nsDiscoInfo || q.Name.Local != "query" || q.AttrValue("node") != "" {
		return nil
	}
	category, typ := "gateway", c.Type
	if typ == "" {
		category, typ = "component", "generic"
	}
	id := stanza.NewElement(nsDiscoInfo, "identity", "category", category, "type", typ)
	if c.Name != "" {
		id.SetAttr("name", c.Name)
	}
	res := stanza.NewElement(nsDiscoInfo, "query").Append(id,
		stanza.NewElement(nsDiscoInfo, "feature", "var", nsDiscoInfo))
	return st.Result(res)
}

// admit tracks a new stream; false when the host is shutting down.
func (h *Host) admit(st *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.streams[st] = struct{}{}
	return true
}

func (h *Host) release(st *stream) {
	h.mu.Lock()
	delete(h.streams, st)
	h.mu.Unlock()
}

// claim reserves domain for st after a successful handshake. XEP-0114
// answers a second connection for a domain with conflict; the link that is
// up stays up (a dead one is found by the idle ping and freed).
func (h *Host) claim(st *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.links[st.domain] != nil || h.claimed[st.domain] != nil {
		return false
	}
	h.claimed[st.domain] = st
	return true
}

// activate makes a claimed stream the domain's link.
func (h *Host) activate(st *stream) {
	h.mu.Lock()
	delete(h.claimed, st.domain)
	h.links[st.domain] = st
	h.mu.Unlock()
}

// unlink removes st from the tables; it reports whether st was the active
// link (and so owes a link-down).
func (h *Host) unlink(st *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.claimed[st.domain] == st {
		delete(h.claimed, st.domain)
	}
	if h.links[st.domain] == st {
		delete(h.links, st.domain)
		return true
	}
	return false
}
