package presence_test

import (
	"testing"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const nsRoster = "jabber:iq:roster"

func isPush(jidStr, sub, ask string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		q := s.Child(nsRoster, "query")
		if s.Kind != stanza.KindIQ || s.Type != "set" || q == nil {
			return false
		}
		it := q.Child(nsRoster, "item")
		return it != nil && it.AttrValue("jid") == jidStr && it.AttrValue("subscription") == sub && it.AttrValue("ask") == ask
	}
}

// login connects, fetches the roster and sends initial presence, as
// clients do.
func login(t *testing.T, ts *xmpptest.TestServer, user, pw, res string) *xmpptest.Client {
	t.Helper()
	c := ts.Dial(t, user, pw, xmpptest.ClientOptions{Resource: res})
	c.Send(`<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>`)
	c.Expect(xmpptest.IsIQ("roster"))
	c.Send(`<presence><priority>1</priority></presence>`)
	c.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(c.JID) && s.Type == ""
	})
	return c
}

func users(t *testing.T) *xmpptest.TestServer {
	ts := xmpptest.RunServer(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, u+" password")
	}
	return ts
}

// TestSubscriptionHandshake walks RFC 6121 §3.1 both ways and checks
// presence flows afterwards and stops at disconnect.
func TestSubscriptionHandshake(t *testing.T) {
	ts := users(t)
	alice := login(t, ts, "alice", "alice password", "a")
	bob := login(t, ts, "bob", "bob password", "b")

	alice.Send(`<presence to='bob@localhost' type='subscribe'/>`)
	alice.Expect(isPush("bob@localhost", "none", "subscribe"))
	req := bob.Expect(xmpptest.IsPresence("subscribe", "alice@localhost"))
	if req.From.String() != "alice@localhost" {
		t.Fatalf("subscribe from %s, want the bare JID", req.From)
	}
	bob.Send(`<presence to='alice@localhost' type='subscribed'/>`)
	bob.Expect(isPush("alice@localhost", "from", ""))
	alice.Expect(xmpptest.IsPresence("subscribed", "bob@localhost"))
	alice.Expect(isPush("bob@localhost", "to", ""))
	// Approving sends bob's current presence to alice.
	alice.Expect(xmpptest.IsPresence("", "bob@localhost"))

	// And back: bob subscribes to alice, alice approves.
	bob.Send(`<presence to='alice@localhost' type='subscribe'/>`)
	bob.Expect(isPush("alice@localhost", "from", "subscribe"))
	alice.Expect(xmpptest.IsPresence("subscribe", "bob@localhost"))
	alice.Send(`<presence to='bob@localhost' type='subscribed'/>`)
	alice.Expect(isPush("bob@localhost", "both", ""))
	bob.Expect(isPush("alice@localhost", "both", ""))
	bob.Expect(xmpptest.IsPresence("", "alice@localhost"))

	// Broadcast of a presence change.
	alice.Send(`<presence><show>away</show><status>lunch</status></presence>`)
	p := bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(alice.JID) && s.Child("", "show") != nil
	})
	if p.Child("", "show").Text() != "away" {
		t.Fatalf("presence %s", p)
	}
	// Disconnect without unavailable: the server sends it.
	alice.Close()
	bob.Expect(xmpptest.IsPresence("unavailable", "alice@localhost"))

	// Login again: probes bring bob's presence, bob sees alice come back.
	alice = login(t, ts, "alice", "alice password", "a2")
	alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(bob.JID) && s.Type == ""
	})
	bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(alice.JID) && s.Type == ""
	})

	// Unsubscribe: bob stops seeing alice.
	bob.Send(`<presence to='alice@localhost' type='unsubscribe'/>`)
	bob.Expect(isPush("alice@localhost", "from", ""))
	alice.Expect(isPush("bob@localhost", "to", ""))
	alice.Expect(xmpptest.IsPresence("unsubscribe", "bob@localhost"))
	bob.Expect(xmpptest.IsPresence("unavailable", "alice@localhost"))
	alice.Send(`<presence><status>back</status></presence>`)
	alice.Ping()
	bob.Ping()
	bob.ExpectNone(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(alice.JID) && s.Child("", "status") != nil
	}, 0)
}

