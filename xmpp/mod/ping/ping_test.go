package ping_test

import (
	"testing"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func TestPing(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice pw")
	ts.AddUser(t, "bob", "bob pw")
	c := ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
	tests := []struct {
		name, to, typ string
		wantType      string
		wantCond      stanza.Condition
	}{
		{"server", "localhost", "get", "result", ""},
		{"no to", "", "get", "result", ""},
		{"own bare JID", "alice@localhost", "get", "result", ""},
		{"set", "localhost", "set", "error", stanza.BadRequest},
		{"other account", "bob@localhost", "get", "error", stanza.ServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			to := ""
			if tc.to != "" {
				to = " to='" + tc.to + "'"
			}
			c.Sendf(`<iq type='%s' id='p1'%s><ping xmlns='urn:xmpp:ping'/></iq>`, tc.typ, to)
			r := c.Expect(xmpptest.IsIQ("p1"))
			if r.Type != tc.wantType || r.ErrorCondition() != tc.wantCond {
				t.Fatalf("got %s, want %s %s", r, tc.wantType, tc.wantCond)
			}
			if r.Type == "result" && len(r.Elements()) != 0 {
				t.Fatalf("result carries a payload: %s", r)
			}
		})
	}
}

func TestFeatureAdvertised(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice pw")
	c := ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
	c.Send(`<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	r := c.Expect(xmpptest.IsIQ("d1"))
	for _, f := range r.Child("http://jabber.org/protocol/disco#info", "query").Elements() {
		if f.Name.Local == "feature" && f.AttrValue("var") == "urn:xmpp:ping" {
			return
		}
	}
	t.Fatalf("urn:xmpp:ping not advertised: %s", r)
}
