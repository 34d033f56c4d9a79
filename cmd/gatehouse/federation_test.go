package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/s2s"
	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// run executes the CLI with args against data dir and returns stdout.
func runCLI(t *testing.T, data string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--data", data}, args...))
	err := root.Execute()
	return out.String() + errOut.String(), err
}

func TestFederationCLI(t *testing.T) {
	data := t.TempDir()
	steps := []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"federation", "allow", "Partner.Example.", "--note", "contract 17"}, "partner.example: allowed", ""},
		{[]string{"federation", "deny", "*.spam.example"}, "*.spam.example: denied", ""},
		{[]string{"federation", "deny", "partner.example"}, "partner.example: denied", ""},
		{[]string{"federation", "allow", "--remove", "partner.example"}, "", "on the stored deny list, not allow"},
		{[]string{"federation", "deny", "--remove", "partner.example"}, "removed partner.example", ""},
		{[]string{"federation", "deny", "--remove", "partner.example"}, "", "not on the stored deny list"},
		{[]string{"federation", "allow", "not a domain"}, "", "not a valid domain"},
		{[]string{"federation", "list"}, "*.spam.example  deny", ""},
		{[]string{"federation", "status"}, "no server answers on the admin socket and there is no link snapshot", ""},
		{[]string{"federation", "list", "-o", "yaml"}, "", "unknown output format"},
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
	out, err := runCLI(t, data, "federation", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Mode    string `json:"mode"`
		Entries []struct{ Domain, List, Source string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Mode != config.FederationAllowlist || len(got.Entries) != 1 || got.Entries[0].Domain != "*.spam.example" {
		t.Fatalf("json %s: %+v %v", out, got, err)
	}
}

func TestFederationStatusSnapshot(t *testing.T) {
	data := t.TempDir()
	st := s2s.Status{PID: os.Getpid(), Written: time.Now().UTC(), Mode: "open", Links: []s2s.LinkInfo{{
		Local: "localhost", Remote: "partner.example", Direction: "out", Method: s2s.MethodSASLExternal,
		TLSVersion: "TLS 1.3", Queue: 3, Since: time.Now(), Peer: "192.0.2.1:5269", State: s2s.StateUp,
	}, {
		Local: "localhost", Remote: "down.example", Direction: "out", Queue: 7, Since: time.Now(),
		State: s2s.StateRetrying, LastError: "s2s: connect 192.0.2.2:5269: connection refused", Retry: time.Now().Add(4 * time.Second),
	}}}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(data, s2s.StatusFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, data, "federation", "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"partner.example", "sasl-external", "TLS 1.3", "out", "down.example", "retrying",
		"down.example: last attempt failed: s2s: connect 192.0.2.2:5269: connection refused"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status output lacks %q:\n%s", want, out)
		}
	}
	st.PID = 0 // no such process: a stale snapshot
	b, _ = json.Marshal(st)
	_ = os.WriteFile(filepath.Join(data, s2s.StatusFile), b, 0o600)
	if out, _ := runCLI(t, data, "federation", "status"); !strings.Contains(out, "no longer running") {
		t.Fatalf("stale snapshot not flagged:\n%s", out)
	}
}

// TestFederationCLILive drives a running server through the admin API: the
// status shows its live link, and a deny closes that link at once.
func TestFederationCLILive(t *testing.T) {
	a := xmpptest.RunServer(t, s2stest.Federated("a.localhost"), func(c *config.Config) { c.S2S.Mode = config.FederationDenylist })
	b := xmpptest.RunServer(t, s2stest.Federated("b.localhost"))
	s2stest.Route(t, a, b, false)
	s2stest.Route(t, b, a, false)
	a.AddUser(t, "alice", "federation secret")
	b.AddUser(t, "bob", "federation secret")
	alice := a.Dial(t, "alice", "federation secret", xmpptest.ClientOptions{})
	bob := b.Dial(t, "bob", "federation secret", xmpptest.ClientOptions{Resource: "r"})
	alice.Send(`<message to='bob@b.localhost/r' id='m1'><body>over the link</body></message>`)
	bob.Expect(xmpptest.IsMessage("over the link"))

	data := a.Config.DataDir
	out, err := runCLI(t, data, "federation", "status")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := a.S2SAddrs()
	for _, want := range []string{"live links of server pid", "mode denylist", st[0], "b.localhost", s2s.StateUp, s2s.MethodDialback} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, data, "federation", "deny", "B.localhost", "--note", "test")
	if err != nil || !strings.Contains(out, "b.localhost: denied") {
		t.Fatalf("deny: %v\n%s", err, out)
	}
	// Applied by the server before it answered: the link is gone and new
	// stanzas bounce.
	if a.S2S().Connected("a.localhost", "b.localhost") {
		t.Fatalf("link still up after deny: %+v", a.S2S().Links())
	}
	alice.Send(`<message to='bob@b.localhost/r' id='m2'><body>after the deny</body></message>`)
	if m := alice.Expect(func(s *stanza.Stanza) bool { return s.ID == "m2" }); m.ErrorCondition() != stanza.NotAllowed {
		t.Fatalf("got %s, want a not-allowed bounce", m)
	}
	out, err = runCLI(t, data, "federation", "deny", "--remove", "b.localhost")
	if err != nil || !strings.Contains(out, "removed b.localhost") {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	if _, err = runCLI(t, data, "federation", "allow", "--remove", "b.localhost"); err == nil || !strings.Contains(err.Error(), "not on the stored allow list") {
		t.Fatalf("removing a missing entry: %v", err)
	}
	alice.Send(`<message to='bob@b.localhost/r' id='m3'><body>allowed again</body></message>`)
	bob.Expect(xmpptest.IsMessage("allowed again"))
}
