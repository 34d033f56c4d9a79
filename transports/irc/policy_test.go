package irc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// Which users may use a transport is the policy's call: a rule on the
// transport's domain with groups lets engineering register with the IRC
// transport and refuses everyone else at the boundary.
func TestTransportAccessFromPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(`version: "t1"
default_access: allow
access:
  - id: irc-engineering-only
    domains: [irc.example]
    except_groups: [engineering]
    action: deny
    condition: forbidden
    message: IRC is for engineering
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Policy.File = file
		c.Policy.DirectoryRefresh = 0
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: "irc.example", Builtin: "irc",
			Networks: []config.IRCNetwork{{Name: "test", Address: "127.0.0.1:1"}}}}
	})
	deadline := time.Now().Add(xmpptest.Timeout)
	for !ts.ComponentHost().Connected("irc.example") {
		if time.Now().After(deadline) {
			t.Fatal("the builtin transport did not link")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	ts.AddUser(t, "alice", "alice-secret-1")
	ts.AddUser(t, "mallory", "mallory-secret-1")
	if err := ts.DB().CreateGroup(ctx, "engineering"); err != nil {
		t.Fatal(err)
	}
	if err := ts.DB().AddToGroup(ctx, "engineering", "alice"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pw string
		want     string
	}{
		{"alice", "alice-secret-1", "result"},
		{"mallory", "mallory-secret-1", string(stanza.Forbidden)},
	} {
		c := ts.Dial(t, tc.user, tc.pw, xmpptest.ClientOptions{Resource: "r"})
		c.Send(`<iq type='get' id='reg' to='irc.example'><query xmlns='jabber:iq:register'/></iq>`)
		r := c.Expect(xmpptest.IsIQ("reg"))
		got := r.Type
		if got == "error" {
			got = string(r.ErrorCondition())
		}
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.user, r, tc.want)
		}
	}
}
