package interop

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/xmpptest"
)

const (
	// stepTimeout bounds one wait for something a client prints or the
	// server does.
	stepTimeout = 20 * time.Second
	// procTimeout bounds the whole life of one client process.
	procTimeout = 60 * time.Second
	// stopGrace is how long a process has to exit after SIGTERM before
	// it gets SIGKILL.
	stopGrace = 5 * time.Second
	// pollEvery is the polling interval of waits on state that has no
	// notification (a tmux screen, the server's session table).
	pollEvery = 50 * time.Millisecond
)

// Test accounts: every test server has these.
var users = map[string]string{
	"alice": "alice-secret-1",
	"bob":   "bob-secret-2",
	"carol": "Crème brûlée ☃", // not ASCII; the same under SASLprep (NFKC) and PRECIS (NFC)
}

// onCI reports whether the test runs in CI, where a missing peer is a
// failure rather than a reason to skip.
func onCI() bool { return os.Getenv("CI") == "true" }

// missingPeer fails the test on CI and skips it elsewhere.
func missingPeer(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (install with: bash .ci/deps.sh)"
	if onCI() {
		t.Fatalf("interop peer missing on CI: %s", msg)
	}
	t.Skip(msg)
}

// interopTest is the common start of every test: -short skips (outside
// CI), and the tests run in parallel, each with its own server.
func interopTest(t *testing.T) {
	t.Helper()
	if testing.Short() && !onCI() {
		t.Skip("interop tests start real clients; skipped in -short mode")
	}
	t.Parallel()
}

// requireCmd returns the path of a client binary or ends the test.
func requireCmd(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missingPeer(t, "%s not found in PATH", name)
	}
	return p
}

// env is one Gatehouse server with the test accounts and its CA file.
type env struct {
	ts       *xmpptest.TestServer
	ca       string // PEM file holding the server's self-signed certificate
	host     string // 127.0.0.1
	port     string // STARTTLS port
	tlsPort  string // direct TLS port
	dir      string // scratch directory of the test
	certSHA1 string // hex SHA-1 fingerprint of the certificate, as profanity shows it
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ts := xmpptest.RunServer(t)
	for u, pw := range users {
		ts.AddUser(t, u, pw)
	}
	dir := t.TempDir()
	e := &env{ts: ts, dir: dir, ca: filepath.Join(dir, "ca.pem")}
	cert := ts.Certificate()
	if cert == nil {
		t.Fatal("server has no certificate")
	}
	if err := os.WriteFile(e.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	e.certSHA1 = sha1Hex(cert.Raw)
	var err error
	if e.host, e.port, err = net.SplitHostPort(ts.Addr); err != nil {
		t.Fatal(err)
	}
	if _, e.tlsPort, err = net.SplitHostPort(ts.TLSAddr); err != nil {
		t.Fatal(err)
	}
	return e
}

// dial logs user in with the xmpptest raw client, as the other party.
func (e *env) dial(t *testing.T, user, resource string) *xmpptest.Client {
	t.Helper()
	return e.ts.Dial(t, user, users[user], xmpptest.ClientOptions{Resource: resource})
}

// online logs user in with the xmpptest raw client, sends initial presence
// and waits until the server has processed it.
func (e *env) online(t *testing.T, user, resource string) *xmpptest.Client {
	t.Helper()
	c := e.dial(t, user, resource)
	c.Send(`<presence/>`)
	e.waitSession(t, user, "available as "+c.JID.String(), func(s *sessions.Session) bool {
		return s.JID.Equal(c.JID) && s.Available()
	})
	return c
}

// bare returns user's bare JID on the test domain.
func (e *env) bare(user string) string { return user + "@" + e.ts.Domain }

// waitSession polls the server's session table until a resource of user
// matching ok exists, and returns it.
func (e *env) waitSession(t *testing.T, user string, what string, ok func(*sessions.Session) bool) *sessions.Session {
	t.Helper()
	j := jid.MustParse(e.bare(user))
	deadline := time.Now().Add(stepTimeout)
	for {
		for _, s := range e.ts.Sessions().Resources(j) {
			if ok(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			var have []string
			for _, s := range e.ts.Sessions().Resources(j) {
				have = append(have, fmt.Sprintf("%s (available=%v)", s.JID, s.Available()))
			}
			t.Fatalf("timed out waiting for a session of %s that is %s; sessions: %v", user, what, have)
		}
		time.Sleep(pollEvery)
	}
}

// proc is a client process started by a test. Its stdout is kept as lines;
// waits on it are bounded; it is stopped by PID and reaped when the test
// ends.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd

	mu      sync.Mutex
	lines   []string // stdout lines, and stderr lines prefixed "! "
	out     *lineSink
	errs    *lineSink
	changed chan struct{} // closed and replaced when a line arrives or the process exits

	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error
}

// start runs argv with the extra environment variables env (on top of a
// minimal PATH/LANG environment, never the developer's HOME).
func start(t *testing.T, name string, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, changed: make(chan struct{}), done: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}, env...)
	p.out, p.errs = &lineSink{p: p}, &lineSink{p: p, prefix: "! "}
	cmd.Stdout, cmd.Stderr = p.out, p.errs
	cmd.Stdin = nil // /dev/null
	// Output copying must end soon after the process exits, even if a
	// child of it kept the pipe open.
	cmd.WaitDelay = stopGrace
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %v: %v", name, argv, err)
	}
	t.Logf("%s: started pid %d: %s", name, cmd.Process.Pid, strings.Join(argv, " "))
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.out.flush()
		p.errs.flush()
		p.mu.Unlock()
		close(p.done)
		p.notify()
	}()
	// Whatever happens, the process does not outlive procTimeout or the test.
	timer := time.AfterFunc(procTimeout, func() {
		p.signal(syscall.SIGKILL)
	})
	t.Cleanup(func() {
		timer.Stop()
		p.stop()
		if t.Failed() {
			t.Logf("%s: output (pid %d, %v):\n%s", name, cmd.Process.Pid, p.exitState(), p.output())
		}
	})
	return p
}

