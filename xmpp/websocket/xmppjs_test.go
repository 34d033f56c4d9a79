package websocket_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// npmDir is where .ci/deps.sh installs @xmpp/client (GATEHOUSE_NPM_DIR
// overrides it).
func npmDir() string {
	if d := os.Getenv("GATEHOUSE_NPM_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "gatehouse", "npm-xmpp")
}

// startXMPPJS runs testdata/interop/xmppjs_client.mjs logged in as user.
func startXMPPJS(t *testing.T, ts *xmpptest.TestServer, user, password, resource string) *xmpptest.Proc {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("starts a Node.js client; skipped in -short mode")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		xmpptest.MissingPeer(t, "node not found in PATH")
	}
	if _, err := os.Stat(filepath.Join(npmDir(), "node_modules", "@xmpp", "client", "package.json")); err != nil {
		xmpptest.MissingPeer(t, "@xmpp/client is not installed in %s", npmDir())
	}
	port := ts.WebAddr()[strings.LastIndex(ts.WebAddr(), ":")+1:]
	return xmpptest.StartProc(t, "xmpp.js", []string{"NODE_EXTRA_CA_CERTS=" + ts.WriteCA(t)},
		node, "--no-warnings", xmpptest.InteropScript("xmppjs_client.mjs"),
		"--modules", npmDir(), "--service", "wss://localhost:"+port+"/xmpp-websocket",
		"--domain", ts.Domain, "--user", user, "--password", password, "--resource", resource)
}

func isBody(body string) func(xmpptest.Event) bool {
	return func(e xmpptest.Event) bool { return e.Str("event") == "message" && e.Str("body") == body }
}

// TestXMPPJSResume: the npm package @xmpp/client logs in over WebSocket
// with SCRAM, enables stream management, loses its WebSocket, and resumes
// on a new one: the messages sent meanwhile arrive exactly once, the
// session never ended (no unavailable presence to the account's other
// resource), and the resumed stream carries traffic both ways.
func TestXMPPJSResume(t *testing.T) {
	ts := webServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	desk := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
	desk.Send(`<presence/>`)
	desk.Ping()

	js := startXMPPJS(t, ts, "alice", "alice password", "web")
	online := js.Expect("online", xmpptest.IsEvent("online"))
	full, err := jid.Parse(online.Str("jid"))
	if err != nil || full.Resourcepart() != "web" {
		t.Fatalf("bound %q", online.Str("jid"))
	}
	js.Expect("stream management", xmpptest.IsEvent("sm"))
	sess := ts.Sessions().Get(full)

	bob.Sendf(`<message to='%s' type='chat'><body>m1</body></message>`, full)
	js.Expect("m1", isBody("m1"))
	bob.Sendf(`<message to='%s' type='chat'><body>cut</body></message>`, full)
	js.Expect("cut", xmpptest.IsEvent("cut"))
	for {
		d, changed := ts.C2S().Detached(full)
		if d {
			break
		}
		select {
		case <-changed:
		case <-time.After(xmpptest.Timeout):
			t.Fatal("the server did not notice the cut")
		}
	}
	bob.Sendf(`<message to='%s' type='chat'><body>m2</body></message>`, full)
	bob.Sendf(`<message to='%s' type='chat'><body>m3</body></message>`, full)
	bob.Ping()

	js.Command("reconnect")
	js.Expect("resumed", xmpptest.IsEvent("resumed"))
	if m := js.Expect("m3", isBody("m3")); !m.Bool("delayed") {
		t.Errorf("m3 queued during the cut came without a delay stamp")
	}
	js.Command("send " + bob.JID.String() + " back again")
	bob.Expect(xmpptest.IsMessage("back again"))
	if ts.Sessions().Get(full) != sess {
		t.Fatal("the session was replaced, not resumed")
	}
	js.Command("quit")
	js.Expect("clean exit", func(e xmpptest.Event) bool { return e.Str("result") == "ok" })

	count := map[string]int{}
	for _, e := range js.Seen {
		if e.Str("event") == "message" {
			count[e.Str("body")]++
		}
	}
	for _, b := range []string{"m1", "cut", "m2", "m3"} {
		if count[b] != 1 {
			t.Errorf("message %s arrived %d times, want once (all: %v)", b, count[b], count)
		}
	}
	// Nobody saw the session go away during the cut; it ends at quit.
	if p := desk.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(full) && s.Type == "unavailable"
	}); p == nil {
		t.Fatal("no unavailable presence at the end")
	}
	desk.ExpectNone(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(full) && s.Type == "unavailable"
	}, 0)
}
