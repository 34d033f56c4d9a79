package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Config configures a Service.
type Config struct {
	// IsLocal reports whether this server serves domain (hosted domains
	// and internal components): the only valid 'to' of inbound streams
	// and stanzas, and 'from' of outbound ones.
	IsLocal func(domain string) bool
	// ServerTLS returns the TLS configuration of the server's current
	// certificate (Certificates[0] is presented both as server and, on
	// outbound streams, as client certificate).
	ServerTLS func() *tls.Config
	// Roots verifies peers' certificates; nil means the system roots.
	Roots *x509.CertPool

	RequireTLS           bool
	RequireVerifiedCerts bool
	Bidi                 bool

	Limits conn.Limits
	// ConnectTimeout bounds one outbound attempt (resolution to auth),
	// and one dialback verification.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds an inbound stream until it has
	// authenticated a domain or answered a dialback verification.
	HandshakeTimeout time.Duration
	// QueueTimeout is the longest a stanza waits for its link.
	QueueTimeout time.Duration
	// QueueSize bounds the stanzas waiting per domain pair.
	QueueSize int
	// IdleTimeout closes links that carried no stanza for this long.
	IdleTimeout time.Duration
	// MaxInbound bounds inbound connections; 0 is unlimited.
	MaxInbound int
	// RateLimit is the stanzas per second read from one inbound stream; 0
	// is unlimited.
	RateLimit int
	// Secret keys dialback (XEP-0185).
	Secret []byte

	Resolver Resolver
	Policy   *Policy
	// Store, when set, is polled for changes made by the CLI.
	Store *Store
	// BackoffMin and BackoffMax bound the wait between reconnection
	// attempts of a link with queued stanzas; defaults 1s and 30s.
	BackoffMin, BackoffMax time.Duration
	// PolicyPoll is the interval at which Store is checked and the
	// status snapshot refreshed; default 2s.
	PolicyPoll time.Duration
	// StatusFile, when set, receives a JSON snapshot of the links (see
	// Status) whenever they change; it is removed at Shutdown.
	StatusFile string
}

// Router is what the Service needs of the router.
type Router interface {
	Route(ctx context.Context, env *router.Envelope) error
	Forward(ctx context.Context, env *router.Envelope) error
}

// Errors of Deliver.
var (
	ErrNotAllowed = errors.New("s2s: federation with the domain is not allowed")
	ErrQueueFull  = errors.New("s2s: link queue full")
	ErrBadSource  = errors.New("s2s: stanza not from a local domain")
	ErrShutdown   = errors.New("s2s: shutting down")
)

// LinkInfo describes one authenticated link, for status and the archive.
type LinkInfo struct {
	Local, Remote string
	Direction     string // "out" or "in"
	Method        string // MethodSASLExternal, MethodDialback, MethodDialbackCert
	TLSVersion    string
	Bidi          bool
	Conn          uint64
	Peer          string // network address
	Since         time.Time
	Queue         int // stanzas waiting for the link (outbound)
	// State is "up", or for an outbound link with stanzas waiting,
	// "connecting" (an attempt is under way) or "retrying" (the next
	// attempt is due at Retry). LastError says why the last attempt
	// failed.
	State     string
	LastError string    `json:",omitempty"`
	Retry     time.Time `json:",omitzero"`
}

// Link states.
const (
	StateUp         = "up"
	StateConnecting = "connecting"
	StateRetrying   = "retrying"
)

// LinkObserver is told when a link comes up or goes down (the compliance
// archive records link events). LinkUp runs before the link carries any
// stanza; an error refuses the link, so a recorder that cannot record
// keeps federation closed.
type LinkObserver interface {
	LinkUp(ctx context.Context, l LinkInfo) error
	LinkDown(ctx context.Context, l LinkInfo, reason string)
}

type pair struct{ local, remote string }

// Service is the federation subsystem: the router's remote-zone
// Deliverer, the inbound listeners' handler and the outbound pool.
type Service struct {
	cfg    Config
	log    logrus.FieldLogger
	router Router
	ids    *atomic.Uint64

	ctx    context.Context // ends at Shutdown: dials and verifications
	cancel context.CancelFunc

	mu        sync.Mutex
	links     map[pair]*link
	streams   map[*inStream]struct{}
	listeners []net.Listener
	listen    []string // their addresses for Status; "tls://" for direct TLS
	observer  LinkObserver
	closing   bool
	wg        sync.WaitGroup // accept loops' connections, link goroutines, verifications
}

