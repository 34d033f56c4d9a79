package main

import (
	"bytes"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// run executes the CLI in-process with args and stdin; it returns stdout
// and the error.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err := root.Execute()
	return out.String() + errOut.String(), err
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := run(t, stdin, args...)
	if err != nil {
		t.Fatalf("gatehouse %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// cliSetup writes a configuration with the example policy and creates
// alice (manager boss), boss and intern (group interns).
func cliSetup(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	example, err := filepath.Abs("../../testdata/policy/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gatehouse.yaml")
	doc := "data_dir: " + filepath.Join(dir, "data") + "\npolicy:\n  file: " + example +
		"\n  clamd: unix:/run/clamav/clamd.ctl\ncomponents:\n  transports:\n    - {domain: irc.localhost, secret: 0123456789abcdef0123}\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "boss", "intern"} {
		mustRun(t, "correct horse\n", "-c", cfg, "user", "add", u)
	}
	return cfg
}

func TestGroupAndManagerCommands(t *testing.T) {
	cfg := cliSetup(t)
	for _, tc := range []struct {
		args []string
		want string
		fail bool
	}{
		{[]string{"group", "create", "interns"}, "created group interns", false},
		{[]string{"group", "create", "interns"}, `group "interns" already exists`, true},
		{[]string{"group", "add", "interns", "intern", "alice@localhost"}, "added intern to interns\nadded alice to interns", false},
		{[]string{"group", "add", "nope", "alice"}, `no group "nope"`, true},
		{[]string{"group", "add", "interns", "zed"}, `no user "zed"`, true},
		{[]string{"group", "list"}, "interns: alice, intern", false},
		{[]string{"group", "remove", "interns", "alice"}, "removed alice from interns", false},
		{[]string{"group", "remove", "interns", "alice"}, "alice is not in group", true},
		{[]string{"group", "list", "interns"}, "intern\n", false},
		{[]string{"user", "set-manager", "alice", "boss"}, "manager of alice is boss", false},
		{[]string{"user", "set-manager", "alice", "alice"}, "cannot be their own manager", true},
		{[]string{"user", "set-manager", "alice", "zed"}, "must both be accounts", true},
		{[]string{"user", "set-manager", "alice"}, "give USER and MANAGER", true},
		{[]string{"user", "set-manager", "intern", "boss"}, "manager of intern is boss", false},
		{[]string{"user", "set-manager", "intern", "--clear"}, "intern has no manager now", false},
		{[]string{"user", "set-manager", "intern", "--clear"}, "intern has no manager", true},
		{[]string{"group", "create", "legal"}, "created group legal", false},
		{[]string{"group", "delete", "legal"}, "deleted group legal", false},
		{[]string{"group", "delete", "legal"}, `no group "legal"`, true},
	} {
		out, err := run(t, "", append([]string{"-c", cfg}, tc.args...)...)
		if (err != nil) != tc.fail {
			t.Fatalf("%v: err %v, want failure %v\n%s", tc.args, err, tc.fail, out)
		}
		got := out
		if err != nil {
			got += err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%v: output %q lacks %q", tc.args, got, tc.want)
		}
	}
}

func TestPolicyCheckCommand(t *testing.T) {
	cfg := cliSetup(t)
	out := mustRun(t, "", "-c", cfg, "policy", "check")
	if !strings.Contains(out, "policy OK: version 2026-11-23.1@") || !strings.Contains(out, `warning: group "interns" does not exist`) {
		t.Fatalf("check: %q", out)
	}
	_, err := run(t, "", "-c", cfg, "policy", "check", "../../testdata/policy/bad-rules.yaml")
	if err == nil {
		t.Fatal("bad file passed the check")
	}
	msg := err.Error()
	// Every problem, in file order, with line and rule.
	for _, want := range []string{
		`bad-rules.yaml:10: access[0].action (rule interns-internal-only): "block" is not allow, deny, flag`,
		`bad-rules.yaml:13: content[0].lexicons[0] (rule project-x): no lexicon "projectx"`,
		`bad-rules.yaml:15: content[0].notify[0] (rule project-x)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Index(msg, ":10:") > strings.Index(msg, ":13:") {
		t.Errorf("errors not in file order: %q", msg)
	}
}

// TestPolicyTestCommand evaluates sample stanzas from the command line.
func TestPolicyTestCommand(t *testing.T) {
	cfg := cliSetup(t)
	mustRun(t, "", "-c", cfg, "group", "create", "interns")
	mustRun(t, "", "-c", cfg, "group", "add", "interns", "intern")
	mustRun(t, "", "-c", cfg, "user", "set-manager", "alice", "boss")
	jingle := `<iq type='set' id='j'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'><content creator='initiator' name='f'>` +
		`<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>big.iso</name><size>9000000</size></file></description></content></jingle></iq>`
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"project x", "", []string{"--from", "alice", "--to", "partner@irc.localhost", "--body", "The Project X launch"}, []string{
			"crossing:  outbound, local alice@localhost (groups: none), outside partner@irc.localhost (transport)",
			"rule 1:    access     watch-irc", "rule 2:    content    project-x", `matched "Project X"`,
			"notify:    project-x → manager (boss)",
			`decision:  DENY policy-violation "Project X is confidential. (rule project-x)"`,
			"archive:   rule=watch-irc,project-x policy_version=2026-11-23.1@"}},
		{"intern", "", []string{"--from", "intern", "--to", "partner@irc.localhost", "--body", "hi"}, []string{
			"(groups: interns)", `DENY policy-violation "Interns may not communicate`}},
		{"groups flag", "", []string{"--from", "alice", "--to", "bob@partner.example", "--groups", "interns", "--body", "hi"}, []string{
			"outside bob@partner.example (remote)", "rule=interns-internal-only"}},
		{"redaction", "", []string{"--from", "alice", "--to", "bob@partner.example", "--body", "card 4111 1111 1111 1111"}, []string{
			"decision:  ALLOW", `delivered: "card *******************"`, "notify:    card-numbers → compliance@localhost",
			"rule 2:    disclaimer recorded"}},
		{"inbound", "", []string{"--from", "partner@irc.localhost", "--to", "alice", "--body", "Project X?"}, []string{
			"crossing:  inbound", "decision:  ALLOW"}},
		{"stanza from stdin", jingle, []string{"--from", "alice", "--to", "partner@irc.localhost/x", "--stanza", "-"}, []string{
			"file:      big.iso via jingle, 9000000 bytes", "files      max-1mb", "size 9000000 bytes is over the limit of 1048576",
			"(rule max-1mb)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustRun(t, tc.stdin, append([]string{"-c", cfg, "policy", "test"}, tc.args...)...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	for _, bad := range [][]string{
		{"--from", "alice", "--to", "boss", "--body", "x"},
		{"--from", "a@x.example", "--to", "b@y.example", "--body", "x"},
		{"--from", "alice", "--body", "x"},
	} {
		if _, err := run(t, "", append([]string{"-c", cfg, "policy", "test"}, bad...)...); err == nil {
			t.Errorf("policy test %v succeeded", bad)
		}
	}
}

// TestPolicyReloadCommand: the file is checked, then the named process
// gets SIGHUP (here: this test process).
func TestPolicyReloadCommand(t *testing.T) {
	cfg := cliSetup(t)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	out := mustRun(t, "", "-c", cfg, "policy", "reload", "--pid", strconv.Itoa(os.Getpid()))
	if !strings.Contains(out, "sent SIGHUP to process") {
		t.Fatalf("reload: %q", out)
	}
	select {
	case <-hup:
	case <-time.After(10 * time.Second):
		t.Fatal("no SIGHUP received")
	}
	pidFile := filepath.Join(t.TempDir(), "gatehouse.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "-c", cfg, "policy", "reload", "--pid-file", pidFile)
	<-hup

	// A bad file: nothing is signalled.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	doc, _ := os.ReadFile(cfg)
	if err := os.WriteFile(bad, []byte(strings.Replace(string(doc), "testdata/policy/example.yaml", "testdata/policy/bad-rules.yaml", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "", "-c", bad, "policy", "reload", "--pid", strconv.Itoa(os.Getpid())); err == nil || !strings.Contains(err.Error(), "not reloaded") {
		t.Fatalf("bad file reload: %v", err)
	}
	select {
	case <-hup:
		t.Fatal("a bad file was signalled")
	default:
	}
	// Without --pid the admin API is asked; no server runs here.
	if out, err := run(t, "", "-c", cfg, "policy", "reload"); err == nil || !strings.Contains(err.Error(), "no running server answers on the admin socket") ||
		!strings.Contains(out, "policy OK") {
		t.Fatalf("reload without a server: %v\n%s", err, out)
	}
}

// TestPolicyTestBarriers: between two local users only the information
// barriers apply; groups come from the data directory or the flags.
func TestPolicyTestBarriers(t *testing.T) {
	cfg := cliSetup(t)
	barriers, err := filepath.Abs("../../testdata/policy/barriers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"rita", "tom"} {
		mustRun(t, "correct horse\n", "-c", cfg, "user", "add", u)
	}
	mustRun(t, "", "-c", cfg, "group", "create", "research")
	mustRun(t, "", "-c", cfg, "group", "create", "trading")
	mustRun(t, "", "-c", cfg, "group", "add", "research", "rita")
	mustRun(t, "", "-c", cfg, "group", "add", "trading", "tom")
	out := mustRun(t, "", "-c", cfg, "policy", "test", "--policy", barriers, "--from", "tom", "--to", "rita", "--body", "any news?")
	for _, w := range []string{
		"crossing:  internal, from tom@localhost (groups: trading) to rita@localhost (groups: research)",
		"rule 1:    barrier    research-trading         deny    barrier between groups research and trading",
		"notify:    research-trading → compliance@localhost",
		`decision:  DENY not-allowed "An information barrier separates Research and Trading. (rule research-trading)"`,
		"archive:   rule=research-trading policy_version=barriers-1@",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	out = mustRun(t, "", "-c", cfg, "policy", "test", "--policy", barriers, "--from", "tom", "--to", "rita", "--to-groups", "legal", "--body", "hi")
	if !strings.Contains(out, "rule 1:    barrier    legal-trading-review     flag") || !strings.Contains(out, "decision:  ALLOW") {
		t.Errorf("with --to-groups legal:\n%s", out)
	}
	// A policy without barriers: internal traffic is not evaluated.
	if _, err := run(t, "", "-c", cfg, "policy", "test", "--from", "tom", "--to", "rita", "--body", "hi"); err == nil ||
		!strings.Contains(err.Error(), "this policy has none") {
		t.Fatalf("internal test under the example policy: %v", err)
	}
}
