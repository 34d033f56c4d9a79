package interop

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // profanity's chat log is SQLite

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/xmpptest"
)

// profanity is the profanity console client (Debian 0.13, libstrophe 0.12)
// running in a tmux pane, typed into with send-keys and read with
// capture-pane, the way a person uses it. The tmux server runs in the
// foreground (-D) as the test's own child on a private socket (-L, under a
// temporary TMUX_TMPDIR), with a temporary HOME.
type profanity struct {
	t       *testing.T
	tmux    string
	sock    string
	env     []string
	home    string
	server  *proc
	panePID int
}

const profSession = "prof"

func startProfanity(t *testing.T) *profanity {
	t.Helper()
	tmuxBin := requireCmd(t, "tmux")
	profBin := requireCmd(t, "profanity")
	dir, err := os.MkdirTemp("", "ghprof") // short: the socket path must fit sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".config", "profanity"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A quiet, predictable UI: no splash, no desktop notifications, and the
	// chat log on (it is read back below).
	profrc := "[ui]\nsplash=false\n[notifications]\nmessage=false\nroom=false\ninvite=false\nsub=false\n[logging]\nchlog=true\n"
	if err := os.WriteFile(filepath.Join(home, ".config", "profanity", "profrc"), []byte(profrc), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &profanity{t: t, tmux: tmuxBin, sock: "gatehouse-interop", home: home,
		env: []string{"TMUX_TMPDIR=" + dir, "HOME=" + home}}
	p.server = start(t, "tmux server", p.env, tmuxBin, "-D", "-L", p.sock, "-f", "/dev/null")
	sockPath := filepath.Join(dir, fmt.Sprintf("tmux-%d", os.Getuid()), p.sock)
	deadline := time.Now().Add(stepTimeout)
	for {
		if fi, err := os.Stat(sockPath); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if p.server.exited() || time.Now().After(deadline) {
			t.Fatalf("tmux server did not create %s (%s)", sockPath, p.server.exitState())
		}
		time.Sleep(pollEvery)
	}
	if _, err := p.tm("new-session", "-d", "-s", profSession, "-x", "200", "-y", "50", "--",
		"env", "-i", "PATH="+os.Getenv("PATH"), "TERM=screen", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		profBin); err != nil {
		t.Fatalf("tmux new-session: %v", err)
	}
	out, err := p.tm("display-message", "-p", "-t", profSession, "#{pane_pid}")
	if err != nil {
		t.Fatalf("tmux pane pid: %v", err)
	}
	if p.panePID, err = strconv.Atoi(strings.TrimSpace(out)); err != nil {
		t.Fatalf("tmux pane pid %q: %v", out, err)
	}
	t.Logf("profanity: pid %d in tmux server pid %d", p.panePID, p.server.cmd.Process.Pid)
	// Runs before the tmux server's own cleanup (registered earlier).
	t.Cleanup(p.quit)
	p.waitScreen("profanity's start", regexp.MustCompile(`Type /help|Profanity`))
	return p
}

// tm runs a tmux client command against the private server.
func (p *profanity) tm(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.tmux, append([]string{"-L", p.sock, "-f", "/dev/null"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"}, p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tmux %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// screen is the pane's text, scrollback included, wrapped lines joined.
func (p *profanity) screen() string {
	out, _ := p.tm("capture-pane", "-p", "-J", "-t", profSession, "-S", "-1000")
	return out
}

func (p *profanity) alive() bool {
	_, err := p.tm("has-session", "-t", profSession)
	return err == nil
}

// typeLine types s and Enter.
func (p *profanity) typeLine(s string) {
	p.t.Helper()
	if _, err := p.tm("send-keys", "-t", profSession, "-l", "--", s); err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.tm("send-keys", "-t", profSession, "Enter"); err != nil {
		p.t.Fatal(err)
	}
}

// waitScreen polls the screen until re matches and returns the submatches.
func (p *profanity) waitScreen(what string, re *regexp.Regexp) []string {
	p.t.Helper()
	m, err := p.tryWaitScreen(re, stepTimeout)
	if err != nil {
		p.t.Fatalf("profanity: waiting for %s: %v", what, err)
	}
	return m
}

func (p *profanity) tryWaitScreen(re *regexp.Regexp, d time.Duration) ([]string, error) {
	deadline := time.Now().Add(d)
	for {
		if m := re.FindStringSubmatch(p.screen()); m != nil {
			return m, nil
		}
		if !p.alive() {
			return nil, fmt.Errorf("profanity exited")
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %v", d)
		}
		time.Sleep(pollEvery)
	}
}

// quit leaves with /quit, or ends profanity by its PID if that does not
// work; the tmux server (its parent) reaps it. On failure it logs the
// screen and profanity's own log.
func (p *profanity) quit() {
	if p.t.Failed() {
		p.t.Logf("profanity screen:\n%s", nonEmptyLines(p.screen()))
		if b, err := os.ReadFile(filepath.Join(p.home, ".local", "share", "profanity", "logs", "profanity.log")); err == nil {
			p.t.Logf("profanity.log:\n%s", tail(string(b), 40))
		}
	}
	if p.alive() {
		_, _ = p.tm("send-keys", "-t", profSession, "-l", "--", "/quit")
		_, _ = p.tm("send-keys", "-t", profSession, "Enter")
	}
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != 0 && processRunning(p.panePID) {
			_ = syscall.Kill(p.panePID, sig)
		}
		deadline := time.Now().Add(stopGrace)
		for processRunning(p.panePID) && time.Now().Before(deadline) {
			time.Sleep(pollEvery)
		}
		if !processRunning(p.panePID) {
			return
		}
	}
	p.t.Errorf("profanity pid %d did not exit", p.panePID)
}

// processRunning reports whether pid exists and is not a zombie waiting
// for its parent to reap it.
func processRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// login types /connect with explicit server, port and TLS mode ("force":
// STARTTLS, "legacy": direct TLS), the password, and accepts the
// self-signed certificate after checking its fingerprint is the server's.
// It returns the full JID profanity bound.
func (p *profanity) login(e *env, user, port, tlsMode string) jid.JID {
	p.t.Helper()
	p.typeLine(fmt.Sprintf("/connect %s server %s port %s tls %s", e.bare(user), e.host, port, tlsMode))
	p.waitScreen("the password prompt", regexp.MustCompile(`(?i)enter password`))
	p.typeLine(users[user])
	m := p.waitScreen("the certificate prompt", regexp.MustCompile(`Fingerprint\s*:\s*([0-9a-fA-F]+)[\s\S]*Use '/tls allow'`))
	if !strings.EqualFold(m[1], e.certSHA1) {
		p.t.Fatalf("profanity shows certificate fingerprint %s, the server's is %s", m[1], e.certSHA1)
	}
	p.typeLine("/tls allow")
	m = p.waitScreen("the login", regexp.MustCompile(`(\S+@\S+/\S+) logged in successfully`))
	j, err := jid.Parse(m[1])
	if err != nil || j.Bare().String() != e.bare(user) {
		p.t.Fatalf("logged in as %q (%v), want a resource of %s", m[1], err, e.bare(user))
	}
	return j
}

// chatLog polls profanity's SQLite chat log for a message with body and
// returns the sender as from_jid/from_resource.
func (p *profanity) chatLog(account, body string) (string, error) {
	path := filepath.Join(p.home, ".local", "share", "profanity", "database",
		strings.ReplaceAll(account, "@", "_at_"), "chatlog.db")
	deadline := time.Now().Add(stepTimeout)
	for {
		from, err := queryChatLog(path, body)
		if err == nil {
			return from, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s: no message %q: %w", path, body, err)
		}
		time.Sleep(pollEvery)
	}
}

func queryChatLog(path, body string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=2000")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var from, res string
	err = db.QueryRow("SELECT from_jid, COALESCE(from_resource, '') FROM ChatLogs WHERE message = ? ORDER BY id DESC LIMIT 1", body).Scan(&from, &res)
	if err != nil {
		return "", err
	}
	return from + "/" + res, nil
}

// TestProfanity logs profanity in (STARTTLS, then direct TLS), sends a
// message to bob (the xmpptest raw client) and shows bob's reply in its
// chat window and chat log.
func TestProfanity(t *testing.T) {
	interopTest(t)
	requireCmd(t, "tmux")
	requireCmd(t, "profanity")
	e := newEnv(t)
	bob := e.online(t, "bob", "pc")
	for _, mode := range []struct{ name, port, tls string }{
		{"STARTTLS", e.port, "force"},
		{"direct TLS", e.tlsPort, "legacy"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			p := startProfanity(t)
			alice := p.login(e, "alice", mode.port, mode.tls)
			s := e.waitSession(t, "alice", "available as "+alice.String(), func(s *sessions.Session) bool {
				return s.JID.Equal(alice) && s.Available()
			})
			// libstrophe picks the strongest SCRAM it knows and has no
			// -PLUS; it must not have fallen back to PLAIN.
			if !strings.HasPrefix(s.Info.Mechanism, "SCRAM-SHA-") {
				t.Fatalf("profanity authenticated with %q, want SCRAM", s.Info.Mechanism)
			}
			t.Logf("profanity: %s, %s, %s", alice, s.Info.Mechanism, s.Info.TLSVersion)

			sent := "hello bob, profanity here ☃ (" + mode.name + ")"
			p.typeLine("/msg " + e.bare("bob") + " " + sent)
			m := bob.Expect(xmpptest.IsMessage(sent))
			if !m.From.Equal(alice) || m.Type != "chat" {
				t.Fatalf("bob got %s, want a chat message from %s", m, alice)
			}
			p.waitScreen("the sent message", regexp.MustCompile(`me: `+regexp.QuoteMeta(sent)))

			reply := "hi alice, this is bob <&> (" + mode.name + ")"
			bob.Sendf(`<message to='%s' type='chat'><body>%s</body></message>`, e.bare("alice"), xmlEscape(reply))
			p.waitScreen("bob's message in the chat window",
				regexp.MustCompile(regexp.QuoteMeta(bob.JID.String())+`: `+regexp.QuoteMeta(reply)))
			from, err := p.chatLog(e.bare("alice"), reply)
			if err != nil {
				t.Fatal(err)
			}
			if from != bob.JID.String() {
				t.Fatalf("chat log has the message from %s, want %s", from, bob.JID)
			}
		})
	}
}

func nonEmptyLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, "  | "+strings.TrimRight(l, " "))
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