// New returns a Service. ids is the server-wide connection id counter.
func New(cfg Config, log logrus.FieldLogger, r Router, ids *atomic.Uint64) (*Service, error) {
	if cfg.IsLocal == nil || cfg.ServerTLS == nil || cfg.Resolver == nil || cfg.Policy == nil {
		return nil, errors.New("s2s: Config needs IsLocal, ServerTLS, Resolver and Policy")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("s2s: Config needs a dialback secret")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ConnectTimeout, 30*time.Second)
	def(&cfg.HandshakeTimeout, 30*time.Second)
	def(&cfg.QueueTimeout, 60*time.Second)
	def(&cfg.IdleTimeout, 10*time.Minute)
	def(&cfg.BackoffMin, time.Second)
	def(&cfg.BackoffMax, 30*time.Second)
	def(&cfg.PolicyPoll, 2*time.Second)
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1000
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, log: log, router: r, ids: ids, ctx: ctx, cancel: cancel,
		links: make(map[pair]*link), streams: make(map[*inStream]struct{})}
	return s, nil
}

// SetObserver installs the link observer (before serving).
func (s *Service) SetObserver(o LinkObserver) {
	s.mu.Lock()
	s.observer = o
	s.mu.Unlock()
}

func (s *Service) getObserver() LinkObserver {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observer
}

// Serve accepts s2s connections on ln until it is closed. directTLS
// selects XEP-0368 direct TLS instead of STARTTLS.
func (s *Service) Serve(ln net.Listener, directTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ln.Close()
	}
	s.listeners = append(s.listeners, ln)
	addr := ln.Addr().String()
	if directTLS {
		addr = "tls://" + addr
	}
	s.listen = append(s.listen, addr)
	s.mu.Unlock()
	err := conn.Accept(ln, func(nc net.Conn) bool {
		if !s.goTracked(func() { s.handleInbound(nc, directTLS) }) {
			_ = nc.Close()
			return false
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("s2s: accept: %w", err)
	}
	return nil
}

// goTracked runs f on a goroutine Shutdown waits for; false when the
// service is closing (f does not run).
func (s *Service) goTracked(f func()) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Run does the periodic work until ctx ends or Shutdown: idle links are
// closed and the federation store is watched for the CLI's changes.
func (s *Service) Run(ctx context.Context) {
	tick := time.NewTicker(min(s.cfg.PolicyPoll, s.cfg.IdleTimeout/4))
	defer tick.Stop()
	var version int64 = -1
	status := s.writeStatus(nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		s.closeIdle(time.Now())
		status = s.writeStatus(status)
		if s.cfg.Store == nil {
			continue
		}
		v, err := s.cfg.Store.Version(ctx)
		if err != nil {
			s.log.WithError(err).Warn("cannot read the federation store")
			continue
		}
		if v != version {
			if err := s.ReloadPolicy(ctx); err != nil {
				s.log.WithError(err).Warn("federation store changed but could not be read; keeping the previous lists")
				continue
			}
			version = v
		}
	}
}

// ReloadPolicy re-reads the stored allow/deny entries and closes links
// with domains that are no longer allowed.
func (s *Service) ReloadPolicy(ctx context.Context) error {
	if s.cfg.Store != nil {
		entries, err := s.cfg.Store.List(ctx)
		if err != nil {
			return err
		}
		s.cfg.Policy.SetStored(entries)
	}
	s.enforcePolicy()
	return nil
}

// enforcePolicy closes links to domains the policy no longer allows.
func (s *Service) enforcePolicy() {
	s.mu.Lock()
	var links []*link
	for p, l := range s.links {
		if ok, _ := s.cfg.Policy.Allowed(p.remote); !ok {
			links = append(links, l)
		}
	}
	streams := make([]*inStream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	for _, l := range links {
		l.refuse("federation with " + l.remote + " is no longer allowed")
	}
	for _, st := range streams {
		st.enforcePolicy()
	}
}

// Shutdown stops accepting, closes every stream with system-shutdown,
// bounces what is still queued and waits for the goroutines or ctx.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	links := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		links = append(links, l)
	}
	streams := make([]*inStream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	// Dials and verifications in progress give up now.
	s.cancel()
	if s.cfg.StatusFile != "" {
		_ = os.Remove(s.cfg.StatusFile)
	}
	for _, l := range links {
		l.shutdown()
	}
	for _, st := range streams {
		st.c.CloseStream("system-shutdown", "the server is shutting down")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, l := range links {
			l.kill()
		}
		for _, st := range streams {
			_ = st.c.Close()
		}
		return fmt.Errorf("s2s: shutdown: %w", ctx.Err())
	}
}

// Deliver implements router.Deliverer for the remote zone. It never
// waits for the network: the stanza goes to the link's stream, or to its
// queue while the link comes up.
func (s *Service) Deliver(ctx context.Context, env *router.Envelope) error {
	remote := env.Dst.Domain
	local := env.Stanza.From.Domainpart()
	if local == "" {
		local = env.Src.Domain
	}
	if !s.cfg.IsLocal(local) {
		// A stanza to another server must come from one of our domains
		// (RFC 6120 §8.1.2.2); the peer would end the stream otherwise.
		s.bounce(ctx, env, remote, stanza.ErrorReply(env.Stanza, stanza.Cancel, stanza.NotAllowed, "not sent from a domain of this server"))
		return fmt.Errorf("%w: %q", ErrBadSource, local)
	}
	if ok, why := s.cfg.Policy.Allowed(remote); !ok {
		s.bounce(ctx, env, remote, stanza.ErrorReply(env.Stanza, stanza.Cancel, stanza.NotAllowed, why))
		return fmt.Errorf("%w: %s", ErrNotAllowed, remote)
	}
	l, err := s.link(pair{local: local, remote: remote})
	if err != nil {
		s.bounce(ctx, env, remote, stanza.Bounce(env.Stanza, stanza.RemoteServerTimeout, "the server is shutting down"))
		return err
	}
	return l.deliver(ctx, env)
}

// link returns the link of p, creating it.
func (s *Service) link(p pair) (*link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrShutdown
	}
	l := s.links[p]
	if l == nil {
		l = newLink(s, p)
		s.links[p] = l
	}
	return l, nil
}

