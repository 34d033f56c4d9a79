package s2s_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/s2s"
	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const (
	domA = "a.localhost"
	domB = "b.localhost"
	pw   = "federation secret"
)

// pair starts two federated servers that route to each other, with users
// alice@a and bob@b.
func pair(t *testing.T, optsA, optsB []xmpptest.Option) (a, b *xmpptest.TestServer) {
	t.Helper()
	a = xmpptest.RunServer(t, append([]xmpptest.Option{s2stest.Federated(domA)}, optsA...)...)
	b = xmpptest.RunServer(t, append([]xmpptest.Option{s2stest.Federated(domB)}, optsB...)...)
	s2stest.Route(t, a, b, false)
	s2stest.Route(t, b, a, false)
	a.AddUser(t, "alice", pw)
	b.AddUser(t, "bob", pw)
	return a, b
}

// online logs in, fetches the roster and sends initial presence.
func online(t *testing.T, ts *xmpptest.TestServer, user string) *xmpptest.Client {
	t.Helper()
	c := ts.Dial(t, user, pw, xmpptest.ClientOptions{Resource: "r"})
	c.Send(`<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>`)
	c.Expect(xmpptest.IsIQ("roster"))
	c.Send(`<presence/>`)
	c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.Equal(c.JID) })
	return c
}

func isError(cond stanza.Condition, body string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Type == "error" && s.ErrorCondition() == cond && s.Body() == body
	}
}

// link returns the status of the link local→remote in direction dir.
func linkOf(t *testing.T, ts *xmpptest.TestServer, dir, remote string) s2s.LinkInfo {
	t.Helper()
	for _, l := range ts.S2S().Links() {
		if l.Direction == dir && l.Remote == remote {
			return l
		}
	}
	t.Fatalf("%s: no %s link with %s in %+v", ts.Domain, dir, remote, ts.S2S().Links())
	return s2s.LinkInfo{}
}

func TestMessagesBothWaysWithDialback(t *testing.T) {
	t.Parallel()
	a, b := pair(t, nil, nil)
	alice, bob := online(t, a, "alice"), online(t, b, "bob")

	alice.Send(`<message to='bob@b.localhost' type='chat' id='m1'><body>hello bob</body></message>`)
	m := bob.Expect(xmpptest.IsMessage("hello bob"))
	if m.From.String() != "alice@a.localhost/r" {
		t.Fatalf("from %s", m.From)
	}
	bob.Send(`<message to='alice@a.localhost/r' type='chat' id='m2'><body>hi alice</body></message>`)
	alice.Expect(xmpptest.IsMessage("hi alice"))

	// Self-signed certificates that neither side trusts: dialback, over TLS.
	out := linkOf(t, a, "out", domB)
	if out.Method != s2s.MethodDialback || !strings.HasPrefix(out.TLSVersion, "TLS") || out.Bidi {
		t.Fatalf("a→b link %+v, want dialback over TLS without bidi", out)
	}
	in := linkOf(t, b, "in", domA)
	if in.Method != s2s.MethodDialback {
		t.Fatalf("b's inbound link %+v", in)
	}
	// The snapshot `gatehouse federation status` reads follows the links.
	waitFor(t, "the status snapshot", func() bool {
		st, err := s2s.ReadStatus(filepath.Join(a.Config.DataDir, s2s.StatusFile))
		return err == nil && len(st.Links) > 0 && st.Links[0].Remote == domB && st.Links[0].Method == s2s.MethodDialback
	})
}

