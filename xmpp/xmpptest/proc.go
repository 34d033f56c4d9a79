package xmpptest

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Event is one JSON line an interop driver printed.
type Event map[string]any

// Str returns a string field ("" if missing or not a string).
func (e Event) Str(k string) string { s, _ := e[k].(string); return s }

// Bool returns a boolean field.
func (e Event) Bool(k string) bool { b, _ := e[k].(bool); return b }

// Proc is a real client program run by a test (a driver script in
// testdata/interop) that prints JSON events and takes commands on stdin.
type Proc struct {
	t      testing.TB
	name   string
	stdin  io.WriteCloser
	events chan Event
	// Seen are the events read so far, in order.
	Seen []Event
}

// MissingPeer fails the test on CI (CI=true), where every interop peer
// must be installed, and skips it elsewhere.
func MissingPeer(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (install with: bash .ci/deps.sh)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("interop peer missing on CI: %s", msg)
	}
	t.Skip(msg)
}

// InteropScript returns the path of a driver in testdata/interop.
func InteropScript(name string) string {
	wd, _ := os.Getwd()
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "interop", name)
		}
		if filepath.Dir(dir) == dir {
			return filepath.Join("testdata", "interop", name)
		}
	}
}

// WriteCA writes the server's certificate as a PEM file for clients to trust.
func (ts *TestServer) WriteCA(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// StartProc runs argv with env added, for at most 90 seconds; it is killed
// (by its PID) when the test ends. Lines of stdout that are not JSON are
// logged.
func StartProc(t testing.TB, name string, env []string, argv ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{t: t, name: name, stdin: stdin, events: make(chan Event, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(p.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Logf("%s: %s", name, sc.Text())
				continue
			}
			p.events <- e
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill() // a no-op once it has exited
		<-done
		_ = cmd.Wait()
		cancel()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
	})
	return p
}

// Expect waits for an event matching f (earlier ones stay in Seen); a
// {"result":"fail"} line or the program's exit fails the test.
func (p *Proc) Expect(what string, f func(Event) bool) Event {
	p.t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-p.events:
			if !ok {
				p.t.Fatalf("%s exited while waiting for %s (saw %v)", p.name, what, p.Seen)
			}
			p.Seen = append(p.Seen, e)
			if e.Str("result") == "fail" {
				p.t.Fatalf("%s failed: %s", p.name, e.Str("reason"))
			}
			if f(e) {
				return e
			}
		case <-timer.C:
			p.t.Fatalf("%s: no %s (saw %v)", p.name, what, p.Seen)
		}
	}
}

// IsEvent matches {"event": name}.
func IsEvent(name string) func(Event) bool {
	return func(e Event) bool { return e.Str("event") == name }
}

// Command writes one line to the program's stdin.
func (p *Proc) Command(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}
