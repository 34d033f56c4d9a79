package interop

import (
	"strings"
	"testing"
	"time"

	"gatehouse/s2s"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// newPeer builds (does not start) a peer for a scenario.
type newPeer func(t *testing.T, e *env, o peerOptions) peer

// setup starts Gatehouse and the peer with user alice on Gatehouse and
// pat on the peer. Gatehouse reaches the peer by a static route, or with
// gho.dns through the DNS server.
func setup(t *testing.T, mk newPeer, gho ghOptions, po peerOptions) *env {
	t.Helper()
	e := newEnv(t, gho)
	e.peer = mk(t, e, po)
	e.peer.start(t)
	e.peer.addUser(t, "pat")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Gatehouse links: %+v", e.gh.S2S().Links())
			t.Logf("%s log:\n%s", e.peer.domain(), tail(e.peer.logFile()))
		}
		e.peer.stop(t)
	})
	if gho.dns {
		e.useDNS(t)
	} else {
		e.connect(t)
	}
	return e
}

func runScenarios(t *testing.T, mk newPeer) {
	for _, auth := range []struct {
		name   string
		trust  bool
		method string
	}{
		{"certificates", true, s2s.MethodSASLExternal},
		{"dialback", false, s2s.MethodDialback},
	} {
		t.Run(auth.name, func(t *testing.T) {
			// With dialback, Gatehouse finds the peer through DNS SRV
			// (direct TLS first where the peer publishes it, as Prosody
			// does here), for its link and for the dialback callback.
			e := setup(t, mk, ghOptions{trustCA: auth.trust, dns: !auth.trust}, peerOptions{trustCA: auth.trust})
			conversation(t, e)
			t.Logf("links: %+v", e.gh.S2S().Links())
			if m := waitLink(t, e, "out"); m != auth.method {
				t.Errorf("outbound link authenticated with %s, want %s", m, auth.method)
			}
			// The peer's stanzas to us came either over a stream of its
			// own, authenticated the same way, or over ours when it took
			// up our XEP-0288 offer (only made over a verified
			// certificate).
			// Over DNS, Gatehouse took the direct TLS record where the
			// peer published one (XEP-0368: first at equal priority).
			if peer := linkOf(e, "out").Peer; !auth.trust && strings.HasPrefix(peer, "tls://") != e.peer.directTLS() {
				t.Errorf("outbound link to %s, want direct TLS %v", peer, e.peer.directTLS())
			}
			in, bidi := linkMethod(e, "in"), outBidi(e)
			switch {
			case in == "" && !bidi:
				t.Errorf("the peer reached us over neither an inbound link nor our bidi stream: %+v", e.gh.S2S().Links())
			case bidi && !auth.trust:
				t.Errorf("bidi negotiated on our stream without a verified certificate")
			case in != "" && in != auth.method:
				t.Errorf("inbound link authenticated with %s, want %s", in, auth.method)
			}
			if direct, sure := e.peer.directTLSIn(); in != "" && sure && strings.HasPrefix(linkOf(e, "in").Peer, "tls://") != direct {
				t.Errorf("inbound link from %s, want direct TLS %v", linkOf(e, "in").Peer, direct)
			}
		})
	}
	t.Run("denied domain", func(t *testing.T) {
		e := setup(t, mk, ghOptions{deny: []string{"*.interop"}}, peerOptions{})
		alice := e.ghLogin(t)
		pat := e.peer.login(t, "pat")
		alice.Send(`<message to='pat@` + e.peer.domain() + `' id='d1'><body>to a denied domain</body></message>`)
		if m := alice.Expect(isError("to a denied domain")); m.ErrorCondition() != stanza.NotAllowed {
			t.Fatalf("bounce %s, want not-allowed", m)
		}
		pat.Send(`<message to='alice@` + ghDomain + `' id='d2'><body>from a denied domain</body></message>`)
		// Peers bounce without the body (Prosody keeps only the id).
		pat.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Type == "error" && s.ID == "d2" })
		alice.Ping()
		alice.ExpectNone(isMessage("from a denied domain"), 0)
	})
	t.Run("dead peer bounced", func(t *testing.T) {
		e := setup(t, mk, ghOptions{queueTimeout: 3 * time.Second}, peerOptions{})
		alice := e.ghLogin(t)
		e.peer.stop(t)
		start := time.Now()
		alice.Send(`<message to='pat@` + e.peer.domain() + `' id='b1'><body>hello?</body></message>`)
		m := alice.Expect(isError("hello?"))
		if m.ErrorCondition() != stanza.RemoteServerNotFound {
			t.Fatalf("bounce %s, want remote-server-not-found", m)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("bounced after %v (queue_timeout 3s)", d)
		}
		e.peer.start(t) // for the cleanup's stop
	})
	t.Run("peer restarted with queued stanzas", func(t *testing.T) {
		e := setup(t, mk, ghOptions{queueTimeout: 90 * time.Second}, peerOptions{})
		alice := e.ghLogin(t)
		pat := e.peer.login(t, "pat")
		alice.Send(`<message to='pat@` + e.peer.domain() + `' type='chat' id='q0'><body>before the restart</body></message>`)
		pat.Expect(isMessage("before the restart"))
		pat.Close()
		e.peer.stop(t)
		alice.Send(`<message to='pat@` + e.peer.domain() + `' type='chat' id='q1'><body>queued one</body></message>`)
		alice.Send(`<message to='pat@` + e.peer.domain() + `' type='chat' id='q2'><body>queued two</body></message>`)
		e.peer.start(t)
		// The messages arrive while pat is offline or online: either
		// way, offline storage or live, pat gets them in order.
		pat = e.peer.login(t, "pat")
		pat.Expect(isMessage("queued one"))
		pat.Expect(isMessage("queued two"))
		alice.Ping()
		alice.ExpectNone(func(s *stanza.Stanza) bool { return s.Type == "error" }, 0)
	})
}