func TestSASLExternalAndBidi(t *testing.T) {
	t.Parallel()
	ca := s2stest.NewCA(t)
	a, b := pair(t,
		[]xmpptest.Option{s2stest.WithCert(ca, ca.Issue(t, domA)), func(c *config.Config) { c.S2S.RequireVerifiedCerts = true }},
		[]xmpptest.Option{s2stest.WithCert(ca, ca.Issue(t, domB)), func(c *config.Config) { c.S2S.RequireVerifiedCerts = true }})
	alice, bob := online(t, a, "alice"), online(t, b, "bob")

	alice.Send(`<message to='bob@b.localhost' id='m1'><body>over a certificate</body></message>`)
	bob.Expect(xmpptest.IsMessage("over a certificate"))
	out := linkOf(t, a, "out", domB)
	if out.Method != s2s.MethodSASLExternal || !out.Bidi {
		t.Fatalf("a→b link %+v, want SASL EXTERNAL and bidi", out)
	}
	// b answers over the same (bidirectional) stream: no b→a connection.
	bob.Send(`<message to='alice@a.localhost' id='m2'><body>back the same way</body></message>`)
	alice.Expect(xmpptest.IsMessage("back the same way"))
	if b.S2S().Connected(domB, domA) {
		t.Fatalf("b opened its own link to a: %+v", b.S2S().Links())
	}
	if in := linkOf(t, b, "in", domA); !in.Bidi || in.Method != s2s.MethodSASLExternal {
		t.Fatalf("b's inbound link %+v", in)
	}
}

func TestDirectTLS(t *testing.T) {
	t.Parallel()
	a, b := pair(t, nil, nil)
	s2stest.Route(t, a, b, true)
	alice, bob := online(t, a, "alice"), online(t, b, "bob")
	alice.Send(`<message to='bob@b.localhost' id='m1'><body>direct</body></message>`)
	bob.Expect(xmpptest.IsMessage("direct"))
	if out := linkOf(t, a, "out", domB); !strings.HasPrefix(out.Peer, "tls://") {
		t.Fatalf("link %+v, want direct TLS", out)
	}
}

func TestSubscriptionPresenceAndIQ(t *testing.T) {
	t.Parallel()
	a, b := pair(t, nil, nil)
	alice, bob := online(t, a, "alice"), online(t, b, "bob")

	alice.Send(`<presence to='bob@b.localhost' type='subscribe'/>`)
	bob.Expect(xmpptest.IsPresence("subscribe", "alice@a.localhost"))
	bob.Send(`<presence to='alice@a.localhost' type='subscribed'/>`)
	alice.Expect(xmpptest.IsPresence("subscribed", "bob@b.localhost"))
	// Approval brings bob's current presence to alice.
	alice.Expect(xmpptest.IsPresence("", "bob@b.localhost"))

	bob.Send(`<presence><status>in a meeting</status></presence>`)
	alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(bob.JID) && s.Child("", "status") != nil
	})

	// IQ round trips to the remote server and to a remote user.
	alice.Send(`<iq type='get' id='v1' to='b.localhost'><query xmlns='jabber:iq:version'/></iq>`)
	r := alice.Expect(xmpptest.IsIQ("v1"))
	if r.Type != "result" || r.Child("jabber:iq:version", "query").ChildText("jabber:iq:version", "name") != "Gatehouse" {
		t.Fatalf("version %s", r)
	}
	alice.Send(`<iq type='get' id='d1' to='b.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("d1")); r.Type != "result" {
		t.Fatalf("disco %s", r)
	}
	alice.Send(`<iq type='get' id='p1' to='nobody@b.localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("p1")); r.Type != "error" {
		t.Fatalf("ping to a missing user %s", r)
	}

	// Going offline reaches the remote contact.
	bob.Close()
	alice.Expect(xmpptest.IsPresence("unavailable", "bob@b.localhost"))
}

func TestBounceWhenPeerDown(t *testing.T) {
	t.Parallel()
	a := xmpptest.RunServer(t, s2stest.Federated(domA), func(c *config.Config) {
		c.S2S.QueueTimeout = config.Duration(2 * time.Second)
	})
	a.AddUser(t, "alice", pw)
	b := xmpptest.RunServer(t, s2stest.Federated(domB))
	s2stest.Route(t, a, b, false)
	b.Stop() // its port is now closed: nothing listens there
	alice := online(t, a, "alice")

	start := time.Now()
	alice.Send(`<message to='bob@b.localhost' id='m1'><body>anyone there?</body></message>`)
	// While it waits, status shows the link retrying, its queue and why.
	waitFor(t, "a retrying link with the queued stanza", func() bool {
		for _, l := range a.S2S().Links() {
			if l.Remote == domB && l.State == s2s.StateRetrying && l.Queue == 1 && strings.Contains(l.LastError, "connection refused") {
				return true
			}
		}
		return false
	})
	m := alice.Expect(isError(stanza.RemoteServerNotFound, "anyone there?"))
	if m.ID != "m1" || m.From.String() != "bob@b.localhost" {
		t.Fatalf("bounce %s", m)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("bounced after %v, want about queue_timeout (2s)", d)
	}
	if l := a.S2S().Links(); len(l) != 0 {
		t.Fatalf("links after the bounce: %+v", l)
	}
}

