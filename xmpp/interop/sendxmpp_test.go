package interop

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/xmpptest"
)

// go-sendxmpp (Debian 0.5.6) has no option for a CA file; Go's crypto/x509
// reads SSL_CERT_FILE and SSL_CERT_DIR, so the server certificate is the
// only root it trusts. It checks the certificate against the JID's domain.
func (e *env) sendxmppEnv(t *testing.T, ca string) []string {
	return []string{"HOME=" + t.TempDir(), "SSL_CERT_FILE=" + ca, "SSL_CERT_DIR=" + t.TempDir()}
}

// sendxmppArgs are the login options: -d prints the XML the client
// receives, which shows the JID it bound.
func (e *env) sendxmppArgs(t *testing.T, user string, direct bool) []string {
	bin := requireCmd(t, "go-sendxmpp")
	port := e.port
	args := []string{bin, "-d", "--timeout", "10", "-u", e.bare(user), "-p", users[user]}
	if direct {
		port = e.tlsPort
		args = append(args, "-t")
	}
	return append(args, "-j", net.JoinHostPort(e.host, port))
}

var boundRe = regexp.MustCompile(`<jid>([^<]+)</jid>`)

// sendxmppJID finds the full JID go-sendxmpp bound in its -d output.
func sendxmppJID(t *testing.T, p *proc) jid.JID {
	t.Helper()
	l := p.waitLine("the bound JID", boundRe.MatchString)
	j, err := jid.Parse(boundRe.FindStringSubmatch(l)[1])
	if err != nil {
		t.Fatalf("%s: bound JID: %v", p.name, err)
	}
	return j
}

// TestSendxmppSend sends with go-sendxmpp to a user logged in with the
// xmpptest raw client, which must get the body from go-sendxmpp's JID.
func TestSendxmppSend(t *testing.T) {
	interopTest(t)
	requireCmd(t, "go-sendxmpp")
	e := newEnv(t)
	bob := e.online(t, "bob", "pc")
	tests := []struct {
		name   string
		user   string
		direct bool
		to     string
		body   string
	}{
		{"STARTTLS to bare JID", "alice", false, e.bare("bob"), `plain text <&> "quotes" ☃`},
		{"direct TLS to full JID", "alice", true, bob.JID.String(), "over direct TLS"},
		{"non-ASCII password", "carol", false, e.bare("bob"), "from carol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := filepath.Join(t.TempDir(), "body.txt")
			if err := os.WriteFile(msg, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append(e.sendxmppArgs(t, tc.user, tc.direct), "-m", msg, tc.to)
			p := start(t, "go-sendxmpp "+tc.user, e.sendxmppEnv(t, e.ca), args...)
			from := sendxmppJID(t, p)
			if err := p.wait(); err != nil {
				t.Fatalf("go-sendxmpp: %v", err)
			}
			m := bob.Expect(xmpptest.IsMessage(tc.body))
			if !m.From.Equal(from) || from.Bare().String() != e.bare(tc.user) {
				t.Fatalf("bob got the message from %s, want %s (%s)", m.From, from, e.bare(tc.user))
			}
			if m.Type != "chat" {
				t.Fatalf("type %q: %s", m.Type, m)
			}
		})
	}

	t.Run("untrusted certificate", func(t *testing.T) {
		const body = "must not arrive"
		msg := filepath.Join(t.TempDir(), "body.txt")
		if err := os.WriteFile(msg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append(e.sendxmppArgs(t, "alice", false), "-m", msg, e.bare("bob"))
		p := start(t, "go-sendxmpp untrusted", e.sendxmppEnv(t, writeStrangerCA(t)), args...)
		if err := p.wait(); err == nil {
			t.Fatal("go-sendxmpp succeeded with a certificate it must not trust")
		}
		if out := p.output(); !strings.Contains(out, "certificate") {
			t.Fatalf("failure does not name the certificate:\n%s", out)
		}
		// go-sendxmpp has exited: anything it sent has been routed by now.
		bob.Ping()
		bob.ExpectNone(xmpptest.IsMessage(body), 200*time.Millisecond)
	})
}

// TestSendxmppListen runs go-sendxmpp -l as bob and sends to it from the
// xmpptest raw client, to bob's full JID and to his bare JID; each must be
// printed as "<time> alice@localhost: <body>".
func TestSendxmppListen(t *testing.T) {
	interopTest(t)
	requireCmd(t, "go-sendxmpp")
	e := newEnv(t)
	for _, direct := range []bool{false, true} {
		name := "STARTTLS"
		if direct {
			name = "direct TLS"
		}
		t.Run(name, func(t *testing.T) {
			args := append(e.sendxmppArgs(t, "bob", direct), "-l")
			p := start(t, "go-sendxmpp -l bob", e.sendxmppEnv(t, e.ca), args...)
			bobJID := sendxmppJID(t, p)
			// It prints nothing when ready: wait until the server has its
			// initial presence, so bare-JID messages are delivered live.
			s := e.waitSession(t, "bob", "available as "+bobJID.String(), func(s *sessions.Session) bool {
				return s.JID.Equal(bobJID) && s.Available()
			})
			// Debian's go-sendxmpp 0.5.6 knows no SCRAM and logs in with PLAIN.
			t.Logf("go-sendxmpp: %s, %s, %s", bobJID, s.Info.Mechanism, s.Info.TLSVersion)
			alice := e.dial(t, "alice", "desk")
			for _, m := range []struct{ to, body string }{
				{bobJID.String(), "to your full JID"},
				{e.bare("bob"), "to your bare JID ☃"},
			} {
				alice.Sendf(`<message to='%s' type='chat'><body>%s</body></message>`, m.to, xmlEscape(m.body))
				suffix := " " + e.bare("alice") + ": " + m.body
				line := p.waitLine("the message "+m.body, func(l string) bool { return strings.HasSuffix(l, suffix) })
				stamp, err := time.Parse(time.RFC3339, strings.TrimSuffix(line, suffix))
				if err != nil || time.Since(stamp) > time.Minute || time.Until(stamp) > time.Minute {
					t.Fatalf("listener line %q: bad time (%v)", line, err)
				}
			}
			// Nothing came through offline storage.
			if strings.Contains(p.output(), "urn:xmpp:delay") {
				t.Fatalf("a message was delivered from offline storage:\n%s", p.output())
			}
		})
	}
}
