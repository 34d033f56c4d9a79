package c2s_test

import (
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func TestLoginMechanisms(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	tests := []struct {
		name string
		o    xmpptest.ClientOptions
	}{
		{"SCRAM-SHA-1", xmpptest.ClientOptions{Mechanism: "SCRAM-SHA-1"}},
		{"SCRAM-SHA-256", xmpptest.ClientOptions{Mechanism: "SCRAM-SHA-256"}},
		{"SCRAM-SHA-1-PLUS tls-exporter", xmpptest.ClientOptions{Mechanism: "SCRAM-SHA-1-PLUS", TLS13: true}},
		{"SCRAM-SHA-256-PLUS tls-exporter", xmpptest.ClientOptions{Mechanism: "SCRAM-SHA-256-PLUS", TLS13: true}},
		{"SCRAM-SHA-256 over TLS 1.2", xmpptest.ClientOptions{Mechanism: "SCRAM-SHA-256", TLS12: true}},
		{"PLAIN", xmpptest.ClientOptions{Mechanism: "PLAIN"}},
		{"direct TLS", xmpptest.ClientOptions{DirectTLS: true}},
		{"resource", xmpptest.ClientOptions{Resource: "desk"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.Dial(t, "alice", "correct horse", tc.o)
			if c.JID.Bare().String() != "alice@localhost" || c.JID.Resourcepart() == "" {
				t.Fatalf("bound %s", c.JID)
			}
			if tc.o.Resource != "" && c.JID.Resourcepart() != tc.o.Resource {
				t.Fatalf("resource %q", c.JID.Resourcepart())
			}
			c.Ping()
		})
	}
}

func TestAuthFailures(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	for _, tc := range []struct{ user, pw, mech string }{
		{"alice", "wrong", "SCRAM-SHA-256"},
		{"nobody", "whatever", "SCRAM-SHA-256"},
		{"alice", "wrong", "PLAIN"},
	} {
		_, err := ts.TryDial(t, tc.user, tc.pw, xmpptest.ClientOptions{Mechanism: tc.mech})
		var ae *xmpptest.AuthError
		if !errors.As(err, &ae) || ae.Condition != "not-authorized" {
			t.Fatalf("%s/%s: err = %v, want not-authorized", tc.user, tc.mech, err)
		}
	}
	if ts.C2S().AuthFailures() != 3 {
		t.Fatalf("auth failures counted: %d", ts.C2S().AuthFailures())
	}
}

// rawStream opens a TCP connection, sends a stream header and returns the
// connection and a decoder positioned after the server's header.
func rawStream(t *testing.T, addr, header string) (net.Conn, *xml.Decoder) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(xmpptest.Timeout))
	if _, err := io.WriteString(nc, header); err != nil {
		t.Fatal(err)
	}
	return nc, xml.NewDecoder(nc)
}

// streamError reads until the stream error and returns its condition.
func streamError(t *testing.T, d *xml.Decoder) string {
	t.Helper()
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("no stream error before %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "error" || se.Name.Space != stanza.NSStream {
			continue
		}
		el, err := stanza.ReadElement(d, se)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range el.Elements() {
			if c.Name.Space == stanza.NSStreamErr && c.Name.Local != "text" {
				return c.Name.Local
			}
		}
	}
}

const goodHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`

func TestStreamHeaderErrors(t *testing.T) {
	ts := xmpptest.RunServer(t)
	tests := []struct{ name, header, want string }{
		{"unknown host", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' version='1.0'>`, "host-unknown"},
		{"bad default namespace", `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`, "invalid-namespace"},
		{"bad stream namespace", `<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>`, "invalid-namespace"},
		{"old version", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>`, "unsupported-version"},
		{"not xml", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "not-well-formed"},
		{"auth before tls", goodHeader + `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>`, "policy-violation"},
		{"stanza before auth", goodHeader + `<message to='a@localhost'><body>x</body></message>`, "policy-violation"},
		{"dtd", `<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY x 'y'>]>` + goodHeader[len(`<?xml version='1.0'?>`):], "restricted-xml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, d := rawStream(t, ts.Addr, tc.header)
			if got := streamError(t, d); got != tc.want {
				t.Fatalf("stream error %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBadInputAfterLogin checks each hostile input ends only its own stream
// with the right error, while another user's session carries on.
func TestBadInputAfterLogin(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Limits.MaxStanzaBytes = 64 << 10
		c.Limits.MaxDepth = 16
	})
	ts.AddUser(t, "alice", "correct horse")
	ts.AddUser(t, "bob", "battery staple")
	bob := ts.Dial(t, "bob", "battery staple", xmpptest.ClientOptions{})
	big := "<message to='bob@localhost'><body>" + strings.Repeat("A", 10<<20) + "</body></message>"
	tests := []struct{ name, input, want string }{
		{"malformed", "<message><body>unclosed</message>", "not-well-formed"},
		{"10 MB stanza", big, "policy-violation"},
		{"deep nesting", "<message>" + strings.Repeat("<x xmlns='urn:x'>", 100), "policy-violation"},
		{"comment", "<message><!-- hi --></message>", "restricted-xml"},
		{"processing instruction", "<?foo bar?>", "restricted-xml"},
		{"unknown top-level", "<foo xmlns='urn:foo'/>", "unsupported-stanza-type"},
		{"spoofed from", "<message from='bob@localhost/x' to='bob@localhost'><body>x</body></message>", "invalid-from"},
		{"bad utf-8", "<message><body>\xff\xfe</body></message>", "not-well-formed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{})
			go alice.Send(tc.input) // a 10 MB write blocks until the server stops reading
			if got := alice.WaitClosed(); got != tc.want {
				t.Fatalf("stream error %q, want %q", got, tc.want)
			}
			bob.Ping()
		})
	}
	// Nothing from the failed streams reached bob.
	bob.ExpectNone(xmpptest.IsMessage(strings.Repeat("A", 10<<20)), 100*time.Millisecond)
}

func TestStanzaErrors(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	alice := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{})
	tests := []struct {
		name, send, id string
		want           stanza.Condition
	}{
		{"unknown iq payload to server", `<iq type='get' id='q1' to='localhost'><query xmlns='urn:example:unknown'/></iq>`, "q1", stanza.ServiceUnavailable},
		{"iq to offline full jid", `<iq type='get' id='q2' to='alice@localhost/nowhere'><ping xmlns='urn:xmpp:ping'/></iq>`, "q2", stanza.ServiceUnavailable},
		{"iq to missing user", `<iq type='get' id='q3' to='ghost@localhost'><query xmlns='jabber:iq:version'/></iq>`, "q3", stanza.ServiceUnavailable},
		{"iq with two payloads", `<iq type='get' id='q4'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>`, "q4", stanza.BadRequest},
		{"bad iq type", `<iq type='fetch' id='q5'><a xmlns='urn:a'/></iq>`, "q5", stanza.BadRequest},
		{"malformed to", `<message to='a@b@c' id='q6'><body>x</body></message>`, "q6", stanza.JIDMalformed},
		{"message to missing user", `<message to='ghost@localhost' id='q7' type='chat'><body>x</body></message>`, "q7", stanza.ServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice.Send(tc.send)
			got := alice.Expect(func(s *stanza.Stanza) bool { return s.ID == tc.id })
			if got.Type != "error" || got.ErrorCondition() != tc.want {
				t.Fatalf("got %s, want error %s", got, tc.want)
			}
		})
	}
}

func TestMessagesAndOffline(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	ts.AddUser(t, "bob", "battery staple")
	alice := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "desk"})
	alice.Send(`<presence/>`)
	// Offline: bob is not logged in yet.
	alice.Send(`<message to='bob@localhost' type='chat' id='o1'><body>while you were out</body></message>`)
	alice.Ping()
	bob := ts.Dial(t, "bob", "battery staple", xmpptest.ClientOptions{})
	bob.Send(`<presence/>`)
	m := bob.Expect(xmpptest.IsMessage("while you were out"))
	d := m.Child(stanza.NSDelay, "delay")
	if d == nil || d.AttrValue("stamp") == "" || m.From.String() != "alice@localhost/desk" {
		t.Fatalf("offline message without delay stamp or sender: %s", m)
	}
	// Both ways, online.
	bob.Send(`<message to='alice@localhost' type='chat'><body>hi alice</body></message>`)
	if got := alice.Expect(xmpptest.IsMessage("hi alice")); got.From.Bare().String() != "bob@localhost" {
		t.Fatalf("from %s", got.From)
	}
	alice.Send(`<message to='` + bob.JID.String() + `' type='chat'><body>hi bob</body></message>`)
	bob.Expect(xmpptest.IsMessage("hi bob"))
}

func TestResourceConflictReplaces(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	first := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "desk"})
	second := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "desk"})
	if got := first.WaitClosed(); got != "conflict" {
		t.Fatalf("old session got %q, want conflict", got)
	}
	second.Ping()
}

func TestShutdownSendsSystemShutdown(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	c := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{})
	go ts.Stop()
	if got := c.WaitClosed(); got != "system-shutdown" {
		t.Fatalf("got %q", got)
	}
}

func TestIdlePingAndTimeout(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.C2S.PingInterval = config.Duration(200 * time.Millisecond)
		c.C2S.IdleTimeout = config.Duration(300 * time.Millisecond)
	})
	ts.AddUser(t, "alice", "correct horse")
	c := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{})
	ping := c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindIQ && s.Child("urn:xmpp:ping", "ping") != nil })
	if ping.Type != "get" {
		t.Fatal(ping)
	}
	// Not answering ends the stream with connection-timeout.
	if got := c.WaitClosed(); got != "connection-timeout" {
		t.Fatalf("got %q", got)
	}
}

var _ = tls.VersionTLS13