// A peer that accepts the connection and then says nothing: the attempt
// runs out of s2s.connect_timeout and the stanza bounces with
// remote-server-timeout (reached, but no stream in time).
func TestBounceWhenPeerHangs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		for c := range accepted {
			_ = c.Close()
		}
	})
	a := xmpptest.RunServer(t, s2stest.Federated(domA), func(c *config.Config) {
		c.S2S.ConnectTimeout = config.Duration(time.Second)
		c.S2S.QueueTimeout = config.Duration(2 * time.Second)
		c.S2S.Routes = map[string]string{domB: ln.Addr().String()}
	})
	a.AddUser(t, "alice", pw)
	alice := online(t, a, "alice")
	alice.Send(`<message to='bob@b.localhost' id='h1'><body>hello?</body></message>`)
	m := alice.Expect(isError(stanza.RemoteServerTimeout, "hello?"))
	if m.ID != "h1" || m.From.String() != "bob@b.localhost" {
		t.Fatalf("bounce %s", m)
	}
}

// An idle link is closed after s2s.idle_timeout and opened again when a
// stanza needs it.
func TestIdleLinkClosesAndReopens(t *testing.T) {
	t.Parallel()
	idle := func(c *config.Config) { c.S2S.IdleTimeout = config.Duration(time.Second) }
	a, b := pair(t, []xmpptest.Option{idle}, []xmpptest.Option{idle})
	alice, bob := online(t, a, "alice"), online(t, b, "bob")
	alice.Send(`<message to='bob@b.localhost' id='i1'><body>first</body></message>`)
	bob.Expect(xmpptest.IsMessage("first"))
	first := linkOf(t, a, "out", domB).Conn
	waitFor(t, "the idle link to close", func() bool { return !a.S2S().Connected(domA, domB) })
	alice.Send(`<message to='bob@b.localhost' id='i2'><body>after a pause</body></message>`)
	bob.Expect(xmpptest.IsMessage("after a pause"))
	if again := linkOf(t, a, "out", domB); again.Conn == first {
		t.Fatalf("the same connection %d carried on", first)
	}
}

func TestQueuedStanzasSurvivePeerRestart(t *testing.T) {
	t.Parallel()
	a := xmpptest.RunServer(t, s2stest.Federated(domA), func(c *config.Config) {
		c.S2S.QueueTimeout = config.Duration(20 * time.Second)
	})
	a.AddUser(t, "alice", pw)
	b := xmpptest.RunServer(t, s2stest.Federated(domB))
	s2stest.Route(t, a, b, false)
	s2stest.Route(t, b, a, false)
	b.AddUser(t, "bob", pw)
	alice := online(t, a, "alice")
	bob := online(t, b, "bob")
	alice.Send(`<message to='bob@b.localhost' id='m0'><body>before</body></message>`)
	bob.Expect(xmpptest.IsMessage("before"))

	// b restarts on the same address with the same data.
	addr, _ := b.S2SAddrs()
	dataDir := b.Config.DataDir
	b.Stop()
	alice.Send(`<message to='bob@b.localhost' id='m1'><body>while you were away</body></message>`)
	alice.Send(`<message to='bob@b.localhost' id='m2'><body>second</body></message>`)
	b2 := xmpptest.RunServer(t, s2stest.Federated(domB), func(c *config.Config) {
		c.DataDir = dataDir
		c.S2S.Listen = addr
	})
	s2stest.Route(t, b2, a, false)
	bob = online(t, b2, "bob")
	bob.Expect(xmpptest.IsMessage("while you were away"))
	bob.Expect(xmpptest.IsMessage("second"))
}

