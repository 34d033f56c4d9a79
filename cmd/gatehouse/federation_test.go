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
	"gatehouse/xmpp/config"
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
		{[]string{"federation", "status"}, "live status from the server itself needs the admin API", ""},
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
		TLSVersion: "TLS 1.3", Queue: 3, Since: time.Now(), Peer: "192.0.2.1:5269",
	}}}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(data, s2s.StatusFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, data, "federation", "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"partner.example", "sasl-external", "TLS 1.3", "out", "admin API"} {
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
