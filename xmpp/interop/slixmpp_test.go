package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// python is Debian's interpreter: only it sees the python3-slixmpp package
// (a pyenv or venv python3 earlier in PATH does not).
const python = "/usr/bin/python3"

var (
	slixOnce    sync.Once
	slixVersion string
	slixErr     error
)

// requireSlixmpp returns the driver script's path, or ends the test when
// Debian's python3-slixmpp is missing.
func requireSlixmpp(t *testing.T) string {
	t.Helper()
	slixOnce.Do(func() {
		out, err := exec.Command(python, "-c", "import slixmpp; print(slixmpp.__version__)").Output()
		slixVersion, slixErr = strings.TrimSpace(string(out)), err
	})
	if slixErr != nil {
		missingPeer(t, "%s cannot import slixmpp (Debian package python3-slixmpp): %v", python, slixErr)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "interop", "slixmpp_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("driver script: %v", err)
	}
	return script
}

// login says how the slixmpp driver logs in.
type login struct {
	user     string
	password string // "" = the account's password
	resource string // "" = server-assigned
	direct   bool   // direct TLS (XEP-0368) instead of STARTTLS
	tls12    bool   // cap TLS at 1.2 (slixmpp's -PLUS needs tls-unique)
	mech     string // "" = SCRAM-SHA-256
	// stockCB keeps slixmpp's own channel-binding behaviour: without it the
	// driver acts as a client without channel binding (gs2 flag 'n'),
	// because slixmpp 1.8.3 sends 'y' even when -PLUS was offered, which
	// RFC 5802 makes the server refuse as a downgrade.
	stockCB bool
	ca      string // "" = the server's certificate
}

// slix starts the slixmpp driver for scenario.
func (e *env) slix(t *testing.T, name string, l login, scenario string, extra ...string) *proc {
	t.Helper()
	script := requireSlixmpp(t)
	j := e.bare(l.user)
	if l.resource != "" {
		j += "/" + l.resource
	}
	pw := l.password
	if pw == "" {
		pw = users[l.user]
	}
	mech := l.mech
	if mech == "" {
		mech = "SCRAM-SHA-256"
	}
	ca := l.ca
	if ca == "" {
		ca = e.ca
	}
	port, tlsMode := e.port, "starttls"
	if l.direct {
		port, tlsMode = e.tlsPort, "direct"
	}
	args := []string{python, script,
		"--jid", j, "--password", pw,
		"--server-host", e.host, "--port", port, "--tls", tlsMode,
		"--ca-file", ca, "--mechanism", mech,
		"--timeout", "40",
		"--scenario", scenario,
	}
	if l.tls12 {
		args = append(args, "--tls-max", "1.2")
	}
	if !l.stockCB {
		args = append(args, "--no-channel-binding")
	}
	if testing.Verbose() {
		args = append(args, "--debug")
	}
	args = append(args, extra...)
	return start(t, name, []string{"HOME=" + t.TempDir()}, args...)
}

// boundJID is the full JID the driver bound.
func boundJID(t *testing.T, p *proc) jid.JID {
	t.Helper()
	ev := p.waitEvent("bound", nil)
	j, err := jid.Parse(ev.str("jid"))
	if err != nil || j.Resourcepart() == "" {
		t.Fatalf("%s: bad bound JID %q: %v", p.name, ev.str("jid"), err)
	}
	return j
}

// waitReady waits for the driver's ready event and then for the server to
// have processed its initial presence, so bare-JID delivery reaches it.
func (e *env) waitReady(t *testing.T, p *proc, user string) jid.JID {
	t.Helper()
	j := boundJID(t, p)
	p.waitEvent("ready", nil)
	e.waitSession(t, user, "available as "+j.String(), func(s *sessions.Session) bool {
		return s.JID.Equal(j) && s.Available()
	})
	return j
}

