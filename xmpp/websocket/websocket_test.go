package websocket_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	ws "github.com/coder/websocket"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/websocket"
	"gatehouse/xmpp/xmpptest"
)

func webServer(t *testing.T) *xmpptest.TestServer {
	t.Helper()
	ts := xmpptest.RunServer(t, xmpptest.WithWeb())
	ts.AddUser(t, "alice", "alice password")
	ts.AddUser(t, "bob", "bob password")
	return ts
}

// TestWebSocketMessaging: a client over WebSocket logs in with SCRAM (and
// with channel binding from the HTTPS connection), exchanges messages
// with a TCP client and closes cleanly with <close/>.
func TestWebSocketMessaging(t *testing.T) {
	ts := webServer(t)
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
			alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{WebSocket: true, Mechanism: mech, Resource: "web"})
			if alice.Features.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") != nil {
				t.Fatal("STARTTLS offered over wss")
			}
			alice.Sendf(`<message to='%s' type='chat' id='m1'><body>hello from the web</body></message>`, bob.JID)
			if m := bob.Expect(xmpptest.IsMessage("hello from the web")); !m.From.Equal(alice.JID) {
				t.Fatalf("from %s, want %s", m.From, alice.JID)
			}
			bob.Sendf(`<message to='%s' type='chat'><body>hello &lt;web&gt;</body></message>`, alice.JID)
			alice.Expect(xmpptest.IsMessage("hello <web>"))
			alice.Ping()
			s := ts.Sessions().Get(alice.JID)
			if s == nil || s.Info.TLSVersion == "" {
				t.Fatalf("session %v does not record the HTTPS connection's TLS", s)
			}
			alice.Close()
		})
	}
}

// TestWebSocketResume: stream management over WebSocket; the WebSocket is
// cut without a closing handshake, messages sent meanwhile are delivered
// exactly once on a new WebSocket after resumption.
func TestWebSocketResume(t *testing.T) {
	ts := webServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{WebSocket: true, Resource: "phone", SM: true, NoAutoAck: true})
	bob.Sendf(`<message to='%s' type='chat'><body>m1</body></message>`, phone.JID)
	phone.Expect(xmpptest.IsMessage("m1"))
	handled := phone.Handled()
	phone.Drop()
	for {
		d, changed := ts.C2S().Detached(phone.JID)
		if d {
			break
		}
		select {
		case <-changed:
		case <-time.After(xmpptest.Timeout):
			t.Fatal("session not detached")
		}
	}
	bob.Sendf(`<message to='%s' type='chat'><body>m2</body></message>`, phone.JID)
	bob.Ping()
	again := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{WebSocket: true, Resource: "phone", Resume: phone.SMID, ResumeH: handled, NoAutoAck: true})
	if again.Resumed == nil {
		t.Fatalf("resume failed: %s", again.ResumeFailed)
	}
	again.Expect(xmpptest.IsMessage("m2"))
	again.Ping()
	again.ExpectNone(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage }, 0)
}

// TestWebSocketBadInput: an ill-formed message ends the stream with the
// RFC 6120 error, carried in RFC 7395 framing.
func TestWebSocketBadInput(t *testing.T) {
	ts := webServer(t)
	tests := []struct{ name, send, cond string }{
		{"not well-formed", `<message xmlns='jabber:client'><body>x</message>`, "not-well-formed"},
		{"unsupported version", `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='0.9'/>`, "unsupported-version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, ts)
			ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
			defer cancel()
			if !strings.HasPrefix(tc.send, "<open") {
				write(t, c, `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`)
				expectPrefix(t, c, "<open ")
				expectPrefix(t, c, "<stream:features")
			}
			write(t, c, tc.send)
			for {
				_, msg, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("connection ended before the stream error: %v", err)
				}
				if strings.HasPrefix(string(msg), "<stream:error") {
					if !strings.Contains(string(msg), "<"+tc.cond+" ") {
						t.Fatalf("stream error %s, want %s", msg, tc.cond)
					}
					break
				}
			}
			expectPrefix(t, c, "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
		})
	}
}

// TestWebSocketNeedsSubprotocol: RFC 7395 §3.2.
func TestWebSocketNeedsSubprotocol(t *testing.T) {
	ts := webServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	c, _, err := ws.Dial(ctx, "wss://"+ts.WebAddr()+"/xmpp-websocket", &ws.DialOptions{HTTPClient: httpClient(ts)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, _, err = c.Read(ctx)
	if ws.CloseStatus(err) != ws.StatusProtocolError {
		t.Fatalf("read without subprotocol: %v, want close status %d", err, ws.StatusProtocolError)
	}
}

// TestHostMeta: XEP-0156 discovery in XRD and JRD for hosted domains only.
func TestHostMeta(t *testing.T) {
	ts := webServer(t)
	hc := httpClient(ts)
	want := "wss://localhost:" + ts.WebAddr()[strings.LastIndex(ts.WebAddr(), ":")+1:] + "/xmpp-websocket"
	get := func(path, host string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+ts.WebAddr()+path, nil)
		req.Host = host
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/.well-known/host-meta", "localhost")
	var xrd struct {
		Links []struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"Link"`
	}
	if err := xml.Unmarshal([]byte(body), &xrd); err != nil || resp.StatusCode != 200 {
		t.Fatalf("host-meta: %d %v\n%s", resp.StatusCode, err, body)
	}
	if len(xrd.Links) != 1 || xrd.Links[0].Rel != websocket.RelWebSocket || xrd.Links[0].Href != want {
		t.Fatalf("host-meta links %+v, want %s", xrd.Links, want)
	}
	resp, body = get("/.well-known/host-meta.json", "localhost:443")
	var jrd struct {
		Links []struct{ Rel, Href string } `json:"links"`
	}
	if err := json.Unmarshal([]byte(body), &jrd); err != nil || resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("host-meta.json: %d %v %v\n%s", resp.StatusCode, err, resp.Header, body)
	}
	if len(jrd.Links) != 1 || jrd.Links[0].Href != want {
		t.Fatalf("host-meta.json links %+v, want %s", jrd.Links, want)
	}
	if resp, _ := get("/.well-known/host-meta", "other.example"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("host-meta for a domain not hosted: %d", resp.StatusCode)
	}
}

// TestWebSocketShutdown: a server shutdown ends WebSocket streams with
// system-shutdown, like TCP ones.
func TestWebSocketShutdown(t *testing.T) {
	ts := webServer(t)
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{WebSocket: true})
	ts.Stop()
	if cond := alice.WaitClosed(); cond != "system-shutdown" {
		t.Fatalf("stream error %q, want system-shutdown", cond)
	}
}

func httpClient(ts *xmpptest.TestServer) *http.Client {
	return &http.Client{Timeout: xmpptest.Timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.Roots, ServerName: "localhost"}}}
}

func rawDial(t *testing.T, ts *xmpptest.TestServer) *ws.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	c, _, err := ws.Dial(ctx, "wss://"+ts.WebAddr()+"/xmpp-websocket", &ws.DialOptions{
		HTTPClient: httpClient(ts), Subprotocols: []string{websocket.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func write(t *testing.T, c *ws.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	if err := c.Write(ctx, ws.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func expectPrefix(t *testing.T, c *ws.Conn, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	_, msg, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("waiting for %s: %v", prefix, err)
	}
	if !strings.HasPrefix(string(msg), prefix) {
		t.Fatalf("got %s, want %s...", msg, prefix)
	}
	return string(msg)
}
