package interop

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/s2s"
	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const (
	// ghDomain is Gatehouse's domain in these tests. The TLD is made up
	// on purpose: resolvers special-case .localhost and .test, and only
	// our DNS server knows these names.
	ghDomain = "gatehouse.interop"
	password = "interop-Secret-1"
	// startTimeout bounds a peer's start (and restart).
	startTimeout = 60 * time.Second
	// stopGrace is how long a peer has after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// pollEvery is the interval of readiness polls (a port, a file).
	pollEvery = 50 * time.Millisecond
)

func onCI() bool { return os.Getenv("CI") == "true" }

// requireCmd returns the path of a peer's binary or ends the test: skip
// outside CI, fail on CI.
func requireCmd(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := name + " not found in PATH (install with: bash .ci/deps.sh)"
		if onCI() {
			t.Fatalf("interop peer missing on CI: %s", msg)
		}
		t.Skip(msg)
	}
	return p
}

func interopTest(t *testing.T) {
	t.Helper()
	if testing.Short() && !onCI() {
		t.Skip("interop tests start real servers; skipped in -short mode")
	}
}

// freePort returns a port that was free a moment ago (the peers need
// fixed ports in their configuration files).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitPort waits until something accepts connections on port, or the
// process exits, or the timeout passes.
func waitPort(t *testing.T, port int, exited <-chan struct{}, logFile string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("the peer exited before listening on %d; log:\n%s", port, tail(logFile))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %d after %v; log:\n%s", port, startTimeout, tail(logFile))
		}
		time.Sleep(pollEvery)
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

// proc is a peer process the test started; it is stopped by its PID.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func startProc(t *testing.T, cmd *exec.Cmd, logFile string) *proc {
	t.Helper()
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p
}

// stop sends SIGTERM to the process group the test created, then SIGKILL
// after stopGrace, and waits.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(stopGrace):
			t.Errorf("process %d did not exit", pgid)
		}
	}
}

// peer is a third-party XMPP server under test.
type peer interface {
	domain() string
	// start starts the server (again, with the same data, after stop).
	start(t *testing.T)
	stop(t *testing.T)
	addUser(t *testing.T, user string)
	// login connects a client of the peer's domain.
	login(t *testing.T, user string) *xmpptest.Client
	// s2sAddr is the peer's s2s listener.
	s2sAddr() string
	// logFile is the peer's log, shown when a test fails.
	logFile() string
	// directTLS reports whether the peer publishes an _xmpps-server
	// record (XEP-0368 direct TLS).
	directTLS() bool
	// directTLSIn reports whether the peer's own link to Gatehouse, when
	// it opens one, uses Gatehouse's _xmpps-server record (direct TLS);
	// sure is false when the peer does not decide that predictably.
	directTLSIn() (direct, sure bool)
}

// peerOptions says how a peer is set up for a scenario.
type peerOptions struct {
	// trustCA: the peer trusts the test CA (our certificate verifies) and
	// requires verified certificates; otherwise it does not know the CA
	// and uses dialback.
	trustCA bool
	// deny lists domains the peer refuses.
	deny []string
}

// env is one scenario: the test CA, the DNS server, Gatehouse and a peer.
type env struct {
	ca    *s2stest.CA
	roots *x509.CertPool
	dns   *dnsServer
	gh    *xmpptest.TestServer
	peer  peer
}

// ghOptions says how Gatehouse is set up for a scenario.
type ghOptions struct {
	trustCA      bool // trust the test CA and require verified certificates
	deny         []string
	queueTimeout time.Duration
	dns          bool // resolve peers through the test DNS server
}

