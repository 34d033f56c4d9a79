package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/sirupsen/logrus"

	"gatehouse/s2s"
	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
)

// s2sState is the federation subsystem and its listeners; svc is nil
// while s2s.enabled is false.
type s2sState struct {
	mu       sync.Mutex
	svc      *s2s.Service
	resolver *s2s.DNSResolver
	store    *s2s.Store
	lns      []s2sListener
}

type s2sListener struct {
	ln        net.Listener
	directTLS bool
}

// DialbackSecretFile holds the generated dialback secret in the data
// directory when s2s.dialback_secret is empty.
const DialbackSecretFile = "dialback-secret"

// setupS2S builds the federation subsystem and installs it as the router's
// remote deliverer (issue 6). Called from New. With federation disabled
// nothing is installed: the router bounces stanzas for other domains with
// remote-server-not-found.
func (s *Server) setupS2S(ctx context.Context) error {
	c := s.cfg.S2S
	if !c.Enabled {
		return nil
	}
	secret := []byte(c.DialbackSecret)
	if len(secret) == 0 {
		var err error
		if secret, err = loadSecret(filepath.Join(s.cfg.DataDir, DialbackSecretFile)); err != nil {
			return err
		}
	}
	roots, err := s2sRoots(c.CAFile)
	if err != nil {
		return err
	}
	static := make(map[string]s2s.Target, len(c.Routes))
	for d, v := range c.Routes {
		t, err := routeTarget(v)
		if err != nil {
			return fmt.Errorf("server: s2s.routes.%s: %w", d, err)
		}
		static[d] = t
	}
	store, err := s2s.OpenStore(ctx, filepath.Join(s.cfg.DataDir, s2s.StoreFile))
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	policy := s2s.NewPolicy(c.Mode, c.Allow, c.Deny)
	entries, err := store.List(ctx)
	if err != nil {
		_ = store.Close()
		return fmt.Errorf("server: %w", err)
	}
	policy.SetStored(entries)
	resolver := s2s.NewDNSResolver(nil, static)
	svc, err := s2s.New(s2s.Config{
		IsLocal: func(d string) bool { return s.bus.ZoneOf(d) == router.ZoneLocal },
		ServerTLS: func() *tls.Config {
			cfg, _ := s.certs.Current()
			return cfg
		},
		Roots:                roots,
		RequireTLS:           c.RequireTLS,
		RequireVerifiedCerts: c.RequireVerifiedCerts,
		Bidi:                 c.Bidi,
		Limits: conn.Limits{
			MaxStanzaBytes: s.cfg.Limits.MaxStanzaBytes, MaxDepth: s.cfg.Limits.MaxDepth,
			SendQueue: s.cfg.Limits.SendQueue, SendQueueBytes: s.cfg.Limits.SendQueueBytes,
		},
		ConnectTimeout:   c.ConnectTimeout.D(),
		HandshakeTimeout: c.HandshakeTimeout.D(),
		QueueTimeout:     c.QueueTimeout.D(),
		QueueSize:        c.QueueSize,
		IdleTimeout:      c.IdleTimeout.D(),
		MaxInbound:       c.MaxInbound,
		RateLimit:        c.RateLimit,
		Secret:           secret,
		Resolver:         resolver,
		Policy:           policy,
		Store:            store,
		StatusFile:       filepath.Join(s.cfg.DataDir, s2s.StatusFile),
	}, s.log.WithField("component", "s2s"), s.router, &s.ids)
	if err != nil {
		_ = store.Close()
		return fmt.Errorf("server: %w", err)
	}
	s.fed.mu.Lock()
	s.fed.svc, s.fed.resolver, s.fed.store = svc, resolver, store
	s.fed.mu.Unlock()
	s.router.SetRemote(svc)
	if api := s.Admin(); api != nil {
		api.Handle("GET /v1/federation", s.adminFederation)
		api.Handle("POST /v1/federation/{list}", s.adminFederationEdit)
	}
	return nil
}

// FederationEdit is the body of POST /v1/federation/{allow|deny}: stored
// entries to add (or, with Remove, to take off that list).
type FederationEdit struct {
	Domains []string `json:"domains"`
	Note    string   `json:"note,omitempty"`
	Remove  bool     `json:"remove,omitempty"`
}

// FederationEditResult lists the canonical domains changed.
type FederationEditResult struct {
	Changed []string `json:"changed"`
}

// adminFederation answers GET /v1/federation with the live links.
func (s *Server) adminFederation(context.Context, *admin.Request) (any, error) {
	return s.S2S().Status(), nil
}

// adminFederationEdit changes the stored allow or deny list and applies it
// at once: links with domains no longer allowed close. The admin API
// audits the call. Domains are checked first: an invalid one changes
// nothing.
func (s *Server) adminFederationEdit(ctx context.Context, r *admin.Request) (any, error) {
	list := s2s.List(r.PathValue("list"))
	if list != s2s.ListAllow && list != s2s.ListDeny {
		return nil, fmt.Errorf("%w: unknown list %q (allow or deny)", admin.ErrNotFound, list)
	}
	var req FederationEdit
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	if len(req.Domains) == 0 {
		return nil, fmt.Errorf("%w: no domains", admin.ErrBadRequest)
	}
	domains := make([]string, 0, len(req.Domains))
	for _, d := range req.Domains {
		n, err := config.NormalizeDomain(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
		}
		domains = append(domains, n)
	}
	s.fed.mu.Lock()
	svc, store := s.fed.svc, s.fed.store
	s.fed.mu.Unlock()
	res := FederationEditResult{Changed: []string{}}
	var editErr error
	for _, d := range domains {
		if req.Remove {
			err := store.RemoveFrom(ctx, d, list)
			switch {
			case errors.Is(err, s2s.ErrNotListed):
				editErr = fmt.Errorf("%w: %w", admin.ErrNotFound, err)
			case errors.Is(err, s2s.ErrOtherList):
				editErr = fmt.Errorf("%w: %w", admin.ErrConflict, err)
			default:
				editErr = err
			}
		} else {
			editErr = store.Set(ctx, d, list, req.Note)
		}
		if editErr != nil {
			break
		}
		res.Changed = append(res.Changed, d)
	}
	// What changed applies now, even when a later domain failed.
	if err := svc.ReloadPolicy(ctx); err != nil && editErr == nil {
		editErr = err
	}
	return res, editErr
}

