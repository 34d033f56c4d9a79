package version_test

import (
	"runtime"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/version"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func TestVersion(t *testing.T) {
	tests := []struct {
		name   string
		opt    xmpptest.Option
		to     string
		typ    string
		wantOS string
		want   string // expected name; "" for an error reply
		cond   stanza.Condition
	}{
		{"defaults", func(*config.Config) {}, " to='localhost'", "get", runtime.GOOS, "Gatehouse", ""},
		{"own account", func(*config.Config) {}, "", "get", runtime.GOOS, "Gatehouse", ""},
		{"hide os", func(c *config.Config) { c.Server.HideOS = true }, " to='localhost'", "get", "", "Gatehouse", ""},
		{"configured name", func(c *config.Config) { c.Server.Name = "Acme Chat" }, " to='localhost'", "get", runtime.GOOS, "Acme Chat", ""},
		{"set", func(*config.Config) {}, " to='localhost'", "set", "", "", stanza.BadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := xmpptest.RunServer(t, tc.opt)
			ts.AddUser(t, "alice", "alice pw")
			c := ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
			c.Sendf(`<iq type='%s' id='v1'%s><query xmlns='jabber:iq:version'/></iq>`, tc.typ, tc.to)
			r := c.Expect(xmpptest.IsIQ("v1"))
			if tc.cond != "" {
				if r.ErrorCondition() != tc.cond {
					t.Fatalf("got %s, want %s", r, tc.cond)
				}
				return
			}
			q := r.Child(version.NS, "query")
			if r.Type != "result" || q == nil {
				t.Fatalf("got %s", r)
			}
			if got := q.ChildText(version.NS, "name"); got != tc.want {
				t.Errorf("name %q, want %q", got, tc.want)
			}
			if got := q.ChildText(version.NS, "version"); got != server.Version {
				t.Errorf("version %q, want %q", got, server.Version)
			}
			os := q.Child(version.NS, "os")
			switch {
			case tc.wantOS == "" && os != nil:
				t.Errorf("os present: %s", r)
			case tc.wantOS != "" && (os == nil || os.Text() != tc.wantOS):
				t.Errorf("os missing or wrong: %s", r)
			}
		})
	}
}
