// Package c2s accepts client connections (RFC 6120): stream negotiation
// with required TLS, SASL and resource binding, then a read loop that stamps
// every stanza with the authenticated address and hands it to the router.
// Stream management (XEP-0198, sm.go) and client state indication
// (XEP-0352, csi.go) are here too: both are about the stream, and a
// session that outlives its TCP connection is this package's to keep.
//
// It must not import s2s, transports, policy or any feature module; it
// reaches the rest of the server only through router and hook interfaces.
package c2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
)

// Resource conflict policies (RFC 6120 §7.7.2.2).
const (
	ConflictReplace = "replace"
	ConflictRefuse  = "refuse"
	ConflictRename  = "rename"
)

// Config configures the c2s server.
type Config struct {
	Hosts []string
	// TLS returns the configuration for a new connection and the leaf it
	// presents (for tls-server-end-point); taken once per connection so a
	// certificate reload never mixes the two.
	TLS              func() (*tls.Config, *x509.Certificate)
	Limits           conn.Limits
	Timeouts         conn.Timeouts
	HandshakeTimeout time.Duration
	AllowPlain       bool
	SCRAMIterations  int // what new accounts get; unknown users are shown the same
	MaxAuthAttempts  int
	ResourceConflict string
	MaxPerIP         int
	// AuthSecret keys the fake SCRAM salts shown for unknown accounts; it
	// must survive restarts or comparing salts across one reveals accounts.
	AuthSecret []byte
	// Lookup fetches SCRAM verifiers for SASL.
	Lookup auth.Lookup
	// Disabled reports a locked account (SASL account-disabled).
	Disabled func(ctx context.Context, username string) bool
	// Features are extra post-bind stream features (roster versioning,
	// pre-approval ...).
	Features []*stanza.Element
	// SM configures XEP-0198 stream management, CSI XEP-0352 client state
	// indication; both are built in because they live in the stream.
	SM  SMConfig
	CSI CSIConfig
	// Register, when set, answers jabber:iq:register (XEP-0077) before
	// authentication, for account creation; ip is the client's address.
	// RegisterFeature offers the iq-register stream feature.
	Register        func(ctx context.Context, ip, host string, iq *stanza.Stanza) *stanza.Stanza
	RegisterFeature bool
	// PlainOnly offers SASL PLAIN alone (accounts verified by a directory
	// bind, which holds no SCRAM keys); VerifyPlain checks those passwords.
	PlainOnly   bool
	VerifyPlain auth.PlainVerifier
	// Throttle, when set, slows password guessing per client address and
	// per account (xmpp/auth/throttle).
	Throttle AuthThrottle
}

// AuthThrottle is told about every authentication attempt. Wait returns
// how long the address must wait before it may try again.
type AuthThrottle interface {
	Wait(ip string) time.Duration
	Failed(ip, user string)
	Succeeded(ip, user string)
}

// Router is what c2s needs of the router.
type Router interface {
	Route(ctx context.Context, env *router.Envelope) error
}

// Lifecycle is told about bound and ended sessions.
type Lifecycle interface {
	SessionBound(ctx context.Context, s *sessions.Session)
	SessionEnded(ctx context.Context, s *sessions.Session)
}

// Nonza handles a top-level non-stanza element on a bound stream (XEP-0198,
// XEP-0352 ...). It returns false when it does not know the element.
type Nonza func(ctx context.Context, s *Stream, el *stanza.Element) bool

// Server accepts client streams.
type Server struct {
	cfg    Config
	log    logrus.FieldLogger
	router Router
	table  *sessions.Table
	life   Lifecycle
	ids    *atomic.Uint64
	hosts  map[string]bool
	nonzas []Nonza

	mu        sync.Mutex
	listeners []net.Listener
	streams   map[*Stream]struct{}
	perIP     map[string]int
	closing   bool
	wg        sync.WaitGroup
	sm        map[string]*link // resumable sessions by XEP-0198 id
	smChange  chan struct{}    // closed and replaced when one detaches, resumes or ends

	authFailures atomic.Uint64
}