func TestFederationPolicy(t *testing.T) {
	t.Parallel()
	t.Run("allowlist without the domain", func(t *testing.T) {
		t.Parallel()
		a, _ := pair(t, []xmpptest.Option{func(c *config.Config) {
			c.S2S.Mode = config.FederationAllowlist
			c.S2S.Allow = []string{"*.elsewhere.example"}
		}}, nil)
		alice := online(t, a, "alice")
		alice.Send(`<message to='bob@b.localhost' id='m1'><body>not allowed</body></message>`)
		alice.Expect(isError(stanza.NotAllowed, "not allowed"))
	})
	t.Run("peer denies us", func(t *testing.T) {
		t.Parallel()
		a, _ := pair(t, nil, []xmpptest.Option{func(c *config.Config) {
			c.S2S.Mode = config.FederationDenylist
			c.S2S.Deny = []string{domA}
		}})
		alice := online(t, a, "alice")
		start := time.Now()
		alice.Send(`<message to='bob@b.localhost' id='m1'><body>refused</body></message>`)
		// b refuses at the stream header: a bounces at once, not after
		// the queue timeout.
		alice.Expect(isError(stanza.RemoteServerTimeout, "refused"))
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("bounced after %v", d)
		}
	})
	t.Run("stored deny closes a live link", func(t *testing.T) {
		t.Parallel()
		a, b := pair(t, nil, []xmpptest.Option{func(c *config.Config) { c.S2S.Mode = config.FederationDenylist }})
		alice, bob := online(t, a, "alice"), online(t, b, "bob")
		alice.Send(`<message to='bob@b.localhost' id='m1'><body>first</body></message>`)
		bob.Expect(xmpptest.IsMessage("first"))

		// What `gatehouse federation deny a.localhost` does while b runs.
		st, err := s2s.OpenStore(context.Background(), filepath.Join(b.Config.DataDir, s2s.StoreFile))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Set(context.Background(), domA, s2s.ListDeny, "test"); err != nil {
			t.Fatal(err)
		}
		if err := b.S2S().ReloadPolicy(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a's link to b to close", func() bool { return !a.S2S().Connected(domA, domB) })
		alice.Send(`<message to='bob@b.localhost' id='m2'><body>after the deny</body></message>`)
		alice.Expect(isError(stanza.RemoteServerTimeout, "after the deny"))
		bob.Send(`<message to='alice@a.localhost' id='m3'><body>denied outbound too</body></message>`)
		bob.Expect(isError(stanza.NotAllowed, "denied outbound too"))
	})
	t.Run("stored allow opens an allowlist", func(t *testing.T) {
		t.Parallel()
		a, b := pair(t, []xmpptest.Option{func(c *config.Config) { c.S2S.Mode = config.FederationAllowlist }}, nil)
		alice, bob := online(t, a, "alice"), online(t, b, "bob")
		alice.Send(`<message to='bob@b.localhost' id='m1'><body>closed</body></message>`)
		alice.Expect(isError(stanza.NotAllowed, "closed"))

		st, err := s2s.OpenStore(context.Background(), filepath.Join(a.Config.DataDir, s2s.StoreFile))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Set(context.Background(), domB, s2s.ListAllow, ""); err != nil {
			t.Fatal(err)
		}
		if err := a.S2S().ReloadPolicy(context.Background()); err != nil {
			t.Fatal(err)
		}
		alice.Send(`<message to='bob@b.localhost' id='m2'><body>opened</body></message>`)
		bob.Expect(xmpptest.IsMessage("opened"))

		// Denying it again closes the link and bounces new stanzas.
		if err := st.Set(context.Background(), domB, s2s.ListDeny, ""); err != nil {
			t.Fatal(err)
		}
		if err := a.S2S().ReloadPolicy(context.Background()); err != nil {
			t.Fatal(err)
		}
		alice.Send(`<message to='bob@b.localhost' id='m3'><body>closed again</body></message>`)
		alice.Expect(isError(stanza.NotAllowed, "closed again"))
	})
}

// waitFor polls cond (state without a notification) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(xmpptest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
