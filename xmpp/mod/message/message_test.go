package message_test

import (
	"fmt"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/message"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func carbonOf(kind, body string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		w := s.Child(message.NSCarbons, kind)
		if s.Kind != stanza.KindMessage || w == nil {
			return false
		}
		f := w.Child(message.NSForward, "forwarded")
		if f == nil {
			return false
		}
		m := f.Child("", "message") // stream content namespace
		return m != nil && m.ChildText("", "body") == body
	}
}

func TestCarbons(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice password")
	ts.AddUser(t, "bob", "bob password")
	desk := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
	phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone"})
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	for _, c := range []*xmpptest.Client{desk, phone, bob} {
		c.Send(`<presence/>`)
	}
	phone.Send(`<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if r := phone.Expect(xmpptest.IsIQ("c")); r.Type != "result" {
		t.Fatalf("enable: %s", r)
	}

	desk.Sendf(`<message to='%s' type='chat'><body>sent from desk</body></message>`, bob.JID)
	bob.Expect(xmpptest.IsMessage("sent from desk"))
	c := phone.Expect(carbonOf("sent", "sent from desk"))
	if c.From.String() != "alice@localhost" {
		t.Fatalf("carbon from %s, want the bare JID", c.From)
	}

	bob.Send(`<message to='alice@localhost/desk' type='chat'><body>to the desk</body></message>`)
	desk.Expect(xmpptest.IsMessage("to the desk"))
	phone.Expect(carbonOf("received", "to the desk"))

	// <private/> opts out of carbons (XEP-0280 §7).
	desk.Sendf(`<message to='%s' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>`, bob.JID)
	bob.Expect(xmpptest.IsMessage("secret"))
	desk.Ping()
	phone.Ping()
	phone.ExpectNone(carbonOf("sent", "secret"), 0)

	phone.Send(`<iq type='set' id='d'><disable xmlns='urn:xmpp:carbons:2'/></iq>`)
	phone.Expect(xmpptest.IsIQ("d"))
	desk.Sendf(`<message to='%s' type='chat'><body>after disable</body></message>`, bob.JID)
	bob.Expect(xmpptest.IsMessage("after disable"))
	phone.Ping()
	phone.ExpectNone(carbonOf("sent", "after disable"), 0)

	phone.Send(`<iq type='get' id='g'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if r := phone.Expect(xmpptest.IsIQ("g")); r.Type != "error" || r.ErrorCondition() != stanza.BadRequest {
		t.Fatalf("carbons get: %s", r)
	}
}

func TestOfflineRules(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.Offline.MaxPerUser = 2 })
	ts.AddUser(t, "alice", "alice password")
	ts.AddUser(t, "bob", "bob password")
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
	msgs := []struct{ xml, id string }{
		{`<message to='bob@localhost' type='headline' id='h'><body>headline</body></message>`, "h"},
		{`<message to='bob@localhost' type='chat' id='n'><body>no-store</body><no-store xmlns='urn:xmpp:hints'/></message>`, "n"},
		{`<message to='bob@localhost' type='chat' id='1'><body>one</body></message>`, "1"},
		{`<message to='bob@localhost' type='chat' id='2'><body>two</body></message>`, "2"},
		{`<message to='bob@localhost' type='chat' id='3'><body>three</body></message>`, "3"},
		{`<message to='bob@localhost' type='chat' id='e'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, "e"},
	}
	for _, m := range msgs {
		alice.Send(m.xml)
	}
	// The cap of two is reached: the third stored message bounces.
	if e := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.ID == "3" }); e.Type != "error" || e.ErrorCondition() != stanza.ServiceUnavailable {
		t.Fatalf("over the cap: %s", e)
	}
	alice.Send(`<message to='nobody@localhost' type='chat' id='x'><body>anyone?</body></message>`)
	if e := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.ID == "x" }); e.Type != "error" || e.ErrorCondition() != stanza.ServiceUnavailable {
		t.Fatalf("no such user: %s", e)
	}

	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	bob.Send(`<presence/>`)
	bob.Expect(xmpptest.IsMessage("one"))
	bob.Expect(xmpptest.IsMessage("two"))
	bob.Ping()
	for _, body := range []string{"headline", "no-store", "three"} {
		bob.ExpectNone(xmpptest.IsMessage(body), 0)
	}
	bob.ExpectNone(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.ID == "e" }, 0)

	// Storage is empty now: a second session gets nothing again.
	bob2 := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{Resource: "second"})
	bob2.Send(`<presence/>`)
	bob2.Ping()
	bob2.ExpectNone(xmpptest.IsMessage("one"), 0)
}

// A message to a bare JID that races the recipient's initial presence is
// delivered, either live, or from offline storage in that session: never
// left in storage while the recipient is online. Before the re-flush in
// storeOffline, a store committed just after the presence's flush stayed
// there until the next login.
func TestMessageRacingInitialPresence(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice password")
	ts.AddUser(t, "bob", "bob password")
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
	for i := range 25 {
		bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{Resource: "r"})
		body := fmt.Sprintf("race %d", i)
		// Both at once: alice's message and bob's initial presence.
		alice.Sendf(`<message to='bob@localhost' type='chat'><body>%s</body></message>`, body)
		bob.Send(`<presence/>`)
		bob.Expect(xmpptest.IsMessage(body))
		bob.Close()
	}
}
