package s2s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
)

// recordRouter counts what the stream hands on.
type recordRouter struct {
	mu     sync.Mutex
	routed []*router.Envelope
}

func (r *recordRouter) Route(_ context.Context, env *router.Envelope) error {
	r.mu.Lock()
	r.routed = append(r.routed, env)
	r.mu.Unlock()
	return nil
}

func (r *recordRouter) Forward(ctx context.Context, env *router.Envelope) error {
	return r.Route(ctx, env)
}

// noDNS fails every resolution at once (dialback callbacks in fuzzing).
type noDNS struct{}

func (noDNS) Resolve(context.Context, string) ([]Target, error) {
	return nil, errors.New("no DNS in this test")
}

func selfSigned(t testing.TB) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "b.example"},
		DNSNames: []string{"b.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// fuzzService is a Service for b.example that accepts plain-text
// dialback, so fuzzed input reaches every state without a TLS handshake.
func fuzzService(t testing.TB, tlsCfg *tls.Config, r Router) *Service {
	log := logrus.New()
	log.SetOutput(io.Discard)
	var ids atomic.Uint64
	svc, err := New(Config{
		IsLocal:          func(d string) bool { return d == "b.example" },
		ServerTLS:        func() *tls.Config { return tlsCfg },
		Limits:           conn.Limits{MaxStanzaBytes: 10000, MaxDepth: 16, SendQueue: 100, SendQueueBytes: 1 << 20},
		HandshakeTimeout: 500 * time.Millisecond,
		ConnectTimeout:   500 * time.Millisecond,
		Secret:           []byte("fuzzing secret 0123"),
		Resolver:         noDNS{},
		Policy:           NewPolicy(ModeDenylist, nil, []string{"denied.example"}),
	}, log, r, &ids)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

const fuzzHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='b.example' from='a.example' version='1.0'>`

// FuzzInboundStream feeds arbitrary input after an s2s stream header:
// the negotiation and dialback states, which c2s does not have, must end
// every input with a stream error or a close, never a panic or a hang.
func FuzzInboundStream(f *testing.F) {
	for _, s := range []string{
		`<db:result from='a.example' to='b.example'>abcdef</db:result>`,
		`<db:result from='a.example' to='c.example'>abcdef</db:result>`,
		`<db:result from='denied.example' to='b.example'>k</db:result><message from='x@denied.example' to='y@b.example'/>`,
		`<db:verify from='a.example' to='b.example' id='x'>k</db:verify>`,
		`<db:verify from='a.example' to='b.example'>k</db:verify><db:verify/>`,
		`<db:result type='valid' from='a.example' to='b.example'/>`,
		`<db:result from='' to=''/>`,
		`<message from='x@a.example' to='y@b.example'><body>hi</body></message>`,
		`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
		`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>`,
		`<bidi xmlns='urn:xmpp:bidi'/>`,
		`<db:result from='a.example' to='b.example'>k</db:result><iq from='a.example' to='b.example' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`</stream:stream>`,
		`<db:result xmlns:db='jabber:server:dialback' from='a.example' to='b.example'><x/></db:result>`,
	} {
		f.Add([]byte(s))
	}
	tlsCfg := selfSigned(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &recordRouter{}
		svc := fuzzService(t, tlsCfg, r)
		svc.cfg.RequireTLS = false
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			svc.handleInbound(server, false)
			close(done)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		go func() {
			_, _ = client.Write([]byte(fuzzHeader))
			_, _ = client.Write(data)
			_ = client.Close()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the stream did not end for input %q", data)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		// Nothing unauthenticated may reach the router.
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, env := range r.routed {
			if env.Src.Zone == router.ZoneRemote {
				t.Fatalf("routed %s from an unauthenticated stream", env.Stanza)
			}
		}
	})
}
