// Package xmpptest runs a real Gatehouse server on 127.0.0.1:0 for tests
// and provides a raw-XML client that negotiates STARTTLS, SASL and binding
// and then sends and expects stanzas over the real socket.
//
// Only tests import it.
package xmpptest

import (
	"context"
	"crypto/x509"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
)

// Timeout bounds every wait in the harness.
const Timeout = 10 * time.Second

// TestServer is a running server.
type TestServer struct {
	*server.Server
	Config    *config.Config
	Addr      string // STARTTLS listener
	TLSAddr   string // direct TLS listener
	Roots     *x509.CertPool
	Domain    string
	LogOutput io.Writer
	stop      func()
}

// Stop shuts the server down (as SIGTERM does) and waits for it.
func (ts *TestServer) Stop() { ts.stop() }

// Option changes the config before the server starts.
type Option func(*config.Config)

// WithWeb turns on the web listener (WebSocket, host-meta) on 127.0.0.1:0;
// TestServer.WebAddr says where it is.
func WithWeb() Option {
	return func(c *config.Config) {
		c.Web.Enabled = true
		c.Web.Listen = "127.0.0.1:0"
	}
}

// RunServer starts a server with the default config (domain localhost,
// listeners, the upload HTTPS one included, on 127.0.0.1:0, a temporary
// data directory) and stops it when
// the test ends.
func RunServer(t testing.TB, opts ...Option) *TestServer {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.C2S.Listen = []string{"127.0.0.1:0"}
	cfg.C2S.ListenTLS = []string{"127.0.0.1:0"}
	// Upload is on by default and binds an HTTPS port of its own; tests
	// run servers side by side, so it picks a free one (UploadAddr says
	// which). The web listener is off unless WithWeb, but the same holds.
	cfg.Upload.Listen = "127.0.0.1:0"
	cfg.Web.Listen = "127.0.0.1:0"
	for _, o := range opts {
		o(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("xmpptest: config: %v", err)
	}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	log.SetLevel(logrus.WarnLevel)
	if testing.Verbose() {
		log.SetLevel(logrus.DebugLevel)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("xmpptest: server.New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		cancel()
		t.Fatalf("xmpptest: listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("xmpptest: server run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("xmpptest: server did not shut down")
			}
		})
	}
	t.Cleanup(stop)
	st, dt := srv.Addrs()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return &TestServer{Server: srv, Config: cfg, Addr: st[0], TLSAddr: dt[0], Roots: roots, Domain: cfg.Hosts[0], stop: stop}
}

// AddUser creates an account.
func (ts *TestServer) AddUser(t testing.TB, user, password string) {
	t.Helper()
	c, err := auth.NewCredentials(password, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.DB().CreateUser(context.Background(), user, c); err != nil {
		t.Fatalf("xmpptest: add user %s: %v", user, err)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