// conversation is the common exchange: messages both ways, a
// subscription handshake and presence, IQ round trips.
func conversation(t *testing.T, e *env) {
	t.Helper()
	d := e.peer.domain()
	alice := e.ghLogin(t)
	pat := e.peer.login(t, "pat")

	alice.Send(`<message to='pat@` + d + `' type='chat' id='m1'><body>hello from Gatehouse</body></message>`)
	m := pat.Expect(isMessage("hello from Gatehouse"))
	if m.From.Bare().String() != "alice@"+ghDomain {
		t.Fatalf("message from %s", m.From)
	}
	pat.Send(`<message to='alice@` + ghDomain + `' type='chat' id='m2'><body>hello from ` + d + `</body></message>`)
	alice.Expect(isMessage("hello from " + d))

	// Subscription handshake (RFC 6121 §3.1) across the border.
	alice.Send(`<presence to='pat@` + d + `' type='subscribe'/>`)
	pat.Expect(xmpptest.IsPresence("subscribe", "alice@"+ghDomain))
	pat.Send(`<presence to='alice@` + ghDomain + `' type='subscribed'/>`)
	alice.Expect(xmpptest.IsPresence("subscribed", "pat@"+d))
	alice.Expect(xmpptest.IsPresence("", "pat@"+d))
	pat.Send(`<presence><status>at the partner</status></presence>`)
	alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Bare().String() == "pat@"+d && s.Child("", "status") != nil
	})

	// IQ round trips: to the remote server, and the remote server to us.
	alice.Send(`<iq type='get' id='v1' to='` + d + `'><query xmlns='jabber:iq:version'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("v1")); r.Type != "result" {
		t.Fatalf("version of %s: %s", d, r)
	}
	alice.Send(`<iq type='get' id='i1' to='` + d + `'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("i1")); r.Type != "result" {
		t.Fatalf("disco#info of %s: %s", d, r)
	}
	pat.Send(`<iq type='get' id='v2' to='` + ghDomain + `'><query xmlns='jabber:iq:version'/></iq>`)
	r := pat.Expect(xmpptest.IsIQ("v2"))
	if r.Type != "result" || r.Child("jabber:iq:version", "query").ChildText("jabber:iq:version", "name") != "Gatehouse" {
		t.Fatalf("version of Gatehouse asked from %s: %s", d, r)
	}
}