// existingLink returns the link of p or nil.
func (s *Service) existingLink(p pair) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links[p]
}

// dropLink forgets l if it is idle (no stream, nothing queued).
func (s *Service) dropLink(l *link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.links[l.pair] == l && l.idle() {
		delete(s.links, l.pair)
	}
}

// bounce routes reply, an error answer to env's stanza on the remote
// server's behalf, back to the local sender. The server speaks and the
// stanza never left: no crossing to record.
func (s *Service) bounce(ctx context.Context, env *router.Envelope, remote string, reply *stanza.Stanza) {
	if reply == nil || (env.Stanza.Kind == stanza.KindIQ && env.Stanza.Type == "result") {
		return
	}
	if reply.From.Equal(jid.JID{}) {
		reply.From, _ = jid.New("", remote, "")
	}
	_ = s.router.Forward(ctx, &router.Envelope{Stanza: reply,
		Src: router.Endpoint{Zone: router.ZoneLocal, Domain: remote}, Flags: router.BoundaryDone})
}

// Links returns the links that are up, and the outbound ones whose
// stanzas wait for a connection (state connecting or retrying): outbound
// then inbound, sorted by remote domain.
func (s *Service) Links() []LinkInfo {
	s.mu.Lock()
	links := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		links = append(links, l)
	}
	streams := make([]*inStream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	var out []LinkInfo
	for _, l := range links {
		if info, ok := l.status(); ok {
			out = append(out, info)
		}
	}
	for _, st := range streams {
		out = append(out, st.infos()...)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Direction != b.Direction {
			return a.Direction > b.Direction // "out" first
		}
		if a.Remote != b.Remote {
			return a.Remote < b.Remote
		}
		return a.Local < b.Local
	})
	return out
}

// Connected reports whether an authenticated outbound link for (local,
// remote) is up.
func (s *Service) Connected(local, remote string) bool {
	l := s.existingLink(pair{local, remote})
	if l == nil {
		return false
	}
	_, ok := l.info()
	return ok
}

// closeIdle closes outbound links that carried nothing for IdleTimeout.
func (s *Service) closeIdle(now time.Time) {
	s.mu.Lock()
	links := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		links = append(links, l)
	}
	s.mu.Unlock()
	for _, l := range links {
		l.closeIfIdle(now, s.cfg.IdleTimeout)
	}
}

// registerStream tracks an inbound stream; false when closing or full.
func (s *Service) registerStream(st *inStream) (ok bool, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, false
	}
	if s.cfg.MaxInbound > 0 && len(s.streams) >= s.cfg.MaxInbound {
		return false, true
	}
	s.streams[st] = struct{}{}
	return true, false
}

func (s *Service) unregisterStream(st *inStream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
}

// serverTLS returns the inbound TLS configuration: the server's
// certificate, ALPN xmpp-server and a request (not a demand) for the
// peer's certificate, which SASL EXTERNAL and XEP-0344 use.
func (s *Service) serverTLS() *tls.Config {
	c := s.cfg.ServerTLS().Clone()
	c.NextProtos = []string{ALPN}
	c.ClientAuth = tls.RequestClientCert
	return c
}

// clientTLS returns the outbound TLS configuration. The chain is checked
// after the handshake (verifyPeer), not by crypto/tls: an unverified
// peer may still be authenticated with dialback when that is allowed.
func (s *Service) clientTLS(remote string, directTLS bool) *tls.Config {
	base := s.cfg.ServerTLS()
	c := &tls.Config{
		ServerName:         sniName(remote),
		MinVersion:         base.MinVersion,
		InsecureSkipVerify: true, //nolint:gosec // verified by verifyPeer after the handshake
	}
	if len(base.Certificates) > 0 {
		cert := base.Certificates[0]
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	if directTLS {
		c.NextProtos = []string{ALPN}
	}
	return c
}
