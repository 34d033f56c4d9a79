package interop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gatehouse/xmpp/xmpptest"
)

const prosodyDomain = "prosody.interop"

// prosody is a Prosody server (Debian's package) in a private directory.
type prosody struct {
	e        *env
	bin, ctl string
	dir, cfg string
	log      string
	c2s, s2s int
	s2sTLS   int // direct TLS (XEP-0368), published in DNS
	p        *proc
}

func newProsody(t *testing.T, e *env, o peerOptions) *prosody {
	t.Helper()
	bin := requireCmd(t, "prosody")
	ctl := requireCmd(t, "prosodyctl")
	dir := t.TempDir()
	p := &prosody{e: e, bin: bin, ctl: ctl, dir: dir, cfg: filepath.Join(dir, "prosody.cfg.lua"),
		log: filepath.Join(dir, "prosody.log"), c2s: freePort(t), s2s: freePort(t), s2sTLS: freePort(t)}
	cert := e.ca.Issue(t, prosodyDomain)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return strconv.Quote(s) }
	var ssl strings.Builder
	fmt.Fprintf(&ssl, "{ certificate = %s; key = %s;", q(cert.CertFile), q(cert.KeyFile))
	if o.trustCA {
		fmt.Fprintf(&ssl, " cafile = %s;", q(e.ca.File))
	}
	ssl.WriteString(" }")
	secure := "false"
	if o.trustCA {
		secure = "true"
	}
	blocked := ""
	if len(o.deny) > 0 {
		// Prosody 0.12 has no built-in s2s deny list: an unknown
		// s2s_secure_domains entry cannot express it either, so the
		// refusal tests run against Gatehouse's own policy only.
		blocked = "-- deny list not supported by this Prosody"
	}
	writeFile(t, p.cfg, fmt.Sprintf(`-- Written by the Gatehouse federation interop test.
run_as_root = true
pidfile = %[1]s
data_path = %[2]s
certificates = %[3]s
log = { { levels = { min = "debug" }, to = "file", filename = %[4]s } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %[5]d }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { %[6]d }
s2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = {}
s2s_direct_tls_ports = { %[12]d }
http_ports = {}
https_ports = {}
component_ports = {}
modules_enabled = {
	"roster"; "saslauth"; "tls"; "dialback"; "s2s_auth_certs"; "disco"; "ping";
	"presence"; "version"; "posix"; "offline"; "s2s_bidi";
}
authentication = "internal_plain"
allow_registration = false
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = %[7]s
-- Only the test's DNS server: never the system resolvers.
unbound = { forward = %[8]s; resolvconf = false; hoststxt = false }
ssl = %[9]s
%[10]s
VirtualHost %[11]s
	ssl = %[9]s
`, q(filepath.Join(dir, "prosody.pid")), q(filepath.Join(dir, "data")), q(dir), q(p.log), p.c2s, p.s2s, secure,
		q(fmt.Sprintf("127.0.0.1@%d", e.dns.Addr().Port)), ssl.String(), blocked, q(prosodyDomain), p.s2sTLS))
	e.dns.addServer(prosodyDomain, p.s2s, targetForGatehouse)
	e.dns.addDirectTLS(prosodyDomain, p.s2sTLS, targetForGatehouse)
	return p
}

func (p *prosody) domain() string  { return prosodyDomain }
func (p *prosody) logFile() string { return p.log }
func (p *prosody) directTLS() bool { return true }

// directTLSIn: Prosody tries _xmpps-server before _xmpp-server.
func (p *prosody) directTLSIn() (direct, sure bool) { return true, true }
func (p *prosody) s2sAddr() string                  { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.s2s)) }

func (p *prosody) start(t *testing.T) {
	t.Helper()
	p.p = startProc(t, exec.Command(p.bin, "-F", "--config", p.cfg), p.log+".out")
	waitPort(t, p.c2s, p.p.exited, p.log)
	waitPort(t, p.s2s, p.p.exited, p.log)
}

func (p *prosody) stop(t *testing.T) {
	t.Helper()
	p.p.stop(t)
	p.p = nil
}

func (p *prosody) addUser(t *testing.T, user string) {
	t.Helper()
	cmd := exec.Command(p.ctl, "--config", p.cfg, "register", user, prosodyDomain, password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("prosodyctl register %s: %v\n%s", user, err, out)
	}
}

func (p *prosody) login(t *testing.T, user string) *xmpptest.Client {
	t.Helper()
	return remoteClient(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(p.c2s)), prosodyDomain, p.e.roots, user)
}

func TestProsody(t *testing.T) {
	interopTest(t)
	t.Parallel()
	requireCmd(t, "prosody")
	runScenarios(t, func(t *testing.T, e *env, o peerOptions) peer { return newProsody(t, e, o) })
}
