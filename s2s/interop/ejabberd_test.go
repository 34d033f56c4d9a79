package interop

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/xmpptest"
)

const ejabberdDomain = "ejabberd.interop"

// ejabberdLibs finds Debian's ejabberd Erlang applications (ERL_LIBS).
func ejabberdLibs(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/*/ejabberd-[0-9]*")
	if len(m) == 0 {
		msg := "ejabberd's Erlang applications not found under /usr/lib/*/ejabberd-* (install with: bash .ci/deps.sh)"
		if onCI() {
			t.Fatalf("interop peer missing on CI: %s", msg)
		}
		t.Skip(msg)
	}
	return filepath.Dir(m[0])
}

// ejabberd runs Debian's ejabberd straight from erl, as the current user,
// as ejabberdctl would but without its switch to the ejabberd user: a
// private node name, cookie, Mnesia directory and logs, and an epmd of its
// own on a private port, so nothing is left behind and nothing shared is
// touched.
type ejabberd struct {
	e         *env
	erl, epmd string
	libs      string
	dir, cfg  string
	log       string
	node      string
	cookie    string
	epmdPort  int
	c2s, s2s  int
	epmdProc  *proc
	p         *proc
}

func newEjabberd(t *testing.T, e *env, o peerOptions) *ejabberd {
	t.Helper()
	j := &ejabberd{e: e, erl: requireCmd(t, "erl"), epmd: requireCmd(t, "epmd"), libs: ejabberdLibs(t), dir: t.TempDir(),
		c2s: freePort(t), s2s: freePort(t), epmdPort: freePort(t)}
	j.cfg = filepath.Join(j.dir, "ejabberd.yml")
	j.log = filepath.Join(j.dir, "ejabberd.log")
	var b [8]byte
	_, _ = rand.Read(b[:])
	j.cookie = "c" + hex.EncodeToString(b[:])
	j.node = fmt.Sprintf("ghs2s%d@localhost", j.epmdPort)
	cert := e.ca.Issue(t, ejabberdDomain)
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(j.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// With trustCA ejabberd knows the test CA (SASL EXTERNAL both ways)
	// and has no dialback; without, it does not know the CA and
	// mod_s2s_dialback authenticates.
	// An unrelated CA stands for "the public roots" that do not know ours.
	caFile, dialback := s2stest.NewCA(t).File, "  mod_s2s_dialback: {}\n"
	if o.trustCA {
		caFile, dialback = e.ca.File, ""
	}
	writeFile(t, j.cfg, fmt.Sprintf(`# Written by the Gatehouse federation interop test.
hosts:
  - %[1]s
loglevel: info
log_rotate_count: 0
certfiles:
  - %[2]q
  - %[3]q
ca_file: %[4]q
listen:
  -
    port: %[5]d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    starttls_required: true
    access: c2s
    shaper: none
  -
    port: %[6]d
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
s2s_use_starttls: required
s2s_access: s2s
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
shaper_rules:
  c2s_shaper: none
modules:
  mod_roster: {}
  mod_offline: {}
  mod_ping: {}
  mod_disco: {}
  mod_version:
    show_os: false
  mod_admin_extra: {}
%[7]s`, ejabberdDomain, cert.CertFile, cert.KeyFile, caFile, j.c2s, j.s2s, dialback))
	// Erlang's resolver: the test DNS server only (resolv_conf "" keeps
	// the system's name servers out); localhost from the hosts file (the
	// node name needs it).
	writeFile(t, filepath.Join(j.dir, "inetrc"), fmt.Sprintf(
		"{resolv_conf, \"\"}.\n{lookup, [file, dns]}.\n{nameserver, {127,0,0,1}, %d}.\n{search, []}.\n{timeout, 1000}.\n{retry, 2}.\n", e.dns.Addr().Port))
	e.dns.addServer(ejabberdDomain, j.s2s, targetForGatehouse)
	j.epmdProc = startProc(t, exec.Command(j.epmd, "-port", strconv.Itoa(j.epmdPort), "-address", "127.0.0.1"), filepath.Join(j.dir, "epmd.out"))
	t.Cleanup(func() { j.epmdProc.stop(t) })
	waitPort(t, j.epmdPort, j.epmdProc.exited, filepath.Join(j.dir, "epmd.out"))
	return j
}

func (j *ejabberd) env() []string {
	return append(os.Environ(),
		"ERL_EPMD_PORT="+strconv.Itoa(j.epmdPort), "ERL_EPMD_ADDRESS=127.0.0.1", "ERL_LIBS="+j.libs,
		"EJABBERD_CONFIG_PATH="+j.cfg, "EJABBERD_LOG_PATH="+j.log, "ERL_CRASH_DUMP_BYTES=0", "HOME="+j.dir,
		"ERL_INETRC="+filepath.Join(j.dir, "inetrc"))
}

func (j *ejabberd) domain() string  { return ejabberdDomain }
func (j *ejabberd) logFile() string { return j.log }
func (j *ejabberd) directTLS() bool { return false }

// directTLSIn: ejabberd reads both SRV records but picks among records of
// equal priority and weight at random, so its link to Gatehouse is on
// direct TLS in some runs and on STARTTLS in others.
func (j *ejabberd) directTLSIn() (direct, sure bool) { return false, false }
func (j *ejabberd) s2sAddr() string                  { return net.JoinHostPort("127.0.0.1", strconv.Itoa(j.s2s)) }

func (j *ejabberd) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(j.erl, "-sname", j.node, "-setcookie", j.cookie, "-noinput",
		"-kernel", "inet_dist_use_interface", "{127,0,0,1}", "-mnesia", "dir", strconv.Quote(filepath.Join(j.dir, "mnesia")),
		"-s", "ejabberd")
	cmd.Env, cmd.Dir = j.env(), j.dir
	j.p = startProc(t, cmd, filepath.Join(j.dir, "stdout"))
	waitPort(t, j.c2s, j.p.exited, j.log)
	waitPort(t, j.s2s, j.p.exited, j.log)
}

func (j *ejabberd) stop(t *testing.T) {
	t.Helper()
	j.p.stop(t)
	j.p = nil
}

// addUser registers over RPC from a hidden node (what `ejabberdctl
// register` does) once the node answers.
func (j *ejabberd) addUser(t *testing.T, user string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		cmd := exec.Command(j.erl, "-sname", fmt.Sprintf("reg%d@localhost", time.Now().UnixNano()%1e6), "-setcookie", j.cookie,
			"-hidden", "-noinput", "-kernel", "inet_dist_use_interface", "{127,0,0,1}", "-eval", fmt.Sprintf(
				`R = rpc:call('%s', ejabberd_admin, register, [<<"%s">>, <<"%s">>, <<"%s">>]), io:format("~p~n", [R]), halt(case R of {ok, _} -> 0; _ -> 1 end).`,
				j.node, user, ejabberdDomain, password))
		cmd.Env, cmd.Dir = j.env(), j.dir
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ejabberd register %s: %v\n%s\nlog:\n%s", user, err, out, tail(j.log))
		}
		time.Sleep(10 * pollEvery)
	}
}

func (j *ejabberd) login(t *testing.T, user string) *xmpptest.Client {
	t.Helper()
	return remoteClient(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(j.c2s)), ejabberdDomain, j.e.roots, user)
}

func TestEjabberd(t *testing.T) {
	interopTest(t)
	t.Parallel()
	requireCmd(t, "erl")
	runScenarios(t, func(t *testing.T, e *env, o peerOptions) peer { return newEjabberd(t, e, o) })
}
