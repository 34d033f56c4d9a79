package main

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gatehouse/logging/archive"
	"gatehouse/policy"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
)

// discard is a Forwarder for notices nobody reads here.
type discard struct{}

func (discard) Forward(context.Context, *router.Envelope) error { return nil }

// recordCrossings runs each stanza through a real Gate with the example
// policy and records the crossing in a real archive as the server's
// archive boundary does: the stanza as it reached the boundary, the
// decision, and what was delivered.
func recordCrossings(t *testing.T, cfgFile, archivePath string, stanzas []string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(cfg.Policy.File, server.PolicyOptions(cfg))
	if err != nil {
		t.Fatal(err)
	}
	db, err := server.OpenDB(ctx, cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// No file crosses here; the scanner is only required by the policy.
	gate, err := policy.NewGate(ctx, p, policy.GateOptions{Hosts: cfg.Hosts, Directory: db, Forwarder: discard{},
		Scanner: &policy.Clamd{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(ctx, archive.Options{Path: archivePath})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := a.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	for _, raw := range stanzas {
		d := xml.NewDecoder(strings.NewReader(raw))
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		st, err := stanza.Parse(d, tok.(xml.StartElement))
		if err != nil {
			t.Fatal(err)
		}
		env := &router.Envelope{Stanza: st}
		local := router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost"}
		outside := router.Endpoint{Zone: router.ZoneTransport, Domain: "irc.localhost"}
		if st.From.Domainpart() == "localhost" {
			env.Src, env.Dst = local, outside
		} else {
			env.Src, env.Dst = outside, local
		}
		rec := archive.FromEnvelope(env)
		dec, err := gate.Cross(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		rec.SetDecision(dec, env.Stanza)
		if _, err := a.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPolicyReplayCommand: crossings decided by the example policy are
// replayed under a changed policy; the report names exactly the crossings
// whose outcome would differ, and how.
func TestPolicyReplayCommand(t *testing.T) {
	cfg := cliSetup(t)
	mustRun(t, "", "-c", cfg, "group", "create", "interns")
	mustRun(t, "", "-c", cfg, "group", "add", "interns", "intern")
	// Where archive.file points by default: data_dir/archive.db.
	arch := filepath.Join(filepath.Dir(cfg), "data", "archive.db")
	recordCrossings(t, cfg, arch, []string{
		`<message from='alice@localhost/desk' to='partner@irc.localhost' type='chat' id='falcon'><body>about Falcon</body></message>`,
		`<message from='alice@localhost/desk' to='partner@irc.localhost' type='chat' id='px'><body>the Project X launch</body></message>`,
		`<message from='alice@localhost/desk' to='partner@irc.localhost' type='chat' id='card'><body>card 4111 1111 1111 1111</body></message>`,
		`<message from='intern@localhost/desk' to='partner@irc.localhost' type='chat' id='intern'><body>hello</body></message>`,
		`<message from='partner@irc.localhost' to='alice@localhost' type='chat' id='in'><body>hi alice</body></message>`,
	})

	// Unchanged policy: nothing would change.
	out := mustRun(t, "", "-c", cfg, "policy", "replay")
	if !strings.Contains(out, "summary: 5 crossings evaluated, 0 would change") {
		t.Fatalf("replay under the same policy:\n%s", out)
	}

	// The changed rule set: Falcon is confidential too, interns may talk
	// outside, card numbers are only flagged.
	example, err := os.ReadFile("../../testdata/policy/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := string(example)
	for _, r := range [][2]string{
		{`version: "2026-11-23.1"`, `version: "2026-11-23.2"`},
		{"      - PX-2000\n", "      - PX-2000\n      - Falcon\n"},
		{"    groups: [interns]\n    action: deny\n", "    groups: [interns]\n    action: allow\n"},
		{"    patterns: [card-number]\n    action: redact\n", "    patterns: [card-number]\n    action: flag\n"},
	} {
		if !strings.Contains(src, r[0]) {
			t.Fatalf("example.yaml no longer contains %q", r[0])
		}
		src = strings.Replace(src, r[0], r[1], 1)
	}
	changed := filepath.Join(t.TempDir(), "changed.yaml")
	if err := os.WriteFile(changed, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "", "-c", cfg, "policy", "replay", "--archive", arch, "--policy", changed, "--since", "1h")
	for _, want := range []string{
		"policy:  2026-11-23.2@",
		"alice@localhost → partner@irc.localhost  message/chat  allow→deny\n    then: allow rule=watch-irc,recorded (2026-11-23.1@",
		"    now:  deny policy-violation rule=watch-irc,project-x\n          access watch-irc flag: matched by outside address, zone\n          content project-x deny: matched \"Falcon\"",
		"intern@localhost → partner@irc.localhost  message/chat  deny→allow\n    then: deny policy-violation rule=interns-internal-only",
		"alice@localhost → partner@irc.localhost  message/chat  delivery changed\n    then: allow rule=watch-irc,card-numbers (2026-11-23.1@",
		"    now:  allow rule=watch-irc,card-numbers,recorded\n          access watch-irc flag: matched by outside address, zone\n          content card-numbers flag: matched pattern card-number",
		"summary: 5 crossings evaluated, 3 would change (allow→deny 1, deny→allow 1, rules changed 0, delivery changed 1)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
	// docs/policy.md shows this output; times, paths and the sequence
	// numbers differ from run to run.
	checkReplayDoc(t, out)
	if strings.Contains(out, "Project X launch") || strings.Contains(out, "hi alice") {
		t.Errorf("unchanged crossings listed:\n%s", out)
	}
	if n := strings.Count(out, "\nseq "); n != 3 {
		t.Errorf("%d crossings listed, want 3:\n%s", n, out)
	}

	// --all lists every crossing; a missing archive is an error, not a
	// new file.
	if out := mustRun(t, "", "-c", cfg, "policy", "replay", "--archive", arch, "--all"); strings.Count(out, "unchanged") != 5 {
		t.Errorf("--all:\n%s", out)
	}
	missing := filepath.Join(t.TempDir(), "none.db")
	if _, err := run(t, "", "-c", cfg, "policy", "replay", "--archive", missing); err == nil {
		t.Fatal("a missing archive was accepted")
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("replay created an archive")
	}
}

// checkReplayDoc compares the replay transcript of docs/policy.md with out,
// times, paths and sequence numbers aside.
func checkReplayDoc(t *testing.T, out string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "$ gatehouse -c gatehouse.yaml policy replay --policy new.yaml --since 720h\n"
	_, after, ok := strings.Cut(string(doc), "```\n"+prompt)
	if !ok {
		t.Fatal("docs/policy.md has no replay transcript")
	}
	want, _, _ := strings.Cut(after, "```\n")
	norm := func(s string) string {
		s = regexp.MustCompile(`\d{4}-\d\d-\d\dT[\d:.]+Z`).ReplaceAllString(s, "TIME")
		s = regexp.MustCompile(`(?m)^(policy: .*) \(.*\)$`).ReplaceAllString(s, "$1 (FILE)")
		s = regexp.MustCompile(`(?m)^archive: [^,]*,`).ReplaceAllString(s, "archive: FILE,")
		return regexp.MustCompile(`(?m)^seq \d+ `).ReplaceAllString(s, "seq N ")
	}
	if norm(out) != norm(want) {
		t.Errorf("docs/policy.md shows\n%s\nreplay prints\n%s", want, out)
	}
}