func newEnv(t *testing.T, o ghOptions) *env {
	t.Helper()
	e := &env{ca: s2stest.NewCA(t), dns: startDNS(t)}
	pemCA, err := os.ReadFile(e.ca.File)
	if err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(pemCA)
	cert := e.ca.Issue(t, ghDomain)
	e.gh = xmpptest.RunServer(t, s2stest.Federated(ghDomain), func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = cert.CertFile, cert.KeyFile
		if o.trustCA {
			c.S2S.CAFile = e.ca.File
			c.S2S.RequireVerifiedCerts = true
		}
		if len(o.deny) > 0 {
			c.S2S.Mode = config.FederationDenylist
			c.S2S.Deny = o.deny
		}
		if o.queueTimeout > 0 {
			c.S2S.QueueTimeout = config.Duration(o.queueTimeout)
		}
		c.S2S.ConnectTimeout = config.Duration(10 * time.Second)
		c.S2S.HandshakeTimeout = config.Duration(20 * time.Second)
	})
	e.gh.AddUser(t, "alice", password)
	st, dt := e.gh.S2SAddrs()
	e.dns.addServer(ghDomain, portOf(st[0]), targetForPeers)
	e.dns.addDirectTLS(ghDomain, portOf(dt[0]), targetForPeers)
	return e
}

func portOf(addr string) int {
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return p
}

// connect points Gatehouse at the started peer with a static route.
func (e *env) connect(t *testing.T) {
	t.Helper()
	if err := e.gh.SetS2SRoute(e.peer.domain(), e.peer.s2sAddr()); err != nil {
		t.Fatal(err)
	}
}

// useDNS makes Gatehouse find peers through the test's DNS server (SRV
// records) instead of static routes.
func (e *env) useDNS(t *testing.T) {
	t.Helper()
	if err := e.gh.SetS2SDNS(e.dns.resolver()); err != nil {
		t.Fatal(err)
	}
}

// ghLogin logs alice in to Gatehouse with roster and initial presence.
func (e *env) ghLogin(t *testing.T) *xmpptest.Client {
	t.Helper()
	c := e.gh.Dial(t, "alice", password, xmpptest.ClientOptions{Resource: "gh"})
	initial(t, c)
	return c
}

// initial fetches the roster and sends initial presence, as clients do,
// and waits for the server's echo of it.
func initial(t *testing.T, c *xmpptest.Client) {
	t.Helper()
	c.Send(`<iq type='get' id='roster0'><query xmlns='jabber:iq:roster'/></iq>`)
	c.Expect(xmpptest.IsIQ("roster0"))
	c.Send(`<presence/>`)
	c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.Equal(c.JID) })
}

// remoteClient logs in to a peer with the xmpptest client (PLAIN over TLS,
// which every peer offers whatever its password storage).
func remoteClient(t *testing.T, addr, domain string, roots *x509.CertPool, user string) *xmpptest.Client {
	t.Helper()
	ts := &xmpptest.TestServer{Addr: addr, Roots: roots, Domain: domain}
	var c *xmpptest.Client
	var err error
	// The peer may still be loading its accounts right after start.
	deadline := time.Now().Add(startTimeout)
	for {
		c, err = ts.TryDial(t, user, password, xmpptest.ClientOptions{Mechanism: "PLAIN", Resource: "peer"})
		if err == nil {
			break
		}
		var ae *xmpptest.AuthError
		if errors.As(err, &ae) || time.Now().After(deadline) {
			t.Fatalf("login %s@%s: %v", user, domain, err)
		}
		time.Sleep(10 * pollEvery)
	}
	initial(t, c)
	return c
}

func isMessage(body string) func(*stanza.Stanza) bool { return xmpptest.IsMessage(body) }

func isError(body string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Type == "error" && s.Body() == body
	}
}

// linkMethod returns the method of Gatehouse's link with the peer in dir.
func linkMethod(e *env, dir string) string {
	return linkOf(e, dir).Method
}

// linkOf returns Gatehouse's link with the peer in dir (zero if none).
func linkOf(e *env, dir string) s2s.LinkInfo {
	for _, l := range e.gh.S2S().Links() {
		if l.Direction == dir && l.Remote == e.peer.domain() {
			return l
		}
	}
	return s2s.LinkInfo{}
}

// outBidi reports whether Gatehouse's outbound link with the peer
// negotiated XEP-0288 (the peer sends back over it).
func outBidi(e *env) bool { return linkOf(e, "out").Bidi }

// waitLink polls Gatehouse's link table (no notification exists).
func waitLink(t *testing.T, e *env, dir string) string {
	t.Helper()
	deadline := time.Now().Add(xmpptest.Timeout)
	for {
		if m := linkMethod(e, dir); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s link with %s: %+v", dir, e.peer.domain(), e.gh.S2S().Links())
		}
		time.Sleep(pollEvery)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