func TestSlixmppLogin(t *testing.T) {
	interopTest(t)
	requireSlixmpp(t)
	e := newEnv(t)
	strangerCA := writeStrangerCA(t)
	tests := []struct {
		name     string
		l        login
		wantFail string // SASL condition, or "tls" for a refused certificate
	}{
		{name: "SCRAM-SHA-256 STARTTLS", l: login{user: "alice", mech: "SCRAM-SHA-256"}},
		{name: "SCRAM-SHA-256 direct TLS", l: login{user: "alice", mech: "SCRAM-SHA-256", direct: true}},
		{name: "SCRAM-SHA-256 TLS 1.2", l: login{user: "alice", mech: "SCRAM-SHA-256", tls12: true}},
		{name: "SCRAM-SHA-1", l: login{user: "bob", mech: "SCRAM-SHA-1"}},
		{name: "SCRAM-SHA-512", l: login{user: "bob", mech: "SCRAM-SHA-512"}},
		{name: "PLAIN", l: login{user: "bob", mech: "PLAIN"}},
		{name: "SCRAM-SHA-256 non-ASCII password", l: login{user: "carol", mech: "SCRAM-SHA-256"}},
		{name: "PLAIN non-ASCII password", l: login{user: "carol", mech: "PLAIN", direct: true}},
		// slixmpp 1.8.3 binds -PLUS with tls-unique only, which exists on TLS 1.2.
		{name: "SCRAM-SHA-256-PLUS tls-unique STARTTLS TLS 1.2", l: login{user: "alice", mech: "SCRAM-SHA-256-PLUS", tls12: true, stockCB: true}},
		{name: "SCRAM-SHA-256-PLUS tls-unique direct TLS 1.2", l: login{user: "alice", mech: "SCRAM-SHA-256-PLUS", tls12: true, direct: true, stockCB: true}},
		{name: "SCRAM-SHA-1-PLUS tls-unique TLS 1.2", l: login{user: "bob", mech: "SCRAM-SHA-1-PLUS", tls12: true, stockCB: true}},
		{name: "SCRAM-SHA-512-PLUS tls-unique TLS 1.2", l: login{user: "carol", mech: "SCRAM-SHA-512-PLUS", tls12: true, stockCB: true}},

		// Stock slixmpp says 'y' ("server has no channel binding") although
		// -PLUS was offered: the server must take it as a downgrade.
		{name: "channel-binding downgrade refused", l: login{user: "alice", mech: "SCRAM-SHA-256", stockCB: true}, wantFail: "not-authorized"},
		{name: "wrong password SCRAM", l: login{user: "alice", password: "not-the-password", mech: "SCRAM-SHA-256"}, wantFail: "not-authorized"},
		{name: "wrong password PLAIN", l: login{user: "alice", password: "not-the-password", mech: "PLAIN"}, wantFail: "not-authorized"},
		{name: "unknown user", l: login{user: "mallory", password: "whatever-pass", mech: "SCRAM-SHA-256"}, wantFail: "not-authorized"},
		{name: "untrusted certificate", l: login{user: "alice", ca: strangerCA}, wantFail: "tls"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := e.slix(t, "slixmpp "+tc.l.user, tc.l, "login")
			ok, reason := p.result()
			if tc.wantFail != "" {
				if ok {
					t.Fatalf("login succeeded, want failure %s", tc.wantFail)
				}
				if auth := p.event("auth"); auth != nil {
					t.Fatalf("authenticated (%v) although the login must fail", auth)
				}
				switch tc.wantFail {
				case "tls":
					if !strings.Contains(reason, "certificate") && !strings.Contains(reason, "CERTIFICATE") {
						t.Fatalf("failure %q does not name the certificate", reason)
					}
					if p.event("tls") != nil {
						t.Fatal("TLS was established with an untrusted certificate")
					}
				default:
					f := p.event("sasl_failure")
					if f == nil || f.str("condition") != tc.wantFail {
						t.Fatalf("SASL failure %v, want condition %s (reason %q)", f, tc.wantFail, reason)
					}
				}
				return
			}
			if !ok {
				t.Fatalf("login failed: %s", reason)
			}
			auth := p.event("auth")
			if auth.str("mechanism") != tc.l.mech {
				t.Fatalf("authenticated with %q, want %q", auth.str("mechanism"), tc.l.mech)
			}
			wantTLS := "TLSv1.3"
			if tc.l.tls12 {
				wantTLS = "TLSv1.2"
			}
			if auth.str("tls_version") != wantTLS {
				t.Fatalf("TLS version %q, want %q", auth.str("tls_version"), wantTLS)
			}
			if j := boundJID(t, p); j.Bare().String() != e.bare(tc.l.user) {
				t.Fatalf("bound %s, want a resource of %s", j, e.bare(tc.l.user))
			}
		})
	}
}

