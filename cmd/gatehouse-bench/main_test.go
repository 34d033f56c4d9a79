package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/loadgen"
)

func writeRecord(t *testing.T, dir, server, scenario string, result any, errText string) {
	t.Helper()
	d := filepath.Join(dir, server)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(Record{Scenario: scenario, Server: server, Params: map[string]any{}, Result: result, Error: errText})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, scenario+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReportTableAndSplice(t *testing.T) {
	dir := t.TempDir()
	usage := loadgen.Usage{Wall: time.Second, ClientCPU: 200 * time.Millisecond, ServerCPU: 500 * time.Millisecond}
	step := func(rate int, p99 time.Duration, pass bool) loadgen.StepResult {
		return loadgen.StepResult{Rate: rate, Sent: int64(rate), Delivered: int64(rate), P99: p99, Pass: pass, Usage: usage}
	}
	writeRecord(t, dir, "gatehouse", "login", &loadgen.LoginResult{N: 10, OK: 10, PerSecond: 3000, P50: 2 * time.Millisecond, P99: 5 * time.Millisecond, Usage: usage}, "")
	writeRecord(t, dir, "prosody", "login", &loadgen.LoginResult{N: 10, OK: 10, PerSecond: 1000, P50: 4 * time.Millisecond, P99: 9 * time.Millisecond, Usage: usage}, "")
	writeRecord(t, dir, "gatehouse", "messaging", &loadgen.MessagingResult{Best: 20000, Steps: []loadgen.StepResult{step(10000, time.Millisecond, true), step(20000, 2*time.Millisecond, true)}}, "")
	writeRecord(t, dir, "prosody", "messaging", &loadgen.MessagingResult{Best: 10000, Steps: []loadgen.StepResult{step(10000, 8*time.Millisecond, true), step(20000, time.Second, false)}}, "")
	writeRecord(t, dir, "gatehouse", "idle", &loadgen.IdleResult{Sessions: 10, RSSPerSession: 10 * 1024}, "")
	writeRecord(t, dir, "prosody", "idle", &loadgen.IdleResult{Sessions: 10, RSSPerSession: 40 * 1024}, "")
	writeRecord(t, dir, "prosody", "fanout", nil, "loadgen: fan-out incomplete | x")
	if err := os.MkdirAll(filepath.Join(dir, "ejabberd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ejabberd", "SKIPPED"), []byte("not installed\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	doc := filepath.Join(t.TempDir(), "performance.md")
	if err := os.WriteFile(doc, []byte("# Performance\n\n## Microbenchmarks\n\nkeep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		cmd := reportCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"--results", dir, "--doc", doc, "--meta", "Prosody=0.12.3"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"keep me", "## Load tool", "| Login storm: logins/s | /s | 3000 | 1000 | not installed | 3.00× ✓ | ≥ 1.5× |",
		"| 20,000² | 10,000 | not installed | 2.00× ✓ |", // highest messaging rate
		"p99 latency at 10,000 msg/s", "0.12× ✓",        // 1 ms vs 8 ms at the common rate
		"| 10.0 | 40.0 | not installed | 0.25× ✓ |", // RSS per session
		"- Prosody: 0.12.3", "fan-out incomplete \\| x", "CPU:",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, beginMarker) != 1 || strings.Count(s, "## Load tool") != 1 {
		t.Errorf("block not replaced in place:\n%s", s)
	}
}

func TestCLIRefusesNonLoopback(t *testing.T) {
	cmd := loginCmd()
	cmd.SetArgs([]string{"--addr", "192.168.1.1:5222", "--password", "x", "-n", "1", "-c", "1"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SilenceUsage = true
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "not a loopback") {
		t.Fatalf("got %v", err)
	}
}

func TestBoundaryCommandSaysWhy(t *testing.T) {
	cmd := boundaryCmd()
	cmd.SetArgs(nil)
	cmd.SilenceUsage = true
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "needs a transport component (issue 7)") {
		t.Fatalf("got %v", err)
	}
}
