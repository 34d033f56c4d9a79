// Package server is the composition root: New wires storage, TLS, the
// router, the hook bus, feature modules and listeners from a Config; Run
// serves until the context ends and then shuts down gracefully.
//
// Nothing imports this package except cmd and tests.
package server

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/logging/metrics"
	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/auth/throttle"
	"gatehouse/xmpp/c2s"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/mod/muc"
	"gatehouse/xmpp/mod/roster"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/storage"
	"gatehouse/xmpp/tlsconf"
)

// Version is the server version, set by the build (-ldflags -X).
var Version = "0.1.0-dev"

// Server is a running Gatehouse instance.
type Server struct {
	cfg    *config.Config
	log    *logrus.Logger
	db     *storage.DB
	certs  *tlsconf.Reloader
	table  *sessions.Table
	bus    *hook.Bus
	router *router.Router
	c2s    *c2s.Server
	ids    atomic.Uint64

	mu        sync.Mutex
	listeners []listener
	zones     *zones

	comp componentState // XEP-0114 component host (components.go)
	pol  policyState    // boundary policy (policy.go)
	fed  s2sState       // federation (s2s.go)
	arc  archiveState   // compliance archive (archive.go)
	mam  *mam.Module    // the users' own message history (XEP-0313)
	muc  *muc.Service   // group chat (muc.go)
	web  webState       // WebSocket and host-meta listener (web.go)
	mob  mobileState    // push, ad-hoc commands, registration (modules_mobile.go)
	svc  serviceState   // PEP/pubsub and file upload services (services.go)
	adm  adminState     // admin API for the CLI (admin.go)

	metrics     *metrics.Metrics   // Prometheus collectors, nil when off (metrics.go)
	throttle    *throttle.Throttle // login back-off, nil when off (authguard.go)
	dirs        directoryState     // corporate directory (directory.go)
	rosterMod   *roster.Module
	metricsAddr string
}

type listener struct {
	ln        net.Listener
	directTLS bool
}

// DBFile is the name of the main database inside the data directory.
const DBFile = "gatehouse.db"

// OpenDB opens the main database in dataDir, creating the directory.
func OpenDB(ctx context.Context, dataDir string) (*storage.DB, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	return storage.Open(ctx, filepath.Join(dataDir, DBFile))
}

