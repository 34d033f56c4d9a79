package main

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPolicyReloadSIGHUP runs `gatehouse serve` (in this process, so the
// signal reaches its real SIGHUP handler) and reloads the policy with
// `gatehouse policy reload --pid`: a new file takes effect, a bad one is
// refused whole and the running version stays.
func TestPolicyReloadSIGHUP(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	example, err := os.ReadFile("../../testdata/policy/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// No clamd here: the example without its scan section.
	v1 := strings.Replace(string(example), "scan:\n  enabled: true\n", "scan:\n  enabled: false\n", 1)
	if err := os.WriteFile(pol, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "gatehouse.log")
	cfg := filepath.Join(dir, "gatehouse.yaml")
	doc := "data_dir: " + filepath.Join(dir, "data") + "\nlog: {file: " + logFile + "}\n" +
		"c2s: {listen: ['127.0.0.1:0'], listen_tls: []}\nupload: {listen: '127.0.0.1:0'}\npolicy:\n  file: " + pol + "\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetArgs([]string{"-c", cfg, "serve"})
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	// waitLog waits until the log has a line with every part, after the
	// first skip lines.
	waitLog := func(skip int, poke func(), parts ...string) int {
		t.Helper()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(30 * time.Second)
		for i := 0; ; i++ {
			if poke != nil && i%25 == 0 {
				poke()
			}
			b, _ := os.ReadFile(logFile)
			lines := strings.Split(string(b), "\n")
			for i := skip; i < len(lines); i++ {
				ok := true
				for _, p := range parts {
					ok = ok && strings.Contains(lines[i], p)
				}
				if ok {
					return i + 1
				}
			}
			select {
			case err := <-done:
				t.Fatalf("serve exited: %v\n%s", err, b)
			case <-deadline:
				t.Fatalf("no log line with %q; log:\n%s", parts, b)
			case <-tick.C:
			}
		}
	}
	// serve installs its SIGHUP handler just after it logs "gatehouse
	// starting"; until then a SIGHUP would end this process. This handler
	// keeps it alive, and the first reload is repeated until serve's
	// handler has seen one.
	guard := make(chan os.Signal, 16)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)
	n := waitLog(0, nil, "policy loaded", "2026-11-23.1@")
	n = waitLog(n, nil, "gatehouse starting")
	pid := strconv.Itoa(os.Getpid())

	v2 := strings.Replace(v1, `version: "2026-11-23.1"`, `version: "2026-11-23.2"`, 1)
	if err := os.WriteFile(pol, []byte(v2), 0o600); err != nil {
		t.Fatal(err)
	}
	n = waitLog(n, func() { mustRun(t, "", "-c", cfg, "policy", "reload", "--pid", pid) }, "policy reloaded", "2026-11-23.2@")

	// A bad file: `policy reload` refuses to signal; a SIGHUP anyway (as
	// systemctl reload would send) leaves version 2 in force.
	bad, err := os.ReadFile("../../testdata/policy/bad-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "", "-c", cfg, "policy", "reload", "--pid", pid); err == nil || !strings.Contains(err.Error(), "not reloaded") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	p, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	n = waitLog(n, nil, "policy reload failed", "rule interns-internal-only")
	if err := os.WriteFile(pol, []byte(strings.Replace(v2, `"2026-11-23.2"`, `"2026-11-23.3"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "-c", cfg, "policy", "reload", "--pid", pid)
	n = waitLog(n, nil, "policy reloaded", "2026-11-23.3@")

	// Through the admin API the command says what the server did.
	if err := os.WriteFile(pol, []byte(strings.Replace(v2, `"2026-11-23.2"`, `"2026-11-23.4"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "", "-c", cfg, "policy", "reload"); !strings.Contains(out, "reloaded: the server now enforces version 2026-11-23.4@") {
		t.Fatalf("reload over the admin API: %s", out)
	}
	waitLog(n, nil, "policy reloaded", "2026-11-23.4@")
	// A file that compiles here but that the server refuses: a group it
	// cannot read is not that; a scanner it lacks is (this server has no
	// clamd).
	if err := os.WriteFile(pol, []byte(strings.Replace(string(example), `version: "2026-11-23.1"`, `version: "2026-11-23.5"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgScan := filepath.Join(dir, "with-clamd.yaml")
	if err := os.WriteFile(cfgScan, []byte(doc+"  clamd: unix:/nonexistent/clamd.ctl\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "", "-c", cfgScan, "policy", "reload")
	if err == nil || !strings.Contains(err.Error(), "not reloaded, version 2026-11-23.4@") || !strings.Contains(err.Error(), "virus scanning") {
		t.Fatalf("reload the server refuses: %v", err)
	}
}
