package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/sirupsen/logrus"

	"gatehouse/transports/component"
	"gatehouse/transports/privilege"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
)

// componentState is the XEP-0114 component host and its listeners. The
// host exists only when components.transports lists a component.
type componentState struct {
	mu       sync.Mutex
	host     *component.Host
	lns      []net.Listener
	observer component.LinkObserver
	priv     *privilege.Module // XEP-0356 (transports.go)
	builtin  builtinState      // transports the server runs (transports.go)
	// list are the transports: the configured ones, then those added with
	// `gatehouse transport add` (transports.go).
	list []config.Component
}

// setLinkObserver installs what records component link up/down (the
// compliance archive). It may be called before or after Listen.
func (s *Server) setLinkObserver(o component.LinkObserver) {
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	s.comp.observer = o
	if s.comp.host != nil {
		s.comp.host.SetObserver(o)
	}
}

// ComponentHost returns the component host, or nil when no component is
// configured.
func (s *Server) ComponentHost() *component.Host {
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	return s.comp.host
}

// ComponentAddrs returns the bound component listener addresses.
func (s *Server) ComponentAddrs() []string {
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	out := make([]string, 0, len(s.comp.lns))
	for _, ln := range s.comp.lns {
		out = append(out, ln.Addr().String())
	}
	return out
}

// listenComponents builds the component host, puts every configured
// component domain in the transport zone, installs the host as the
// router's transport deliverer and binds the component listeners. Called
// from Listen; nothing is bound while no component is configured.
func (s *Server) listenComponents() error {
	cc := s.cfg.Components
	cc.Transports = s.comp.list
	if len(cc.Transports) == 0 {
		return nil
	}
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	if s.comp.host == nil {
		h, err := s.newComponentHost(cc)
		if err != nil {
			return err
		}
		s.comp.host = h
	}
	if len(s.comp.lns) > 0 {
		return nil
	}
	for _, a := range cc.Listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range s.comp.lns {
				_ = l.Close()
			}
			s.comp.lns = nil
			return fmt.Errorf("server: listen components %s: %w", a, err)
		}
		s.comp.lns = append(s.comp.lns, ln)
	}
	return nil
}

func (s *Server) newComponentHost(cc config.Components) (*component.Host, error) {
	comps := make([]component.Component, 0, len(cc.Transports))
	for i, t := range cc.Transports {
		key := fmt.Sprintf("components.transports[%d]", i)
		// A hosted (or internal component) domain resolves to the local
		// zone first, so a transport by that name would never be reached.
		if s.bus.ZoneOf(t.Domain) == router.ZoneLocal {
			return nil, fmt.Errorf("server: %s.domain: %q is served by this server itself", key, t.Domain)
		}
		secret, err := componentSecret(t)
		if err == nil && len(secret) == 0 && t.Builtin != "" {
			secret, err = s.builtinSecret(t)
		}
		if err != nil {
			return nil, fmt.Errorf("server: %s: %w", key, err)
		}
		comps = append(comps, component.Component{Domain: t.Domain, Secret: secret, Name: t.Name, Type: t.Type})
	}
	h, err := component.New(component.Config{
		Components: comps,
		Limits: conn.Limits{
			MaxStanzaBytes: s.cfg.Limits.MaxStanzaBytes, MaxDepth: s.cfg.Limits.MaxDepth,
			SendQueue: s.cfg.Limits.SendQueue, SendQueueBytes: s.cfg.Limits.SendQueueBytes,
		},
		Timeouts:         conn.Timeouts{Idle: cc.PingInterval.D(), Answer: cc.IdleTimeout.D()},
		HandshakeTimeout: cc.HandshakeTimeout.D(),
		ServerDomain:     s.cfg.Hosts[0],
		Welcome:          s.welcomeComponent,
		Gone:             s.componentGone,
	}, s.log.WithField("component", "components"), s.router, &s.ids)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.comp.observer != nil {
		h.SetObserver(s.comp.observer)
	}
	for _, c := range comps {
		s.AddTransportDomain(c.Domain)
	}
	s.router.SetTransport(h)
	return h, nil
}

// componentSecret returns the inline secret or reads secret_file (config
// does no I/O besides the configuration file itself).
func componentSecret(t config.Component) ([]byte, error) {
	if t.SecretFile == "" {
		return []byte(t.Secret), nil
	}
	b, err := os.ReadFile(t.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("secret_file: %w", err)
	}
	// Editors and `echo` end the file with a newline; it is not part of
	// the secret.
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < config.MinComponentSecret {
		return nil, fmt.Errorf("secret_file %s: the secret must be at least %d characters", t.SecretFile, config.MinComponentSecret)
	}
	return b, nil
}

// serveComponents accepts components until the listeners close; called
// from Run as a goroutine.
func (s *Server) serveComponents(ctx context.Context) {
	s.comp.mu.Lock()
	h, lns := s.comp.host, append([]net.Listener(nil), s.comp.lns...)
	s.comp.mu.Unlock()
	if h == nil {
		return
	}
	if len(lns) > 0 {
		s.startBuiltins(ctx, lns[0].Addr())
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		s.log.WithFields(logrus.Fields{"addr": ln.Addr().String(), "domains": h.Domains()}).Info("components listening")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Serve(ctx, ln); err != nil {
				s.log.WithError(err).WithField("addr", ln.Addr().String()).Error("component listener failed")
			}
		}()
	}
	wg.Wait()
}

// shutdownComponents closes component streams with system-shutdown; called
// from Run after c2s shut down (so users' unavailable presence has reached
// the transports) and before the archive closes.
func (s *Server) shutdownComponents(ctx context.Context) {
	s.comp.mu.Lock()
	h := s.comp.host
	// Listeners that never reached Serve (Run ended early) close here.
	for _, ln := range s.comp.lns {
		_ = ln.Close()
	}
	s.comp.mu.Unlock()
	if h == nil {
		return
	}
	// Builtin transports first: their IRC sessions QUIT while the link
	// still carries the users' last presence.
	s.stopBuiltins()
	if err := h.Shutdown(ctx); err != nil {
		s.log.WithError(err).Warn("some component streams did not close in time")
	}
}
