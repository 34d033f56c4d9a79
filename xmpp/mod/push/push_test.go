package push_test

import (
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/push"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const enable = `<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='pushapp@localhost/app' node='n1'>` +
	`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
	`<field var='secret'><value>device-secret</value></field></x></enable></iq>`

func isPublish(s *stanza.Stanza) bool {
	return s.Kind == stanza.KindIQ && s.Type == "set" && s.Child("http://jabber.org/protocol/pubsub", "pubsub") != nil
}

// summary returns the notification's summary fields.
func summary(t *testing.T, s *stanza.Stanza) (node string, fields map[string]string, options string) {
	t.Helper()
	ps := s.Child("http://jabber.org/protocol/pubsub", "pubsub")
	pub := ps.Child("", "publish")
	if pub == nil {
		pub = ps.Child("http://jabber.org/protocol/pubsub", "publish")
	}
	if pub == nil {
		t.Fatalf("no publish: %s", s)
	}
	fields = map[string]string{}
	n := pub.Elements()[0].Child(push.NS, "notification")
	if n == nil {
		t.Fatalf("no notification: %s", s)
	}
	for _, f := range n.Child("jabber:x:data", "x").Elements() {
		fields[f.AttrValue("var")] = f.Elements()[0].Text()
	}
	if po := ps.Child("", "publish-options"); po != nil {
		options = po.String()
	} else if po := ps.Child("http://jabber.org/protocol/pubsub", "publish-options"); po != nil {
		options = po.String()
	}
	return pub.AttrValue("node"), fields, options
}

// gone waits (bounded, with pings as barriers) until c's session has left
// the table after its close.
func gone(t *testing.T, ts *xmpptest.TestServer, c, other *xmpptest.Client) {
	t.Helper()
	for i := 0; ts.Sessions().Get(c.JID) != nil; i++ {
		if i == 1000 {
			t.Fatal("session did not end")
		}
		other.Ping()
	}
}

func waitDetached(t *testing.T, ts *xmpptest.TestServer, c *xmpptest.Client) {
	t.Helper()
	for {
		d, changed := ts.C2S().Detached(c.JID)
		if d {
			return
		}
		select {
		case <-changed:
		case <-time.After(xmpptest.Timeout):
			t.Fatal("session not detached")
		}
	}
}

// TestPush: an account enables an app server; messages that no connected
// client will see (no session, or one waiting for resumption) are
// notified with a count and the registration's publish-options, without
// the body by default; a message a live client gets is not; an app server
// error disables the registration; disable stops them.
func TestPush(t *testing.T) {
	ts := xmpptest.RunServer(t)
	for _, u := range []string{"alice", "bob", "pushapp"} {
		ts.AddUser(t, u, u+" password")
	}
	app := ts.Dial(t, "pushapp", "pushapp password", xmpptest.ClientOptions{Resource: "app"})
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
	alice.Send(`<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("d")); !strings.Contains(r.String(), push.NS) {
		t.Fatalf("account does not advertise push: %s", r)
	}
	alice.Send(enable)
	if r := alice.Expect(xmpptest.IsIQ("e1")); r.Type != "result" {
		t.Fatalf("enable: %s", r)
	}
	alice.Close()
	gone(t, ts, alice, bob)

	// No session: offline storage, and a notification.
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>secret plans</body></message>`)
	n := app.Expect(isPublish)
	node, fields, opts := summary(t, n)
	if n.From.String() != "alice@localhost" || node != "n1" || fields["FORM_TYPE"] != "urn:xmpp:push:summary" || fields["message-count"] != "1" {
		t.Fatalf("notification: %s", n)
	}
	if _, ok := fields["last-message-body"]; ok || strings.Contains(n.String(), "secret plans") {
		t.Fatalf("the body left in a notification by default: %s", n)
	}
	if !strings.Contains(opts, "device-secret") {
		t.Fatalf("publish-options not passed on: %s", n)
	}
	app.Sendf(`<iq type='result' id='%s' to='alice@localhost'/>`, n.ID)

	// A session waiting for resumption sees nothing either.
	phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true})
	phone.Send(`<presence/>`)
	phone.Ping()
	phone.Drop()
	waitDetached(t, ts, phone)
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>while away</body></message>`)
	n = app.Expect(isPublish)
	if _, fields, _ := summary(t, n); fields["message-count"] != "1" {
		t.Fatalf("count after the client came online again: %v", fields)
	}
	app.Sendf(`<iq type='result' id='%s' to='alice@localhost'/>`, n.ID)

	// A live client gets it: no notification.
	desk := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
	desk.Send(`<presence/>`)
	desk.Ping()
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>you are here</body></message>`)
	desk.Expect(xmpptest.IsMessage("you are here"))
	bob.Ping()
	app.Ping()
	app.ExpectNone(isPublish, 0)
	desk.Close()
	gone(t, ts, desk, bob)

	// The app server refuses: the registration goes.
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>one</body></message>`)
	n = app.Expect(isPublish)
	app.Sendf(`<iq type='error' id='%s' to='alice@localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, n.ID)
	app.Ping()
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>two</body></message>`)
	bob.Ping()
	app.Ping()
	app.ExpectNone(isPublish, 0)

	// Enable again, then disable: nothing more.
	again := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "again"})
	again.Send(enable)
	again.Expect(xmpptest.IsIQ("e1"))
	again.Send(`<iq type='set' id='x1'><disable xmlns='urn:xmpp:push:0' jid='pushapp@localhost/app' node='n1'/></iq>`)
	if r := again.Expect(xmpptest.IsIQ("x1")); r.Type != "result" {
		t.Fatalf("disable: %s", r)
	}
	again.Close()
	gone(t, ts, again, bob)
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>three</body></message>`)
	bob.Ping()
	app.Ping()
	app.ExpectNone(isPublish, 0)
}

// TestPushIncludeBody: with push.include_body the summary carries sender
// and body.
func TestPushIncludeBody(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.Push.IncludeBody = true })
	for _, u := range []string{"alice", "bob", "pushapp"} {
		ts.AddUser(t, u, u+" password")
	}
	app := ts.Dial(t, "pushapp", "pushapp password", xmpptest.ClientOptions{Resource: "app"})
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
	alice.Send(enable)
	alice.Expect(xmpptest.IsIQ("e1"))
	alice.Close()
	gone(t, ts, alice, bob)
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>hi there</body></message>`)
	_, fields, _ := summary(t, app.Expect(isPublish))
	if fields["last-message-body"] != "hi there" || !strings.HasPrefix(fields["last-message-sender"], "bob@localhost") {
		t.Fatalf("summary %v", fields)
	}
}

// TestPushOnlyForOwnAccount: enabling is the account's own business.
func TestPushOnlyForOwnAccount(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice password")
	ts.AddUser(t, "bob", "bob password")
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	bob.Send(`<iq type='set' id='e' to='alice@localhost'><enable xmlns='urn:xmpp:push:0' jid='evil.example' node='x'/></iq>`)
	if r := bob.Expect(xmpptest.IsIQ("e")); r.Type != "error" {
		t.Fatalf("bob enabled push for alice: %s", r)
	}
	bob.Send(`<iq type='set' id='b'><enable xmlns='urn:xmpp:push:0' node='x'/></iq>`)
	if r := bob.Expect(xmpptest.IsIQ("b")); r.ErrorCondition() != stanza.BadRequest {
		t.Fatalf("enable without jid: %s", r)
	}
}
