package interop

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// stepTimeout bounds one wait for a peer.
	stepTimeout = 20 * time.Second
	// procTimeout bounds the whole life of one started program.
	procTimeout = 3 * time.Minute
	// stopGrace is how long a program has to exit after SIGTERM.
	stopGrace = 5 * time.Second
	// pollEvery paces waits on state that has no notification.
	pollEvery = 20 * time.Millisecond
)

func onCI() bool { return os.Getenv("CI") == "true" }

// interopTest skips in -short mode outside CI.
func interopTest(t *testing.T) {
	t.Helper()
	if testing.Short() && !onCI() {
		t.Skip("interop tests start real programs; skipped in -short mode")
	}
}

// requireCmd returns the path of a program, or fails on CI and skips
// elsewhere when it is missing.
func requireCmd(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Daemons such as ngircd live in /usr/sbin, which a non-root
		// PATH often lacks.
		p, err = exec.LookPath("/usr/sbin/" + name)
	}
	if err != nil {
		msg := fmt.Sprintf("%s not found in PATH (install with: bash .ci/deps.sh)", name)
		if onCI() {
			t.Fatalf("interop peer missing on CI: %s", msg)
		}
		t.Skip(msg)
	}
	return p
}

// proc is a program started by a test: its output is kept for failure
// reports and it is stopped by PID when the test ends.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	out strings.Builder
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out.Len() < 1<<20 {
		p.out.Write(b)
	}
	return len(b), nil
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs argv in dir with a minimal environment.
func start(t *testing.T, name, dir string, argv ...string) *proc {
	t.Helper()
	return startEnv(t, name, dir, nil, argv...)
}

// startEnv is start with extra environment variables.
func startEnv(t *testing.T, name, dir string, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "HOME=" + dir}, env...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = p, p, nil
	cmd.WaitDelay = stopGrace
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", name, err)
	}
	t.Logf("%s: started pid %d: %s", name, cmd.Process.Pid, strings.Join(argv, " "))
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	kill := time.AfterFunc(procTimeout, func() { p.signal(syscall.SIGKILL) })
	t.Cleanup(func() {
		kill.Stop()
		p.stop()
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", name, cmd.Process.Pid, p.output())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits for the
// process to be reaped.
func (p *proc) stop() {
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

// waitFor polls cond until it holds, the process exits or stepTimeout.
func (p *proc) waitFor(what string, cond func() bool) {
	p.t.Helper()
	waitUntil(p.t, what, func() bool {
		if p.exited() {
			p.t.Fatalf("%s exited while waiting for %s", p.name, what)
		}
		return cond()
	})
}

// waitUntil polls cond (for state without a notification) until it holds
// or stepTimeout passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollEvery)
	}
}

// ircClient is an IRC user speaking raw IRC (RFC 1459/2812) over TCP.
type ircClient struct {
	t     *testing.T
	nc    net.Conn
	lines chan string
	mu    sync.Mutex
	seen  []string
}

func dialIRC(t *testing.T, addr, nick string) *ircClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, stepTimeout)
	if err != nil {
		t.Fatalf("irc: %v", err)
	}
	c := &ircClient{t: t, nc: nc, lines: make(chan string, 1024)}
	t.Cleanup(func() { _ = nc.Close() })
	go c.readLoop()
	c.send("NICK " + nick)
	c.send("USER " + nick + " 0 * :Gatehouse test partner")
	c.expect("welcome (001)", func(l string) bool { return ircCommand(l) == "001" })
	return c
}

func (c *ircClient) send(line string) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(stepTimeout))
	_, _ = io.WriteString(c.nc, line+"\r\n")
}

func (c *ircClient) readLoop() {
	defer close(c.lines)
	sc := bufio.NewScanner(c.nc)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if ircCommand(l) == "PING" {
			c.send("PONG " + strings.TrimPrefix(l, "PING "))
			continue
		}
		c.lines <- l
	}
}

// expect waits for a line matching ok and returns it.
func (c *ircClient) expect(what string, ok func(string) bool) string {
	c.t.Helper()
	timer := time.NewTimer(stepTimeout)
	defer timer.Stop()
	for {
		select {
		case l, open := <-c.lines:
			if !open {
				c.t.Fatalf("irc: connection closed waiting for %s; seen:\n%s", what, c.history())
			}
			c.mu.Lock()
			c.seen = append(c.seen, l)
			c.mu.Unlock()
			if ok(l) {
				return l
			}
		case <-timer.C:
			c.t.Fatalf("irc: timed out waiting for %s; seen:\n%s", what, c.history())
		}
	}
}

func (c *ircClient) history() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.seen, "\n")
}

// ircCommand returns the command (or numeric) of a raw IRC line.
func ircCommand(l string) string {
	if strings.HasPrefix(l, ":") {
		_, l, _ = strings.Cut(l, " ")
	}
	cmd, _, _ := strings.Cut(l, " ")
	return cmd
}

// ircNick returns the nick of a line's ":nick!user@host" prefix.
func ircNick(l string) string {
	if !strings.HasPrefix(l, ":") {
		return ""
	}
	prefix, _, _ := strings.Cut(l[1:], " ")
	nick, _, _ := strings.Cut(prefix, "!")
	return nick
}
