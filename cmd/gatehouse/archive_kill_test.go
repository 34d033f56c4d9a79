package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/transports/component"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const helperEnv = "GATEHOUSE_ARCHIVE_HELPER_ARGS"

// TestArchiveHelperProcess is the child of TestArchiveSurvivesSIGKILL: run
// with helperEnv set it is `gatehouse` with those arguments (separated by U+001F)
// and never returns. Run normally it skips.
func TestArchiveHelperProcess(t *testing.T) {
	args := os.Getenv(helperEnv)
	if args == "" {
		t.Skip("the server process of TestArchiveSurvivesSIGKILL")
	}
	root := newRoot()
	root.SetArgs(strings.Split(args, "\x1f"))
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

const (
	killPeerDomain = "legacy.localhost"
	killPeerSecret = "kill-test-secret-0123456789abcdef"
)

// gatehouseProcess is `gatehouse serve` running as a separate process.
type gatehouseProcess struct {
	cmd           *exec.Cmd
	c2s, comp     string
	exited        chan struct{}
	stderrMu      sync.Mutex
	stderr        strings.Builder
	readyOrExited chan struct{}
}

func startGatehouse(t *testing.T, cfgFile string) *gatehouseProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestArchiveHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=-c\x1f"+cfgFile+"\x1fserve")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gatehouseProcess{cmd: cmd, exited: make(chan struct{}), readyOrExited: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
	var once sync.Once
	ready := func() { once.Do(func() { close(p.readyOrExited) }) }
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.stderrMu.Lock()
			p.stderr.WriteString(line + "\n")
			var ev struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &ev) == nil {
				switch ev.Msg {
				case "c2s listening":
					p.c2s = ev.Addr
				case "components listening":
					p.comp = ev.Addr
				}
			}
			done := p.c2s != "" && p.comp != ""
			p.stderrMu.Unlock()
			if done {
				ready()
			}
		}
		_ = cmd.Wait()
		close(p.exited)
		ready()
	}()
	select {
	case <-p.readyOrExited:
	case <-time.After(30 * time.Second):
	}
	p.stderrMu.Lock()
	defer p.stderrMu.Unlock()
	if p.c2s == "" || p.comp == "" {
		t.Fatalf("gatehouse did not come up:\n%s", p.stderr.String())
	}
	return p
}

// killPeer is a raw XEP-0114 component that answers every tenth message.
type killPeer struct {
	nc  net.Conn
	wmu sync.Mutex

	mu   sync.Mutex
	got  map[string]int // bodies received
	done chan struct{}
}

func dialKillPeer(t *testing.T, addr string) *killPeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, xmpptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(xmpptest.Timeout))
	dec := xml.NewDecoder(nc)
	p := &killPeer{nc: nc, got: make(map[string]int), done: make(chan struct{})}
	p.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>`, killPeerDomain)
	id := ""
	for id == "" {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("peer: stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					id = a.Value
				}
			}
		}
	}
	p.send(`<handshake>%s</handshake>`, component.Handshake(id, []byte(killPeerSecret)))
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("peer: handshake: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if el, err := stanza.ReadElement(dec, se.Copy()); err != nil || el.Name.Local != "handshake" {
				t.Fatalf("peer: handshake refused: %v %v", el, err)
			}
			break
		}
	}
	_ = nc.SetDeadline(time.Time{})
	go func() {
		defer close(p.done)
		for {
			tok, err := dec.Token()
			if err != nil {
				return
			}
			se, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			if stanza.KindOf(se.Name.Local) == 0 {
				if _, err := stanza.ReadElement(dec, se.Copy()); err != nil {
					return
				}
				continue
			}
			st, err := stanza.Parse(dec, se.Copy())
			if err != nil {
				return
			}
			if st.Kind != stanza.KindMessage {
				continue
			}
			body := st.Body()
			p.mu.Lock()
			p.got[body]++
			n := len(p.got)
			p.mu.Unlock()
			if n%10 == 0 {
				p.send(`<message from='%s' to='%s' type='chat'><body>re: %s</body></message>`, st.To.String(), st.From.String(), body)
			}
		}
	}()
	return p
}

func (p *killPeer) send(format string, args ...any) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, _ = fmt.Fprintf(p.nc, format, args...)
}

func (p *killPeer) received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// TestArchiveSurvivesSIGKILL runs `gatehouse serve` as a process of its
// own, has alice send a bounded stream of messages to a transport and the
// transport answer some, kills the server with SIGKILL in the middle, and
// checks the archive afterwards: every message the server acknowledged
// (XEP-0198 <a/>), every message the transport received and every answer
// alice received is recorded exactly once, and the chain verifies.
func TestArchiveSurvivesSIGKILL(t *testing.T) {
	const total, killAfter, burst = 3000, 600, 50
	data := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "gatehouse.yaml")
	cfg := fmt.Sprintf(`hosts: [localhost]
