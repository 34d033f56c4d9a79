package server_test

import (
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/xmpptest"
)

// A configured transport is listed in the server's disco#items, where
// clients look for gateways (XEP-0100 §4.1), next to the internal services.
func TestTransportsInServerDiscoItems(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: "irc.localhost", Secret: "0123456789abcdef0123", Type: "irc", Name: "IRC"}}
	})
	ts.AddUser(t, "alice", "correct horse")
	alice := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{})
	alice.Send(`<iq type='get' to='localhost' id='items'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	r := alice.Expect(xmpptest.IsIQ("items"))
	var got []string
	for _, it := range r.Payload().Elements() {
		got = append(got, it.AttrValue("jid"))
	}
	want := []string{"conference.localhost", "irc.localhost", "pubsub.localhost", "upload.localhost"}
	if len(got) != len(want) {
		t.Fatalf("disco#items = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("disco#items = %v, want %v", got, want)
		}
	}
	// The gateway answers disco#info with its identity even while the
	// transport is not connected.
	alice.Send(`<iq type='get' to='irc.localhost' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := alice.Expect(xmpptest.IsIQ("info"))
	id := info.Payload().Child("http://jabber.org/protocol/disco#info", "identity")
	if id == nil || id.AttrValue("category") != "gateway" || id.AttrValue("type") != "irc" {
		t.Fatalf("gateway disco#info: %s", info)
	}
}