// TestPendingRequestWhileOffline: a request to an offline user waits and
// arrives with the next initial presence (RFC 6121 §3.1.3).
func TestPendingRequestWhileOffline(t *testing.T) {
	ts := users(t)
	alice := login(t, ts, "alice", "alice password", "a")
	alice.Send(`<presence to='carol@localhost' type='subscribe'/>`)
	alice.Expect(isPush("carol@localhost", "none", "subscribe"))
	carol := ts.Dial(t, "carol", "carol password", xmpptest.ClientOptions{})
	carol.Send(`<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`)
	r := carol.Expect(xmpptest.IsIQ("r"))
	// The bare request is not a roster item yet.
	if q := r.Child(nsRoster, "query"); q == nil || len(q.Elements()) != 0 {
		t.Fatalf("roster %s", r)
	}
	carol.Send(`<presence/>`)
	carol.Expect(xmpptest.IsPresence("subscribe", "alice@localhost"))
	carol.Send(`<presence to='alice@localhost' type='subscribed'/>`)
	alice.Expect(isPush("carol@localhost", "to", ""))
	alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(carol.JID) && s.Type == ""
	})
}

// TestPreApproval: RFC 6121 §3.4.
func TestPreApproval(t *testing.T) {
	ts := users(t)
	alice := login(t, ts, "alice", "alice password", "a")
	bob := login(t, ts, "bob", "bob password", "b")
	bob.Send(`<presence to='alice@localhost' type='subscribed'/>`)
	p := bob.Expect(isPush("alice@localhost", "none", ""))
	if p.Child(nsRoster, "query").Child(nsRoster, "item").AttrValue("approved") != "true" {
		t.Fatalf("pre-approval push %s", p)
	}
	alice.Ping()
	alice.ExpectNone(xmpptest.IsPresence("subscribed", "bob@localhost"), 0)

	alice.Send(`<presence to='bob@localhost' type='subscribe'/>`)
	alice.Expect(xmpptest.IsPresence("subscribed", "bob@localhost"))
	alice.Expect(isPush("bob@localhost", "to", ""))
	alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(bob.JID) && s.Type == ""
	})
	bob.Expect(isPush("alice@localhost", "from", ""))
	bob.Ping()
	bob.ExpectNone(xmpptest.IsPresence("subscribe", "alice@localhost"), 0)
}

// TestDirectedPresence: a directed presence recipient outside the roster
// learns of the disconnect (RFC 6121 §4.6.3).
func TestDirectedPresence(t *testing.T) {
	ts := users(t)
	alice := login(t, ts, "alice", "alice password", "a")
	carol := login(t, ts, "carol", "carol password", "c")
	alice.Sendf(`<presence to='%s'><status>hello carol</status></presence>`, carol.JID)
	p := carol.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(alice.JID) && s.Type == ""
	})
	if p.Child("", "status").Text() != "hello carol" {
		t.Fatal(p)
	}
	alice.Close()
	carol.Expect(xmpptest.IsPresence("unavailable", "alice@localhost"))
}

// TestMessagePriority: bare-JID messages go to every resource with a
// non-negative priority (RFC 6121 §8.5.2.1.1 option b, as Prosody does),
// never to a negative one.
func TestMessagePriority(t *testing.T) {
	ts := users(t)
	bob := login(t, ts, "bob", "bob password", "b")
	high := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "high"})
	high.Send(`<presence><priority>5</priority></presence>`)
	low := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "low"})
	low.Send(`<presence><priority>1</priority></presence>`)
	neg := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "neg"})
	neg.Send(`<presence><priority>-1</priority></presence>`)
	for _, c := range []*xmpptest.Client{high, low, neg} {
		c.Ping()
	}
	bob.Send(`<message to='alice@localhost' type='chat'><body>to the best</body></message>`)
	high.Expect(xmpptest.IsMessage("to the best"))
	low.Expect(xmpptest.IsMessage("to the best"))
	bob.Ping()
	neg.Ping()
	neg.ExpectNone(xmpptest.IsMessage("to the best"), 0)
}

func TestPresenceErrors(t *testing.T) {
	ts := users(t)
	alice := login(t, ts, "alice", "alice password", "a")
	alice.Send(`<presence type='subscribe' id='x'/>`)
	if p := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.ID == "x" }); p.Type != "error" || p.ErrorCondition() != stanza.BadRequest {
		t.Fatalf("subscribe without to: %s", p)
	}
	alice.Send(`<presence type='probe' to='bob@localhost' id='y'/>`)
	if p := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.ID == "y" }); p.Type != "error" {
		t.Fatalf("client probe: %s", p)
	}
	// Subscribing to an account that does not exist: unsubscribed comes back.
	alice.Send(`<presence to='ghost@localhost' type='subscribe'/>`)
	alice.Expect(xmpptest.IsPresence("unsubscribed", "ghost@localhost"))
}
