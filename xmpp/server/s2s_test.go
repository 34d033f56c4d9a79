package server_test

import (
	"context"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/s2s"
	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// Federation and the boundary: every stanza that crosses between a
// hosted domain and another server passes the router's boundary exactly
// once on each server — on the way out before the s2s link gets it, on the
// way in before any local delivery — whatever the link does (dialback or
// SASL EXTERNAL with XEP-0288 bidi, a queue that survives a reconnect), and
// the bounces servers generate are not new crossings.

const (
	fedA, fedB = "a.localhost", "b.localhost"
	fedPW      = "federation secret"
)

// crossing is what a counting boundary saw.
type crossing struct {
	src, dst router.Zone
	st       *stanza.Stanza
}

// countingBoundary records every Cross and denies stanzas whose body
// contains deny (when set), as a policy would.
type countingBoundary struct {
	deny string
	mu   sync.Mutex
	seen []crossing
}

func (b *countingBoundary) Cross(_ context.Context, env *router.Envelope) (router.Decision, error) {
	b.mu.Lock()
	b.seen = append(b.seen, crossing{src: env.Src.Zone, dst: env.Dst.Zone, st: env.Stanza.Copy()})
	b.mu.Unlock()
	if b.deny != "" && strings.Contains(env.Stanza.Body(), b.deny) {
		return router.Decision{Verdict: router.Deny, Condition: stanza.PolicyViolation, Text: "denied by the test boundary"}, nil
	}
	return router.Decision{Verdict: router.Allow}, nil
}

// count returns how many crossings from src to dst matched f.
func (b *countingBoundary) count(src, dst router.Zone, f func(*stanza.Stanza) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.seen {
		if c.src == src && c.dst == dst && f(c.st) {
			n++
		}
	}
	return n
}

func (b *countingBoundary) dump() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for _, c := range b.seen {
		s.WriteString(c.src.String() + "→" + c.dst.String() + " " + c.st.String() + "\n")
	}
	return s.String()
}

func byID(typ, id string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.ID == id && s.Type == typ }
}

// runWithBoundary starts a federated server for domain as
// xmpptest.RunServer does, but with b installed as the router's boundary
// before it serves (nil keeps the server's own: policy and archive). stop
// shuts it down (the TestServer's own Stop works only for
// xmpptest.RunServer's servers).
func runWithBoundary(t testing.TB, domain string, b router.Boundary, opts ...xmpptest.Option) (ts *xmpptest.TestServer, stop func()) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.C2S.Listen = []string{"127.0.0.1:0"}
	cfg.C2S.ListenTLS = []string{"127.0.0.1:0"}
	cfg.Upload.Listen = "127.0.0.1:0" // on by default; tests run side by side
	s2stest.Federated(domain)(cfg)
	for _, o := range opts {
		o(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(testLog{t})
	log.SetLevel(logrus.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if b != nil {
		srv.Router().SetBoundary(b)
	}
	if err := srv.Listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("server did not shut down")
			}
		})
	}
	t.Cleanup(stop)
	st, dt := srv.Addrs()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return &xmpptest.TestServer{Server: srv, Config: cfg, Addr: st[0], TLSAddr: dt[0], Roots: roots, Domain: domain}, stop
}

type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func fedOnline(t *testing.T, ts *xmpptest.TestServer, user string) *xmpptest.Client {
	t.Helper()
	c := ts.Dial(t, user, fedPW, xmpptest.ClientOptions{Resource: "r"})
	c.Send(`<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>`)
	c.Expect(xmpptest.IsIQ("roster"))
	c.Send(`<presence/>`)
	c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.Equal(c.JID) })
	return c
}

