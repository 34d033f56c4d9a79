package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"gatehouse/xmpp/mod/pubsub"
	"gatehouse/xmpp/mod/upload"
	"gatehouse/xmpp/router"
)

// Internal services live at domains of their own under a hosted domain:
// pubsub.<domain> (XEP-0060), upload.<domain> (XEP-0363) and, hosted the
// same way by the group chat helper, conference.<domain> (XEP-0045).
// Each is a router.Deliverer that the bus serves as a component in the
// local zone: stanzas from local users to it never cross the boundary,
// while remote users reach it through the boundary like any local
// address. hostService is the one way to add one (MUC may call it too):
// it refuses a domain that is a hosted domain or already served, and
// since it runs before the component listeners are set up, a configured
// transport with the same domain is refused at start-up rather than
// silently shadowed.

// serviceState holds the internal services and the upload HTTPS listener.
type serviceState struct {
	pubsub    *pubsub.Module
	upload    *upload.Module
	uploadLn  net.Listener
	uploadSrv *http.Server
	errLog    *io.PipeWriter
}

// hostService serves domain with d in the local zone.
func (s *Server) hostService(domain string, d router.Deliverer) error {
	if domain == "" {
		return errors.New("server: a service needs a domain")
	}
	if s.bus.IsHost(domain) {
		return fmt.Errorf("server: service domain %q is a hosted domain", domain)
	}
	for _, c := range s.bus.Components() {
		if c == domain {
			return fmt.Errorf("server: service domain %q is already served", domain)
		}
	}
	s.bus.AddComponent(domain, d)
	return nil
}

// registerServices opens PEP/pubsub and upload. Like MUC, a service that
// cannot open its storage is logged and left out rather than stopping the
// server; stanzas to its domain then bounce.
func (s *Server) registerServices() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := s.log.WithField("component", "mod")
	if s.cfg.PubSub.Enabled {
		plog := log.WithField("mod", "pubsub")
		m, err := pubsub.Open(ctx, pubsub.Options{Config: s.cfg.PubSub, Hosts: s.cfg.Hosts, DataDir: s.cfg.DataDir, DB: s.db, Log: plog})
		if err != nil {
			plog.WithError(err).Error("PEP and pubsub unavailable")
		} else {
			m.Register(s.bus)
			if err := s.hostService(m.Domain(), m); err != nil {
				plog.WithError(err).Error("pubsub service not hosted")
			}
			s.svc.pubsub = m
		}
	}
	if s.cfg.Upload.Enabled {
		ulog := log.WithField("mod", "upload")
		m, err := upload.Open(ctx, upload.Options{Config: s.cfg.Upload, Hosts: s.cfg.Hosts, DataDir: s.cfg.DataDir, Log: ulog})
		if err != nil {
			ulog.WithError(err).Error("file upload unavailable")
			return
		}
		m.Register(s.bus)
		if err := s.hostService(m.Domain(), m); err != nil {
			ulog.WithError(err).Error("upload service not hosted")
			return
		}
		s.svc.upload = m
	}
}

// PubSub returns the PEP/pubsub module, or nil when it is off.
func (s *Server) PubSub() *pubsub.Module { return s.svc.pubsub }

// Upload returns the file upload module, or nil when it is off. The
// policy engine installs its upload.Checker with SetChecker.
func (s *Server) Upload() *upload.Module { return s.svc.upload }

// UploadAddr returns the bound upload HTTPS address, or "".
func (s *Server) UploadAddr() string {
	if s.svc.uploadLn == nil {
		return ""
	}
	return s.svc.uploadLn.Addr().String()
}

// listenServices binds the upload HTTPS listener; called from Listen.
func (s *Server) listenServices() error {
	m := s.svc.upload
	if m == nil || s.svc.uploadLn != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Upload.Listen)
	if err != nil {
		return fmt.Errorf("server: listen upload %s: %w", s.cfg.Upload.Listen, err)
	}
	base := s.cfg.Upload.PublicURL
	if base == "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		base = "https://" + net.JoinHostPort(s.cfg.Hosts[0], port)
	}
	m.SetBaseURL(base)
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 4096)
		log := s.log.WithField("component", "upload-http")
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				log.Debug(strings.TrimSpace(string(buf[:n])))
			}
			if err != nil {
				return
			}
		}
	}()
	s.svc.errLog = pw
	s.svc.uploadLn = ln
	s.svc.uploadSrv = &http.Server{
		Handler:           m.Handler(),
		TLSConfig:         s.certs.Config(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          stdlog.New(pw, "", 0),
	}
	return nil
}

// serveServices serves the upload listener until it is shut down; called
// from Run as a goroutine.
func (s *Server) serveServices() {
	if s.svc.uploadSrv == nil {
		return
	}
	s.log.WithField("addr", s.svc.uploadLn.Addr().String()).Info("upload HTTPS listening")
	if err := s.svc.uploadSrv.ServeTLS(s.svc.uploadLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.WithError(err).Error("upload listener failed")
	}
}

// shutdownServices stops the upload listener (waiting for transfers
// until ctx ends) and closes the pubsub store; called from Run after the
// client streams closed.
func (s *Server) shutdownServices(ctx context.Context) error {
	if s.svc.uploadSrv != nil {
		if err := s.svc.uploadSrv.Shutdown(ctx); err != nil {
			s.log.WithError(err).Warn("some uploads did not finish in time")
			_ = s.svc.uploadSrv.Close()
		}
		_ = s.svc.errLog.Close()
	}
	if s.svc.uploadLn != nil {
		// Shutdown closes only listeners Serve had taken up.
		_ = s.svc.uploadLn.Close()
	}
	if s.svc.pubsub != nil {
		return s.svc.pubsub.Close()
	}
	return nil
}
