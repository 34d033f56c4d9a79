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
	writeRecord(t, dir, "gatehouse", "boundary", &loadgen.BoundaryResult{Best: 10000, Steps: []loadgen.StepResult{step(10000, 3*time.Millisecond, true), step(20000, time.Second, false)},
		Directions: []loadgen.DirectionSplit{{Rate: 10000, OutP99: 2 * time.Millisecond, InP99: 4 * time.Millisecond}, {Rate: 20000, OutP99: time.Millisecond, InP99: time.Second}}}, "")
	writeRecord(t, dir, "gatehouse", "idle", &loadgen.IdleResult{Sessions: 10, RSSPerSession: 10 * 1024}, "")
	writeRecord(t, dir, "prosody", "idle", &loadgen.IdleResult{Sessions: 10, RSSPerSession: 40 * 1024}, "")
	writeRecord(t, dir, "prosody", "fanout", nil, "loadgen: fan-out incomplete | x")
	// The client used more CPU than the server: the figure is marked.
	writeRecord(t, dir, "gatehouse", "fanout", &loadgen.FanoutResult{Users: 2, Degree: 1, Expected: 2, Seen: 2, Time: 300 * time.Millisecond,
		Usage: loadgen.Usage{Wall: time.Second, ClientCPU: 600 * time.Millisecond, ServerCPU: 400 * time.Millisecond}}, "")
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
		"p99 latency at 10,000 msg/s", "0.12× ✓",         // 1 ms vs 8 ms at the common rate
		"| 10.0 | 40.0 | not installed | 0.25× ✓ |", // RSS per session
		"- Prosody: 0.12.3", "fan-out incomplete \\| x", "CPU:",
		"| msg/s | 10,000 | n/a | n/a | 50% of internal ✓ | ≥ 50% of internal |",               // boundary vs internal 20,000
		"p99 latency at 10,000 msg/s (internal messaging: 1.00 ms)³ | ms | 3.00 | n/a | n/a |", // added latency
		"| Presence fan-out: time until every user saw every contact | ms | 300⁵ |", "⁵ During this measurement the load generator",
		"inbound (one component stream → users): 10,000: 2.0 ms / 4.0 ms; 20,000: 1.0 ms / 1000.0 ms",
		"- Gatehouse boundary (crossings/s): 10,000: 3.0 ms, 10000/10000; 20,000: 1000.0 ms, 20000/20000 ✗",
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

func TestBoundaryCommandNeedsComponent(t *testing.T) {
	cmd := boundaryCmd()
	cmd.SetArgs([]string{"--password", "x", "--pairs", "1", "--rates", "10"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SilenceUsage = true
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "component's address, domain and secret") {
		t.Fatalf("got %v", err)
	}
}

func TestProsodyRosters(t *testing.T) {
	dir := t.TempDir()
	cmd := prosodyRostersCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"--dir", dir, "--prefix", "fan", "--users", "5", "--degree", "2"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "fan0.dat"))
	if err != nil {
		t.Fatal(err)
	}
	// fan0's ring neighbours are fan1 and fan4, as the protocol path makes them.
	want := "return {\n\t[false] = {\n\t\t[\"pending\"] = {};\n\t\t[\"version\"] = 1;\n\t};\n" +
		"\t[\"fan1@localhost\"] = {\n\t\t[\"groups\"] = {\n\t\t\t[\"bench\"] = true;\n\t\t};\n\t\t[\"name\"] = \"fan1\";\n\t\t[\"subscription\"] = \"both\";\n\t};\n" +
		"\t[\"fan4@localhost\"] = {\n\t\t[\"groups\"] = {\n\t\t\t[\"bench\"] = true;\n\t\t};\n\t\t[\"name\"] = \"fan4\";\n\t\t[\"subscription\"] = \"both\";\n\t};\n};\n"
	if string(b) != want {
		t.Fatalf("fan0.dat:\n%s\nwant:\n%s", b, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "fan4.dat")); err != nil {
		t.Fatal(err)
	}
	cmd = prosodyRostersCmd()
	cmd.SetArgs([]string{"--dir", dir, "--users", "3", "--degree", "3"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("odd degree accepted")
	}
}

func TestCommonRate(t *testing.T) {
	ms := func(best int, rates ...int) *results {
		m := &loadgen.MessagingResult{Best: best}
		for _, r := range rates {
			m.Steps = append(m.Steps, loadgen.StepResult{Rate: r, Pass: r <= best})
		}
		return &results{msg: m}
	}
	for _, tc := range []struct {
		name string
		all  map[string]*results
		want int
		all3 bool
	}{
		{"all passed some", map[string]*results{"gatehouse": ms(5000, 1000, 2000, 5000, 10000), "prosody": ms(2000, 1000, 2000, 5000), "ejabberd": {}}, 2000, true},
		{"one passed none", map[string]*results{"gatehouse": ms(2000, 1000, 2000, 5000), "prosody": ms(0, 1000), "ejabberd": ms(1000, 1000, 2000)}, 1000, false},
	} {
		got, what := commonRate(tc.all)
		if got != tc.want || (what == "highest rate all passed") != tc.all3 {
			t.Errorf("%s: got %d (%s), want %d", tc.name, got, what, tc.want)
		}
	}
}