data_dir: %s
log: {level: info, format: json}
c2s: {listen: ["127.0.0.1:0"], listen_tls: []}
upload: {listen: "127.0.0.1:0"}
components:
  listen: ["127.0.0.1:0"]
  transports:
    - {domain: %s, secret: %s, type: irc}
archive: {anchor_interval: 1s}
mam: {enabled: false}
`, data, killPeerDomain, killPeerSecret)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("kill test pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, data, "-c", cfgFile, "user", "add", "alice", "--password-file", pwFile)

	proc := startGatehouse(t, cfgFile)
	peer := dialKillPeer(t, proc.comp)
	certPEM, err := os.ReadFile(filepath.Join(data, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate in tls/cert.pem")
	}
	ts := &xmpptest.TestServer{Addr: proc.c2s, Roots: roots, Domain: "localhost"}
	alice := ts.Dial(t, "alice", "kill test pw", xmpptest.ClientOptions{Resource: "laptop", SM: true})
	alice.Send(`<presence/>`)
	alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence })
	h0 := alice.RequestAck()

	// Bursts with an ack request after each, sent without waiting: the
	// server works through a backlog when it is killed.
	sent := 0
	for sent < total && peer.received() < killAfter {
		for range burst {
			sent++
			alice.Sendf(`<message to='u%d@%s' type='chat' id='m-%d'><body>m-%d</body></message>`, sent%7, killPeerDomain, sent, sent)
		}
		alice.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	}
	deadline := time.Now().Add(30 * time.Second)
	for peer.received() < killAfter && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(proc.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-proc.exited
	<-peer.done
	// The highest h the server acknowledged before it died.
	acked := 0
	for {
		a, err := alice.TryExpectNonza(func(e *stanza.Element) bool { return e.Name.Local == "a" }, 200*time.Millisecond)
		if err != nil {
			break
		}
		h, _ := strconv.Atoi(a.AttrValue("h"))
		acked = max(acked, h-int(h0))
	}
	// Answers alice got before the kill: each was delivered, so recorded.
	var replies []string
	for {
		s, err := alice.TryExpect(func(s *stanza.Stanza) bool {
			return s.Kind == stanza.KindMessage && strings.HasPrefix(s.Body(), "re: ")
		}, 200*time.Millisecond)
		if err != nil {
			break
		}
		replies = append(replies, s.Body())
	}
	if acked == 0 || sent <= acked {
		t.Fatalf("load did not reach the kill as planned: sent %d, acked %d", sent, acked)
	}

	db := openRO(t, data)
	count := func(dir, body string) int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM stanzas WHERE direction = ? AND body = ?`, dir, body).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := 1; i <= acked; i++ {
		if n := count("out", fmt.Sprintf("m-%d", i)); n != 1 {
			t.Fatalf("acknowledged message m-%d is archived %d times", i, n)
		}
	}
	peer.mu.Lock()
	delivered := len(peer.got)
	for body := range peer.got {
		if n := count("out", body); n != 1 {
			peer.mu.Unlock()
			t.Fatalf("delivered message %s is archived %d times", body, n)
		}
	}
	peer.mu.Unlock()
	for _, body := range replies {
		if n := count("in", body); n != 1 {
			t.Fatalf("delivered answer %q is archived %d times", body, n)
		}
	}
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM stanzas WHERE direction = 'out'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d, acknowledged %d, delivered %d, answers received %d, archived out %d", sent, acked, delivered, len(replies), rows)
	if rows > sent {
		t.Fatalf("%d rows for %d messages sent", rows, sent)
	}
	if out := mustCLI(t, data, "-c", cfgFile, "archive", "verify"); !strings.Contains(out, "OK: the chain verifies") {
		t.Fatalf("verify after SIGKILL:\n%s", out)
	}
}