// New builds a server from cfg. It opens storage and binds no sockets yet.
func New(ctx context.Context, cfg *config.Config, log *logrus.Logger) (*Server, error) {
	db, err := OpenDB(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	certs, err := tlsconf.NewReloader(tlsconf.Options{
		CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, DataDir: cfg.DataDir,
		Hosts: cfg.Hosts, MinVersion: cfg.TLS.MinVersion,
	})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	secret, err := loadSecret(filepath.Join(cfg.DataDir, "auth-secret"))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, db: db, certs: certs, table: sessions.NewTable()}
	s.bus = hook.New(cfg.Hosts, db, s.table)
	s.zones = &zones{local: s.bus, transports: map[string]bool{}}
	s.router = router.New(router.Config{Resolver: s.zones, Local: s.bus})
	s.bus.SetRouter(s.router)
	s.bus.AddIdentity(hook.Identity{Category: "server", Type: "im", Name: cfg.Server.Name})
	s.registerModules()
	if err := s.registerMobileModules(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.setupAdmin()
	s.setupMetrics()
	s.setupThrottle()
	if err := s.setupDirectory(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.setupPolicy(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.setupS2S(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.openArchive(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}

	c2sCfg := c2s.Config{
		Hosts: cfg.Hosts, TLS: certs.Current,
		Limits: conn.Limits{
			MaxStanzaBytes: cfg.Limits.MaxStanzaBytes, MaxDepth: cfg.Limits.MaxDepth,
			SendQueue: cfg.Limits.SendQueue, SendQueueBytes: cfg.Limits.SendQueueBytes,
		},
		Timeouts: conn.Timeouts{
			Idle: cfg.C2S.PingInterval.D(), Answer: cfg.C2S.IdleTimeout.D(),
			Keepalive: cfg.C2S.KeepaliveInterval.D(),
		},
		HandshakeTimeout: cfg.C2S.HandshakeTimeout.D(),
		// Directory logins are checked by a bind: PLAIN (over TLS) is needed.
		AllowPlain:       cfg.Auth.AllowPlain || cfg.Directory.Enabled,
		SCRAMIterations:  cfg.Auth.SCRAMIterations,
		AuthSecret:       secret,
		MaxAuthAttempts:  cfg.Auth.MaxAttempts,
		ResourceConflict: cfg.C2S.ResourceConflict,
		MaxPerIP:         cfg.C2S.MaxConnectionsPerIP,
		Lookup:           s.lookup,
		Throttle:         s.c2sThrottle(),
		PlainOnly:        cfg.Directory.Enabled && cfg.Directory.Auth == config.DirectoryAuthPlain,
		VerifyPlain:      s.verifyPlain,
		Disabled: func(ctx context.Context, user string) bool {
			locked, err := db.Locked(ctx, user)
			return err == nil && locked
		},
		Features: s.streamFeatures(),
		SM: c2s.SMConfig{
			Enabled: cfg.C2S.SMEnabled, ResumeTimeout: cfg.C2S.SMResumeTimeout.D(),
			MaxUnacked: cfg.C2S.SMMaxUnacked, RequestEvery: cfg.C2S.SMRequestEvery,
		},
		CSI: c2s.CSIConfig{Enabled: cfg.C2S.CSIEnabled, MaxHeld: cfg.C2S.CSIMaxHeld},
		// XEP-0077 before authentication (modules_mobile.go).
		Register: s.preAuthRegister, RegisterFeature: cfg.Register.Enabled,
	}
	s.c2s = c2s.New(c2sCfg, log.WithField("component", "c2s"), s.router, s.table, s.bus, &s.ids)
	return s, nil
}

func (s *Server) lookup(ctx context.Context, user string) (auth.Credentials, error) {
	if err := s.accountWait(user); err != nil {
		return auth.Credentials{}, err
	}
	c, err := s.db.Credentials(ctx, user)
	if errors.Is(err, storage.ErrNoUser) {
		return c, fmt.Errorf("%w: %w", auth.ErrNoUser, err)
	}
	if err == nil && s.dirs.dir != nil {
		return s.directoryLookup(ctx, user, c)
	}
	return c, err
}

// DB returns the main database.
func (s *Server) DB() *storage.DB { return s.db }

// Router returns the router.
func (s *Server) Router() *router.Router { return s.router }

// Bus returns the local hook bus.
func (s *Server) Bus() *hook.Bus { return s.bus }

// Sessions returns the session table.
func (s *Server) Sessions() *sessions.Table { return s.table }

// C2S returns the client listener server.
func (s *Server) C2S() *c2s.Server { return s.c2s }

// Certificate returns the server's leaf certificate.
func (s *Server) Certificate() *x509.Certificate { return s.certs.Leaf() }

// AddTransportDomain marks domain as a transport (its stanzas cross the
// boundary); the transport deliverer is set with Router().SetTransport.
func (s *Server) AddTransportDomain(domain string) {
	s.zones.mu.Lock()
	s.zones.transports[domain] = true
	s.zones.mu.Unlock()
	// Clients find gateways in the server's disco#items (XEP-0100 §4.1).
	s.bus.AddDiscoItem(domain)
}

// Listen binds every configured listener. Addresses ending in :0 get a free
// port; Addrs reports what was bound.
func (s *Server) Listen() error {
	bind := func(addr string, direct bool) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("server: listen %s: %w", addr, err)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, listener{ln: ln, directTLS: direct})
		s.mu.Unlock()
		return nil
	}
	for _, a := range s.cfg.C2S.Listen {
		if err := bind(a, false); err != nil {
			s.closeListeners()
			return err
		}
	}
	for _, a := range s.cfg.C2S.ListenTLS {
		if err := bind(a, true); err != nil {
			s.closeListeners()
			return err
		}
	}
	if err := s.listenComponents(); err != nil {
		s.closeListeners()
		return err
	}
	if err := s.listenS2S(); err != nil {
		s.closeListeners()
		return err
	}
	if err := s.listenMetrics(); err != nil {
		s.closeListeners()
		return err
	}
	if err := s.listenAdmin(); err != nil {
		s.closeListeners()
		return err
	}
	if err := s.listenWeb(); err != nil {
		s.closeListeners()
		return err
	}
	if err := s.listenServices(); err != nil {
		s.closeListeners()
		return err
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		_ = l.ln.Close()
	}
	s.listeners = nil
}

// Addrs returns the bound c2s addresses: STARTTLS ones, then direct TLS.
func (s *Server) Addrs() (starttls, direct []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.directTLS {
			direct = append(direct, l.ln.Addr().String())
		} else {
			starttls = append(starttls, l.ln.Addr().String())
		}
	}
	return starttls, direct
}

// Run serves until ctx is cancelled, then shuts down: streams are closed
// with system-shutdown, queues drained, storage closed.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if len(s.listeners) == 0 {
		s.mu.Unlock()
		if err := s.Listen(); err != nil {
			return err
		}
		s.mu.Lock()
	}
	ls := append([]listener(nil), s.listeners...)
	s.mu.Unlock()
	serveCtx := context.WithoutCancel(ctx)
	errc := make(chan error, len(ls))
	for _, l := range ls {
		s.log.WithFields(logrus.Fields{"addr": l.ln.Addr().String(), "direct_tls": l.directTLS}).Info("c2s listening")
		go func() { errc <- s.c2s.Serve(serveCtx, l.ln, l.directTLS) }()
	}
	compCtx, stopComponents := context.WithCancel(serveCtx)
	defer stopComponents()
	go s.serveComponents(compCtx)
	go s.serveS2S(compCtx)
	go s.serveWeb()
	go s.serveServices()
	go s.serveReview() // messages held for review (policy_review.go)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.shutdownWeb(shutCtx) // no new WebSocket streams; c2s closes the open ones
	if err := s.c2s.Shutdown(shutCtx); err != nil {
		s.log.WithError(err).Warn("some streams did not close in time")
	}
	s.shutdownComponents(shutCtx)
	s.shutdownS2S(shutCtx)
	s.shutdownMetrics(shutCtx)
	s.shutdownDirectory()
	if err := s.adm.api.Shutdown(shutCtx); err != nil {
		s.log.WithError(err).Warn("admin API calls did not finish in time")
	}
	s.closeReview() // before the archive: carrying out a decision records it
	if err := s.closeArchive(shutCtx); err != nil && runErr == nil {
		runErr = err
	}
	// Every ingress is closed: nothing can be archived to MAM any more.
	if err := s.mam.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.closeMUC(); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.closeMobile(); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.shutdownServices(shutCtx); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.db.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// Reload re-reads what can change at run time (SIGHUP): the log level and
