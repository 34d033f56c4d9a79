package server_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// scrape returns the value of the sample matching pattern (a regexp over
// the whole line before the value).
func scrape(t *testing.T, addr, pattern string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + pattern + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no sample %s in:\n%s", pattern, body)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMetrics(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Metrics.Listen = "127.0.0.1:0"
		c.Components.Transports = []config.Component{{Domain: "irc.localhost", Secret: "0123456789abcdef0123", Type: "irc"}}
	})
	addr := ts.MetricsAddr()
	if addr == "" {
		t.Fatal("metrics not listening")
	}
	ts.AddUser(t, "alice", "correct horse")
	ts.AddUser(t, "bob", "battery staple")
	if _, err := ts.TryDial(t, "alice", "wrong password", xmpptest.ClientOptions{}); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	alice := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{})
	bob := ts.Dial(t, "bob", "battery staple", xmpptest.ClientOptions{})
	alice.Sendf(`<message to='%s' type='chat'><body>hello</body></message>`, bob.JID)
	bob.Expect(xmpptest.IsMessage("hello"))
	// To a transport that is not connected: crosses the boundary, then
	// bounces.
	alice.Send(`<message to='nick@irc.localhost' type='chat' id='x1'><body>out</body></message>`)
	alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Type == "error" })

	checks := []struct {
		pattern string
		min     float64
	}{
		{`gatehouse_connections\{kind="c2s"\}`, 2},
		{`gatehouse_auth_failures_total`, 1},
		{`gatehouse_stanzas_routed_total\{from="local",to="local"\}`, 1},
		{`gatehouse_stanzas_routed_total\{from="local",to="transport"\}`, 1},
		{`gatehouse_boundary_decisions_total\{rule="[^"]*",verdict="allow"\}`, 1},
		{`gatehouse_archive_commit_seconds_count`, 1},
	}
	for _, c := range checks {
		if v := scrape(t, addr, c.pattern); v < c.min {
			t.Errorf("%s = %v, want at least %v", c.pattern, v, c.min)
		}
	}
	// An inactive client's held chat state (XEP-0352) is queued for it.
	bob.Send(`<inactive xmlns='urn:xmpp:csi:0'/>`)
	bob.Ping()
	alice.Sendf(`<message to='%s' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, bob.JID)
	alice.Ping() // the message was routed before the ping is answered
	if v := scrape(t, addr, `gatehouse_c2s_queue_depth`); v < 1 {
		t.Errorf("c2s queue depth with a held chat state = %v, want at least 1", v)
	}
	if v := scrape(t, addr, `gatehouse_connections\{kind="component"\}`); v != 0 {
		t.Errorf("component connections = %v, want 0", v)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("metrics on %s", addr)
	}
}
