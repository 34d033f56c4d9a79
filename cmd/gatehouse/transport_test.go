package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/xmpptest"
)

func TestTransportCLI(t *testing.T) {
	data := t.TempDir()
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"transport", "list"}, "no transports", ""},
		{[]string{"transport", "add", "IRC.Example.org", "--type", "irc", "--name", "IRC"}, "component secret (shown once): ", ""},
		{[]string{"transport", "add", "irc.example.org"}, "", "exists already"},
		{[]string{"transport", "add", "localhost"}, "", "hosted domain"},
		{[]string{"transport", "add", "tg.example.org", "--roster", "all"}, "", "privileges.roster"},
		{[]string{"transport", "add", "tg.example.org", "--secret-file", secret, "--roster", "both", "--message", "outgoing"}, "added transport tg.example.org", ""},
		{[]string{"transport", "list"}, "tg.example.org   external  -     -     roster=both,message=outgoing", ""},
		{[]string{"transport", "status", "irc.example.org"}, "never connected", ""},
		{[]string{"transport", "users", "tg.example.org"}, "USER", ""},
		{[]string{"transport", "remove", "irc.example.org"}, "removed transport irc.example.org", ""},
		{[]string{"transport", "remove", "irc.example.org"}, "", "no transport irc.example.org"},
		{[]string{"transport", "irc", "--domain", "x.example"}, "", "secret-file"},
	}
	for _, s := range steps {
		out, err := runCLI(t, data, s.args...)
		switch {
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Fatalf("%v: error %v, want %q (output %s)", s.args, err, s.wantErr, out)
		case s.wantErr == "" && err != nil:
			t.Fatalf("%v: %v", s.args, err)
		case !strings.Contains(out, s.want):
			t.Fatalf("%v: output %q, want %q", s.args, out, s.want)
		}
	}
}

// A transport added with the CLI is served after a start; the IRC
// transport runs as its own process-like command against it, and status
// and users report from the archive and the rosters.
func TestTransportCLILive(t *testing.T) {
	data := t.TempDir()
	secret := filepath.Join(t.TempDir(), "irc.secret")
	if err := os.WriteFile(secret, []byte("standalone-irc-secret-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, data, "transport", "add", "irc.example.org", "--type", "irc", "--roster", "both", "--secret-file", secret); err != nil {
		t.Fatalf("add: %v %s", err, out)
	}
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.DataDir = data
		c.Components.Listen = []string{"127.0.0.1:0"}
	})
	ts.AddUser(t, "alice", "alice-secret-1")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"transport", "irc", "--server", ts.ComponentAddrs()[0], "--domain", "irc.example.org",
			"--secret-file", secret, "--network", "test=127.0.0.1:1", "--db", filepath.Join(t.TempDir(), "irc.db"), "--log-level", "error"})
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("transport irc: %v", err)
		}
	})
	host := ts.ComponentHost()
	waitTransport(t, "the standalone transport's link", func() bool { return host.Connected("irc.example.org") })

	alice := ts.Dial(t, "alice", "alice-secret-1", xmpptest.ClientOptions{Resource: "cli"})
	alice.Send(`<iq type='set' id='reg' to='irc.example.org'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>
		<field var='nick'><value>alice</value></field><field var='contacts'><value>bob carol</value></field></x></query></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("reg")); r.Type != "result" {
		t.Fatalf("register: %s", r)
	}
	alice.Send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	waitTransport(t, "the contacts in the roster", func() bool {
		items, _, err := ts.DB().Roster(context.Background(), "alice")
		return err == nil && len(items) == 3
	})

	out, err := runCLI(t, data, "transport", "status")
	if err != nil || !strings.Contains(out, "irc.example.org  up") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = runCLI(t, data, "transport", "users", "irc.example.org")
	if err != nil || !strings.Contains(out, "alice@localhost  2") {
		t.Errorf("users: %v\n%s", err, out)
	}
}

// waitTransport polls cond (state without a notification) for up to
// xmpptest.Timeout.
func waitTransport(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(xmpptest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