// lineSink splits one output stream of a process into lines; stderr lines
// are kept with the prefix "! " so they never parse as driver events.
type lineSink struct {
	p       *proc
	prefix  string
	partial []byte
}

func (w *lineSink) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	w.partial = append(w.partial, b...)
	n := 0
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if len(p.lines) < maxLines {
			p.lines = append(p.lines, w.prefix+strings.TrimRight(string(w.partial[:i]), "\r"))
		}
		w.partial = w.partial[i+1:]
		n++
	}
	p.mu.Unlock()
	if n > 0 {
		p.notify()
	}
	return len(b), nil
}

// flush keeps a last line without newline; p.mu is held.
func (w *lineSink) flush() {
	if len(w.partial) > 0 {
		w.p.lines = append(w.p.lines, w.prefix+string(w.partial))
		w.partial = nil
	}
}

// maxLines bounds what is kept of a process' output.
const maxLines = 100000

func (p *proc) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) exitState() string {
	if !p.exited() {
		return "running"
	}
	if p.waitErr != nil {
		return p.waitErr.Error()
	}
	return "exit status 0"
}

// signal sends sig to the process by its PID, unless it was reaped.
func (p *proc) signal(sig syscall.Signal) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
}

// stop ends the process: SIGTERM, then SIGKILL after stopGrace, and waits
// until it is reaped.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.t.Errorf("%s: pid %d not reaped after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// snapshot returns the lines so far, whether the process has exited, and a
// channel closed on the next change.
func (p *proc) snapshot() ([]string, bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...), p.exited(), p.changed
}

// output is everything the process printed, for failure reports.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, l := range p.lines {
		b.WriteString("  | ")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for _, w := range []*lineSink{p.out, p.errs} {
		if len(w.partial) > 0 {
			fmt.Fprintf(&b, "  | %s%s\n", w.prefix, w.partial)
		}
	}
	return b.String()
}

// waitLine waits until the process prints a line matching ok, and returns
// it. It fails the test if the process exits first or stepTimeout passes.
func (p *proc) waitLine(what string, ok func(string) bool) string {
	p.t.Helper()
	l, err := p.tryWaitLine(ok, stepTimeout)
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
	return l
}

func (p *proc) tryWaitLine(ok func(string) bool, d time.Duration) (string, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		lines, exited, changed := p.snapshot()
		for _, l := range lines {
			if ok(l) {
				return l, nil
			}
		}
		if exited {
			return "", fmt.Errorf("process exited (%s) first", p.exitState())
		}
		select {
		case <-changed:
		case <-timer.C:
			return "", fmt.Errorf("timed out after %v", d)
		}
	}
}

// wait waits for the process to exit by itself and returns its exit error.
func (p *proc) wait() error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(stepTimeout):
		p.t.Fatalf("%s: still running after %v", p.name, stepTimeout)
	}
	return nil
}

// xmlEscape escapes s for XML character data and attribute values.
func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// sha1Hex is the lowercase hex SHA-1 of b.
func sha1Hex(b []byte) string {
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

// event is one JSON line of the slixmpp driver.
type event map[string]any

func (ev event) str(k string) string {
	s, _ := ev[k].(string)
	return s
}

// events parses the JSON lines printed so far.
func (p *proc) events() []event {
	lines, _, _ := p.snapshot()
	var out []event
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var ev event
		if json.Unmarshal([]byte(l), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits for a JSON line {"event": name, ...} that satisfies ok
// (nil: any).
func (p *proc) waitEvent(name string, ok func(event) bool) event {
	p.t.Helper()
	var found event
	p.waitLine(fmt.Sprintf("event %q", name), func(l string) bool {
		var ev event
		if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &ev) != nil {
			return false
		}
		if ev.str("event") == name && (ok == nil || ok(ev)) {
			found = ev
			return true
		}
		return false
	})
	return found
}

// event returns the first printed event called name, or nil.
func (p *proc) event(name string) event {
	for _, ev := range p.events() {
		if ev.str("event") == name {
			return ev
		}
	}
	return nil
}

// result waits for the driver to exit and returns its final
// {"result": ...} line: ok and, on failure, the reason.
func (p *proc) result() (bool, string) {
	p.t.Helper()
	err := p.wait()
	for _, ev := range p.events() {
		if r, ok := ev["result"].(string); ok {
			if r == "ok" && err != nil {
				return false, fmt.Sprintf("result ok but %v", err)
			}
			return r == "ok", ev.str("reason")
		}
	}
	return false, fmt.Sprintf("no result line (%v)", err)
}

// succeed waits for the driver to exit with {"result": "ok"}.
func (p *proc) succeed() {
	p.t.Helper()
	if ok, reason := p.result(); !ok {
		p.t.Fatalf("%s failed: %s", p.name, reason)
	}
}