// TestSlixmppMessages sends chat messages both ways between two slixmpp
// clients, one on STARTTLS and one on direct TLS.
func TestSlixmppMessages(t *testing.T) {
	interopTest(t)
	requireSlixmpp(t)
	e := newEnv(t)
	tests := []struct {
		name, from, to string
		direct         bool
		body           string
	}{
		{"alice to bob", "alice", "bob", false, `hello bob <&> "quoted" 'apos' é ☃ 🚀`},
		{"bob to alice", "bob", "alice", true, "hi alice, bob here"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rcv := e.slix(t, "slixmpp receiver "+tc.to, login{user: tc.to, direct: tc.direct}, "receive",
				"--from", e.bare(tc.from), "--body", tc.body)
			e.waitReady(t, rcv, tc.to)
			snd := e.slix(t, "slixmpp sender "+tc.from, login{user: tc.from, direct: tc.direct}, "send",
				"--to", e.bare(tc.to), "--body", tc.body)
			sender := boundJID(t, snd)
			snd.succeed()
			rcv.succeed()
			got := rcv.event("received")
			if got.str("from") != sender.String() {
				t.Fatalf("message from %q, want the sender's full JID %s", got.str("from"), sender)
			}
			if got.str("body") != tc.body || got.str("type") != "chat" {
				t.Fatalf("received %v", got)
			}
			if got["delay"] != nil {
				t.Fatalf("live message carries a delay stamp: %v", got)
			}
		})
	}
}

// TestSlixmppOffline sends to a user who is offline; at login the message
// arrives with a XEP-0203 delay stamp from the server.
func TestSlixmppOffline(t *testing.T) {
	interopTest(t)
	requireSlixmpp(t)
	e := newEnv(t)
	const body = "while you were out"
	before := time.Now().Add(-time.Second)
	snd := e.slix(t, "slixmpp sender alice", login{user: "alice"}, "send", "--to", e.bare("bob"), "--body", body)
	sender := boundJID(t, snd)
	snd.succeed()
	after := time.Now().Add(time.Second)

	rcv := e.slix(t, "slixmpp offline bob", login{user: "bob", direct: true}, "offline", "--from", e.bare("alice"), "--body", body)
	rcv.succeed()
	got := rcv.event("received")
	if got.str("from") != sender.String() || got.str("body") != body {
		t.Fatalf("received %v, want body %q from %s", got, body, sender)
	}
	stamp, err := time.Parse(time.RFC3339Nano, got.str("delay"))
	if err != nil {
		t.Fatalf("delay stamp %q: %v", got.str("delay"), err)
	}
	if stamp.Before(before) || stamp.After(after) {
		t.Fatalf("delay stamp %s is not the time the message was sent (%s..%s)", stamp, before, after)
	}
	// Delivered once: a second login finds nothing stored.
	bob := e.dial(t, "bob", "again")
	bob.Send(`<presence/>`)
	bob.Ping()
	bob.ExpectNone(xmpptest.IsMessage(body), 200*time.Millisecond)
}

// TestSlixmppSubscriptionAndPresence runs the RFC 6121 subscription
// handshake between two slixmpp clients (bob approves alice and subscribes
// back) until both roster items are subscription=both, then checks that
// presence flows over the subscription.
func TestSlixmppSubscriptionAndPresence(t *testing.T) {
	interopTest(t)
	requireSlixmpp(t)
	e := newEnv(t)

	bob := e.slix(t, "slixmpp accept bob", login{user: "bob"}, "accept", "--from", e.bare("alice"))
	e.waitReady(t, bob, "bob")
	alice := e.slix(t, "slixmpp subscribe alice", login{user: "alice", direct: true}, "subscribe",
		"--to", e.bare("bob"), "--wait-mutual")
	alice.succeed()
	bob.succeed()

	// alice saw her outgoing request pending, then "to", then "both".
	var states []string
	for _, ev := range alice.events() {
		if ev.str("event") == "roster_push" && ev.str("jid") == e.bare("bob") {
			states = append(states, ev.str("subscription")+"/"+ev.str("ask"))
		}
	}
	if len(states) == 0 || states[0] != "none/subscribe" || states[len(states)-1] != "both/" {
		t.Fatalf("alice's roster pushes for bob: %v; want none+ask=subscribe first and both last", states)
	}
	for _, c := range []struct {
		p    *proc
		peer string
	}{{alice, "bob"}, {bob, "alice"}} {
		items := lastRoster(t, c.p)
		t.Logf("%s: final roster %v", c.p.name, items)
		if len(items) != 1 || items[e.bare(c.peer)] != "both" {
			t.Fatalf("%s: final roster %v, want %s with subscription both", c.p.name, items, e.bare(c.peer))
		}
	}
	// The roster is stored: a fresh session of alice reads it back.
	raw := e.dial(t, "alice", "check")
	raw.Send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	res := raw.Expect(xmpptest.IsIQ("r1"))
	items := rosterItems(res)
	if res.Type != "result" || len(items) != 1 || items[0].AttrValue("jid") != e.bare("bob") ||
		items[0].AttrValue("subscription") != "both" || items[0].AttrValue("ask") != "" {
		t.Fatalf("stored roster of alice: %s; want only bob with subscription both", res)
	}

	// Presence: bob waits for alice to come online.
	watcher := e.slix(t, "slixmpp presence bob", login{user: "bob"}, "presence", "--from", e.bare("alice"))
	e.waitReady(t, watcher, "bob")
	online := e.slix(t, "slixmpp login alice", login{user: "alice", resource: "laptop"}, "login")
	aliceJID := boundJID(t, online)
	watcher.waitEvent("peer_available", nil)
	watcher.succeed()
	online.succeed()
	seen := false
	for _, ev := range watcher.events() {
		if ev.str("event") == "presence" && ev.str("type") == "available" && ev.str("from") == aliceJID.String() {
			seen = true
		}
	}
	if !seen {
		t.Fatalf("bob saw no available presence from %s", aliceJID)
	}
}