func TestS2SCrossesBoundaryOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		certs  bool
		method string
	}{
		{"dialback", false, s2s.MethodDialback},
		{"sasl external and bidi", true, s2s.MethodSASLExternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var optsA, optsB []xmpptest.Option
			if tc.certs {
				ca := s2stest.NewCA(t)
				optsA = append(optsA, s2stest.WithCert(ca, ca.Issue(t, fedA)))
				optsB = append(optsB, s2stest.WithCert(ca, ca.Issue(t, fedB)))
			}
			optsA = append(optsA, func(c *config.Config) { c.S2S.QueueTimeout = config.Duration(20 * time.Second) })
			ba := &countingBoundary{deny: "forbidden-out"}
			bb := &countingBoundary{deny: "forbidden-in"}
			a, _ := runWithBoundary(t, fedA, ba, optsA...)
			b, stopB := runWithBoundary(t, fedB, bb, optsB...)
			s2stest.Route(t, a, b, false)
			s2stest.Route(t, b, a, false)
			a.AddUser(t, "alice", fedPW)
			b.AddUser(t, "bob", fedPW)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("a's boundary saw:\n%s", ba.dump())
					t.Logf("b's boundary saw:\n%s", bb.dump())
				}
			})
			alice, bob := fedOnline(t, a, "alice"), fedOnline(t, b, "bob")
			const (
				L = router.ZoneLocal
				R = router.ZoneRemote
			)
			once := func(who string, bd *countingBoundary, src, dst router.Zone, f func(*stanza.Stanza) bool, what string) {
				t.Helper()
				if n := bd.count(src, dst, f); n != 1 {
					t.Errorf("%s's boundary saw %s %s→%s %d times, want once", who, what, src, dst, n)
				}
			}

			// Messages both ways.
			alice.Send(`<message to='bob@b.localhost' type='chat' id='m1'><body>hello bob</body></message>`)
			bob.Expect(xmpptest.IsMessage("hello bob"))
			bob.Send(`<message to='alice@a.localhost' type='chat' id='m2'><body>hello alice</body></message>`)
			alice.Expect(xmpptest.IsMessage("hello alice"))
			once("a", ba, L, R, byID("chat", "m1"), "m1")
			once("b", bb, R, L, byID("chat", "m1"), "m1")
			once("b", bb, L, R, byID("chat", "m2"), "m2")
			once("a", ba, R, L, byID("chat", "m2"), "m2")
			if out := a.S2S().Links(); len(out) == 0 || out[0].Direction != "out" || out[0].Method != tc.method || out[0].Bidi != tc.certs {
				t.Fatalf("a's links %+v, want an outbound %s link (bidi %v)", out, tc.method, tc.certs)
			}

			// An IQ round trip to the remote server: request and result
			// each cross once on each side.
			alice.Send(`<iq type='get' id='v1' to='b.localhost'><query xmlns='jabber:iq:version'/></iq>`)
			if r := alice.Expect(xmpptest.IsIQ("v1")); r.Type != "result" {
				t.Fatalf("version: %s", r)
			}
			once("a", ba, L, R, byID("get", "v1"), "the version request")
			once("b", bb, R, L, byID("get", "v1"), "the version request")
			once("b", bb, L, R, byID("result", "v1"), "the version result")
			once("a", ba, R, L, byID("result", "v1"), "the version result")

			// A subscription request.
			alice.Send(`<presence to='bob@b.localhost' type='subscribe'/>`)
			bob.Expect(xmpptest.IsPresence("subscribe", "alice@a.localhost"))
			sub := func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "subscribe" }
			once("a", ba, L, R, sub, "the subscription request")
			once("b", bb, R, L, sub, "the subscription request")

			// Denied on the way out: a's boundary bounces it and no link
			// carries it.
			alice.Send(`<message to='bob@b.localhost' type='chat' id='d1'><body>forbidden-out</body></message>`)
			if m := alice.Expect(func(s *stanza.Stanza) bool { return s.ID == "d1" && s.Type == "error" }); m.ErrorCondition() != stanza.PolicyViolation || m.Body() != "forbidden-out" {
				t.Fatalf("bounce %s, want policy-violation with the original body", m)
			}
			once("a", ba, L, R, byID("chat", "d1"), "d1")
			// Denied on the way in: b's boundary refuses it; b's bounce
			// goes back over federation and is an inbound crossing at a
			// (a stanza from outside), never one at b.
			alice.Send(`<message to='bob@b.localhost' type='chat' id='d2'><body>forbidden-in</body></message>`)
			if m := alice.Expect(func(s *stanza.Stanza) bool { return s.ID == "d2" && s.Type == "error" }); m.ErrorCondition() != stanza.PolicyViolation || m.Body() != "forbidden-in" {
				t.Fatalf("bounce %s, want policy-violation with the original body", m)
			}
			once("a", ba, L, R, byID("chat", "d2"), "d2")
			once("b", bb, R, L, byID("chat", "d2"), "d2")
			once("a", ba, R, L, byID("error", "d2"), "b's bounce of d2")
			bob.Ping()
			bob.ExpectNone(func(s *stanza.Stanza) bool { return strings.HasPrefix(s.Body(), "forbidden") }, 0)
			if n := bb.count(L, R, byID("error", "d2")) + bb.count(R, L, byID("chat", "d1")); n != 0 {
				t.Errorf("b's boundary saw b's own bounce or the stanza a denied (%d)", n)
			}

			// Queued while b restarts: the stanza crossed a's boundary
			// when it was sent, not again when the new link flushes it.
			addr, _ := b.S2SAddrs()
			dataDir := b.Config.DataDir
			stopB()
			alice.Send(`<message to='bob@b.localhost' type='chat' id='q1'><body>while you were away</body></message>`)
			bb2 := &countingBoundary{}
			b2, _ := runWithBoundary(t, fedB, bb2, append(optsB, func(c *config.Config) {
				c.DataDir = dataDir
				c.S2S.Listen = addr
			})...)
			s2stest.Route(t, b2, a, false)
			bob = fedOnline(t, b2, "bob")
			bob.Expect(xmpptest.IsMessage("while you were away"))
			once("a", ba, L, R, byID("chat", "q1"), "q1")
			once("b", bb2, R, L, byID("chat", "q1"), "q1")
			alice.Ping()
			alice.ExpectNone(func(s *stanza.Stanza) bool { return s.ID == "q1" }, 0)
		})
	}
}