// the TLS certificate and key files.
func (s *Server) Reload(cfg *config.Config) ReloadResult {
	res := ReloadResult{Reloaded: []string{}, Failed: map[string]string{}}
	if lvl, err := logrus.ParseLevel(cfg.Log.Level); err == nil {
		s.log.SetLevel(lvl)
		res.Reloaded = append(res.Reloaded, "log level")
	} else {
		res.Failed["log level"] = err.Error()
	}
	if err := s.reloadPolicy(context.Background()); err != nil {
		s.log.WithError(err).Error("policy reload failed; the previous policy stays in force")
		res.Failed["policy"] = err.Error() + " (the previous policy stays in force)"
	} else {
		res.Reloaded = append(res.Reloaded, "policy")
	}
	// New connections get the re-read certificate; open ones keep theirs.
	if err := s.certs.Reload(); err != nil {
		s.log.WithError(err).Error("reloading the TLS certificate failed; keeping the old one")
		res.Failed["TLS certificate"] = err.Error() + " (the old certificate stays in use)"
	} else {
		s.log.WithField("not_after", s.certs.Leaf().NotAfter).Info("TLS certificate reloaded")
		res.Reloaded = append(res.Reloaded, "TLS certificate")
	}
	s.log.Info("configuration reloaded")
	return res
}

// zones resolves a domain to its zone: hosted and internal component
// domains are local, registered transports are transport, anything else is
// remote.
type zones struct {
	local      *hook.Bus
	mu         sync.RWMutex
	transports map[string]bool
}

func (z *zones) ZoneOf(domain string) router.Zone {
	if z.local.ZoneOf(domain) == router.ZoneLocal {
		return router.ZoneLocal
	}
	z.mu.RLock()
	t := z.transports[domain]
	z.mu.RUnlock()
	if t {
		return router.ZoneTransport
	}
	return router.ZoneRemote
}

// loadSecret reads the server's 32-byte secret, creating it (mode 0600)
// on first start.
func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("server: reading %s: %w", path, err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("server: generating a secret: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("server: writing %s: %w", path, err)
	}
	return b, nil
}