// s2sRoots returns the system roots plus the CAs of caFile.
func s2sRoots(caFile string) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if caFile == "" {
		return roots, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("server: s2s.ca_file: %w", err)
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("server: s2s.ca_file %s: no PEM certificate in it", caFile)
	}
	return roots, nil
}

func routeTarget(v string) (s2s.Target, error) {
	addr, direct, err := config.RouteTarget(v)
	if err != nil {
		return s2s.Target{}, err
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.ParseUint(port, 10, 16)
	return s2s.Target{Host: host, Port: uint16(p), DirectTLS: direct}, nil
}

// S2S returns the federation service, or nil when federation is disabled.
func (s *Server) S2S() *s2s.Service {
	s.fed.mu.Lock()
	defer s.fed.mu.Unlock()
	return s.fed.svc
}

// SetS2SRoute sets a static route for a remote domain at run time (tests
// and private peering); target is "host:port" or "tls://host:port".
func (s *Server) SetS2SRoute(domain, target string) error {
	t, err := routeTarget(target)
	if err != nil {
		return err
	}
	s.fed.mu.Lock()
	defer s.fed.mu.Unlock()
	if s.fed.resolver == nil {
		return fmt.Errorf("server: federation is disabled")
	}
	s.fed.resolver.SetRoute(domain, t)
	return nil
}

// SetS2SDNS makes federation look SRV records up with d instead of the
// system resolver (tests with their own name server; nil restores it).
func (s *Server) SetS2SDNS(d s2s.SRVLookup) error {
	s.fed.mu.Lock()
	defer s.fed.mu.Unlock()
	if s.fed.resolver == nil {
		return fmt.Errorf("server: federation is disabled")
	}
	s.fed.resolver.SetDNS(d)
	return nil
}

// S2SAddrs returns the bound s2s addresses: STARTTLS ones, then direct TLS.
func (s *Server) S2SAddrs() (starttls, direct []string) {
	s.fed.mu.Lock()
	defer s.fed.mu.Unlock()
	for _, l := range s.fed.lns {
		if l.directTLS {
			direct = append(direct, l.ln.Addr().String())
		} else {
			starttls = append(starttls, l.ln.Addr().String())
		}
	}
	return starttls, direct
}

// listenS2S binds the s2s listeners; called from Listen.
func (s *Server) listenS2S() error {
	s.fed.mu.Lock()
	defer s.fed.mu.Unlock()
	if s.fed.svc == nil || len(s.fed.lns) > 0 {
		return nil
	}
	bind := func(addrs []string, direct bool) error {
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				for _, l := range s.fed.lns {
					_ = l.ln.Close()
				}
				s.fed.lns = nil
				return fmt.Errorf("server: listen s2s %s: %w", a, err)
			}
			s.fed.lns = append(s.fed.lns, s2sListener{ln: ln, directTLS: direct})
		}
		return nil
	}
	if err := bind(s.cfg.S2S.Listen, false); err != nil {
		return err
	}
	return bind(s.cfg.S2S.ListenTLS, true)
}

// serveS2S accepts inbound s2s streams and runs the periodic federation
// work until ctx ends; called from Run.
func (s *Server) serveS2S(ctx context.Context) {
	s.fed.mu.Lock()
	svc, lns := s.fed.svc, append([]s2sListener(nil), s.fed.lns...)
	s.fed.mu.Unlock()
	if svc == nil {
		return
	}
	var wg sync.WaitGroup
	for _, l := range lns {
		s.log.WithFields(logrus.Fields{"addr": l.ln.Addr().String(), "direct_tls": l.directTLS}).Info("s2s listening")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Serve(l.ln, l.directTLS); err != nil {
				s.log.WithError(err).WithField("addr", l.ln.Addr().String()).Error("s2s listener failed")
			}
		}()
	}
	svc.Run(ctx)
	wg.Wait()
}

// shutdownS2S closes s2s streams; called from Run after c2s shut down (so
// users' unavailable presence has gone out) and before the archive closes.
func (s *Server) shutdownS2S(ctx context.Context) {
	s.fed.mu.Lock()
	svc, store := s.fed.svc, s.fed.store
	for _, l := range s.fed.lns {
		_ = l.ln.Close() // listeners that never reached Serve
	}
	s.fed.mu.Unlock()
	if svc == nil {
		return
	}
	if err := svc.Shutdown(ctx); err != nil {
		s.log.WithError(err).Warn("some s2s streams did not close in time")
	}
	if err := store.Close(); err != nil {
		s.log.WithError(err).Warn("closing the federation store")
	}
}