// New returns a c2s server. ids is the server-wide connection id counter.
func New(cfg Config, log logrus.FieldLogger, r Router, table *sessions.Table, life Lifecycle, ids *atomic.Uint64) *Server {
	if cfg.MaxAuthAttempts <= 0 {
		cfg.MaxAuthAttempts = 3
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.ResourceConflict == "" {
		cfg.ResourceConflict = ConflictReplace
	}
	if cfg.SM.RequestEvery <= 0 {
		cfg.SM.RequestEvery = 5
	}
	s := &Server{cfg: cfg, log: log, router: r, table: table, life: life, ids: ids,
		hosts: make(map[string]bool), streams: make(map[*Stream]struct{}), perIP: make(map[string]int),
		sm: make(map[string]*link), smChange: make(chan struct{})}
	for _, h := range cfg.Hosts {
		s.hosts[h] = true
	}
	return s
}

// AddNonza registers a handler for top-level non-stanza elements.
func (s *Server) AddNonza(n Nonza) { s.nonzas = append(s.nonzas, n) }

// AddFeature adds a post-bind stream feature.
func (s *Server) AddFeature(f *stanza.Element) { s.cfg.Features = append(s.cfg.Features, f) }

// mechanisms are the SASL mechanisms offered on a connection.
func (s *Server) mechanisms(cs *tls.ConnectionState, cert *x509.Certificate) []string {
	if s.cfg.PlainOnly {
		if cs == nil {
			return nil
		}
		return []string{"PLAIN"}
	}
	return auth.Mechanisms(cs, cert, s.cfg.AllowPlain)
}

// AuthFailures returns the number of failed SASL attempts since start.
func (s *Server) AuthFailures() uint64 { return s.authFailures.Load() }

// Serve accepts connections on ln until it is closed. directTLS selects
// XEP-0368 direct TLS instead of STARTTLS.
func (s *Server) Serve(ctx context.Context, ln net.Listener, directTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ln.Close()
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	mode := startTLS
	if directTLS {
		mode = directTLSMode
	}
	return conn.Accept(ln, func(nc net.Conn) bool {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, nc, mode)
		}()
		return true
	})
}

// Secured is a connection whose transport already provides TLS, such as
// a WebSocket over HTTPS (RFC 7395): the stream offers no STARTTLS and
// uses this state for SASL channel binding.
type Secured interface {
	net.Conn
	ConnectionState() tls.ConnectionState
}

// ServeConn runs one client stream on nc until it ends. It is how
// transports other than TCP (WebSocket) hand their connections over, so
// they get the same negotiation, limits and routing.
func (s *Server) ServeConn(ctx context.Context, nc Secured) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.handle(ctx, nc, preSecured)
}

// transport says how a connection gets its TLS.
type transport uint8

const (
	startTLS      transport = iota // RFC 6120 STARTTLS
	directTLSMode                  // XEP-0368 direct TLS
	preSecured                     // the transport below the stream (HTTPS)
)

func (s *Server) admit(st *Stream, ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.streams[st] = struct{}{}
	s.perIP[ip]++
	return s.cfg.MaxPerIP <= 0 || s.perIP[ip] <= s.cfg.MaxPerIP
}

func (s *Server) release(st *Stream, ip string) {
	s.mu.Lock()
	delete(s.streams, st)
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
}

// Shutdown stops accepting, closes every stream with system-shutdown and
// waits for the streams to end or ctx to expire.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	streams := make([]*Stream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	for _, st := range streams {
		st.c.CloseStream("system-shutdown", "the server is shutting down")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		for _, st := range streams {
			_ = st.c.Close()
		}
		err = ctx.Err()
	}
	// Sessions waiting to be resumed will not be: what they hold goes to
	// offline storage (or is bounced) while storage is still open.
	s.endDetached()
	return err
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Count returns the number of open client connections.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}
