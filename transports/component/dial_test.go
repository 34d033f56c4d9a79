package component_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gatehouse/transports/component"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// The connecting side (component.Dial, used by the IRC transport) against
// the server's accept side.
func TestDial(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	for _, tc := range []struct {
		domain, secret, cond string
	}{
		{ircDomain, "wrong-secret-0123456789", "not-authorized"},
		{"unknown.example", ircSecret, "host-unknown"},
	} {
		_, err := component.Dial(ctx, e.addr, tc.domain, []byte(tc.secret))
		if !errors.Is(err, component.ErrRefused) || !strings.Contains(err.Error(), tc.cond) {
			t.Errorf("%s: %v, want %s", tc.domain, err, tc.cond)
		}
	}
	c, err := component.Dial(ctx, e.addr, ircDomain, []byte(ircSecret))
	if err != nil {
		t.Fatal(err)
	}
	alice := e.alice(t)
	alice.Send(`<message to='bob@irc.example' type='chat' id='d1'><body>to the component</body></message>`)
	s, err := c.Recv()
	if err != nil || s.Body() != "to the component" || s.From.String() != "alice@localhost/laptop" {
		t.Fatalf("recv %v %v", s, err)
	}
	reply := &stanza.Stanza{Kind: stanza.KindMessage, Type: "chat", From: s.To, To: s.From}
	reply.Append(stanza.NewElement("", "body").AppendText("from the component"))
	if err := c.Send(reply); err != nil {
		t.Fatal(err)
	}
	alice.Expect(xmpptest.IsMessage("from the component"))
	// A second link for the domain is refused while the first is up.
	if _, err := component.Dial(ctx, e.addr, ircDomain, []byte(ircSecret)); !errors.Is(err, component.ErrRefused) || !strings.Contains(err.Error(), "conflict") {
		t.Errorf("second link: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// When a transport's link goes down, users' clients learn that its
// contacts are offline: they would otherwise show them as they were.
func TestContactsOfflineWhenTransportGoesDown(t *testing.T) {
	e := newEnv(t)
	irc := e.irc(t)
	alice := e.alice(t)
	contact := "bob%irc@irc.example"
	alice.Send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	alice.Expect(xmpptest.IsIQ("r1"))
	alice.Send(`<presence/>`)
	alice.Expect(xmpptest.IsPresence("", "alice@localhost"))
	alice.Sendf(`<presence type='subscribe' to='%s'/>`, contact)
	irc.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "subscribe" })
	irc.Send(`<presence type='subscribed' from='%s' to='alice@localhost'/>`, contact)
	irc.Send(`<presence from='%s' to='alice@localhost'/>`, contact)
	alice.Expect(xmpptest.IsPresence("", contact))
	irc.Close()
	p := alice.Expect(xmpptest.IsPresence("unavailable", contact))
	if p.Child("", "status") == nil {
		t.Errorf("no status: %s", p)
	}
}