// lastRoster returns the items of the driver's last roster event.
func lastRoster(t *testing.T, p *proc) map[string]string {
	t.Helper()
	var items map[string]string
	for _, ev := range p.events() {
		if ev.str("event") != "roster" {
			continue
		}
		items = map[string]string{}
		m, _ := ev["items"].(map[string]any)
		for k, v := range m {
			s, _ := v.(string)
			items[k] = s
		}
	}
	if items == nil {
		t.Fatalf("%s printed no roster", p.name)
	}
	return items
}

func rosterItems(res *stanza.Stanza) []*stanza.Element {
	q := res.Child("jabber:iq:roster", "query")
	if q == nil {
		return nil
	}
	var out []*stanza.Element
	for _, it := range q.Elements() {
		if it.Name.Local == "item" {
			out = append(out, it)
		}
	}
	return out
}

// TestSlixmppCarbons enables XEP-0280 carbons in slixmpp (alice/desk) and
// checks it gets a "sent" carbon of what alice/phone sends and a
// "received" carbon of what bob sends to alice/phone. The phone and bob
// are xmpptest raw clients.
func TestSlixmppCarbons(t *testing.T) {
	interopTest(t)
	requireSlixmpp(t)
	e := newEnv(t)
	const sent, received = "sent from my phone", "to your phone"

	phone := e.online(t, "alice", "phone")
	bob := e.online(t, "bob", "pc")
	desk := e.slix(t, "slixmpp carbons alice/desk", login{user: "alice", resource: "desk"}, "carbons",
		"--body", sent, "--received-body", received)
	e.waitReady(t, desk, "alice")
	desk.waitEvent("carbons_enabled", nil)

	phone.Sendf(`<message to='%s' type='chat' id='c1'><body>%s</body></message>`, e.bare("bob"), sent)
	if m := bob.Expect(xmpptest.IsMessage(sent)); !m.From.Equal(phone.JID) {
		t.Fatalf("bob got the message from %s, want %s", m.From, phone.JID)
	}
	bob.Sendf(`<message to='%s' type='chat' id='c2'><body>%s</body></message>`, phone.JID, received)
	phone.Expect(xmpptest.IsMessage(received))
	desk.succeed()

	var okSent, okReceived event
	for _, ev := range desk.events() {
		switch {
		case ev.str("event") == "carbon_ok" && ev.str("kind") == "sent":
			okSent = ev
		case ev.str("event") == "carbon_ok" && ev.str("kind") == "received":
			okReceived = ev
		case ev.str("event") == "message" && ev.str("body") == received:
			t.Fatalf("alice/desk got bob's message to alice/phone directly, not as a carbon: %v", ev)
		case strings.HasPrefix(ev.str("event"), "carbon_") && ev.str("event") != "carbon_ok" && ev.str("outer_from") != e.bare("alice"):
			t.Fatalf("carbon not from alice's bare JID: %v", ev)
		}
	}
	if okSent.str("from") != phone.JID.String() || okSent.str("to") != e.bare("bob") {
		t.Fatalf("sent carbon %v, want from %s to %s", okSent, phone.JID, e.bare("bob"))
	}
	if okReceived.str("from") != bob.JID.String() || okReceived.str("to") != phone.JID.String() {
		t.Fatalf("received carbon %v, want from %s to %s", okReceived, bob.JID, phone.JID)
	}
}

// writeStrangerCA writes a self-signed certificate for localhost that the
// server does not use: a client trusting only it must refuse the server.
func writeStrangerCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"stranger"}},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "stranger.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
