package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/websocket"
)

// webState is the HTTPS listener for WebSocket streams (RFC 7395) and
// host-meta (XEP-0156).
type webState struct {
	ln     net.Listener
	srv    *http.Server
	errLog *io.PipeWriter // the http.Server's error log, into logrus
}

// webHandler routes the web listener's paths.
func (s *Server) webHandler() http.Handler {
	mux := http.NewServeMux()
	wsCfg := websocket.Config{
		ReadLimit:      int64(s.cfg.Limits.MaxStanzaBytes) + 64<<10,
		OriginPatterns: s.cfg.Web.Origins,
		PingInterval:   s.cfg.C2S.KeepaliveInterval.D(),
	}
	log := s.log.WithField("component", "web")
	mux.Handle(s.cfg.Web.WebSocketPath, websocket.Handler(wsCfg, log, func(ctx context.Context, nc *websocket.Conn) {
		s.c2s.ServeConn(ctx, nc)
	}))
	hm := websocket.HostMeta(s.bus.IsHost, s.webSocketURL)
	mux.Handle("/.well-known/host-meta", hm)
	mux.Handle("/.well-known/host-meta.json", hm)
	return mux
}

// webSocketURL is the endpoint host-meta advertises.
func (s *Server) webSocketURL(r *http.Request) string {
	base := strings.TrimSuffix(s.cfg.Web.PublicURL, "/")
	if base == "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		port := ""
		if s.web.ln != nil {
			_, port, _ = net.SplitHostPort(s.web.ln.Addr().String())
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		base = "https://" + host
		if port != "" && port != "443" {
			base += ":" + port
		}
	}
	return "wss" + strings.TrimPrefix(base, "https") + s.cfg.Web.WebSocketPath
}

// listenWeb binds the web listener when it is enabled.
func (s *Server) listenWeb() error {
	if !s.cfg.Web.Enabled {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Web.Listen)
	if err != nil {
		return fmt.Errorf("server: web listen %s: %w", s.cfg.Web.Listen, err)
	}
	// WebSocket needs HTTP/1.1 (RFC 8441 over HTTP/2 is not supported).
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c, _ := s.certs.Current()
			c = c.Clone()
			c.NextProtos = []string{"http/1.1"}
			return c, nil
		},
	}
	s.web.ln = tls.NewListener(ln, tlsCfg)
	s.web.errLog = s.log.WithField("component", "web").WriterLevel(logrus.DebugLevel)
	s.web.srv = &http.Server{
		Handler:           s.webHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// TLS handshake failures and the like are the client's problem.
		ErrorLog: stdlog.New(s.web.errLog, "", 0),
	}
	return nil
}

// WebAddr returns the bound web listener's address, or "" when disabled.
func (s *Server) WebAddr() string {
	if s.web.ln == nil {
		return ""
	}
	return s.web.ln.Addr().String()
}

func (s *Server) serveWeb() {
	if s.web.srv == nil {
		return
	}
	s.log.WithFields(logrus.Fields{"addr": s.web.ln.Addr().String(), "websocket": s.cfg.Web.WebSocketPath}).Info("web listening")
	if err := s.web.srv.Serve(s.web.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.WithError(err).Error("web listener failed")
	}
}

// shutdownWeb stops accepting; WebSocket streams are c2s streams and are
// closed by the c2s shutdown that follows.
func (s *Server) shutdownWeb(ctx context.Context) {
	if s.web.srv == nil {
		return
	}
	if err := s.web.srv.Shutdown(ctx); err != nil {
		s.log.WithError(err).Warn("web listener did not shut down cleanly")
	}
	_ = s.web.errLog.Close()
}
