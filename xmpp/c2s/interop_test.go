package c2s_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/xmpptest"
)

// python is Debian's interpreter: only it sees python3-slixmpp.
const python = "/usr/bin/python3"

// startSlixmpp runs testdata/interop/slixmpp_sm.py as alice/phone.
func startSlixmpp(t *testing.T, ts *xmpptest.TestServer) (*xmpptest.Proc, jid.JID) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("starts a slixmpp client; skipped in -short mode")
	}
	if err := exec.Command(python, "-c", "import slixmpp").Run(); err != nil {
		xmpptest.MissingPeer(t, "%s cannot import slixmpp (Debian package python3-slixmpp): %v", python, err)
	}
	port := ts.Addr[strings.LastIndex(ts.Addr, ":")+1:]
	p := xmpptest.StartProc(t, "slixmpp", []string{"HOME=" + t.TempDir()},
		python, xmpptest.InteropScript("slixmpp_sm.py"), "--jid", "alice@localhost/phone",
		"--password", "alice password", "--port", port, "--ca-file", ts.WriteCA(t))
	ready := p.Expect("ready", xmpptest.IsEvent("ready"))
	j, err := jid.Parse(ready.Str("jid"))
	if err != nil {
		t.Fatalf("bound %q", ready.Str("jid"))
	}
	return p, j
}

func bodyCount(p *xmpptest.Proc) map[string]int {
	n := map[string]int{}
	for _, e := range p.Seen {
		if e.Str("event") == "message" && e.Str("body") != "" {
			n[e.Str("body")]++
		}
	}
	return n
}

func slixBody(body string) func(xmpptest.Event) bool {
	return func(e xmpptest.Event) bool { return e.Str("event") == "message" && e.Str("body") == body }
}

// TestSlixmppResume: slixmpp (Debian's python3-slixmpp) with stream
// management loses its TCP connection; what is sent meanwhile arrives
// exactly once after it resumes, nothing is duplicated, and its contacts
// never saw it go offline.
func TestSlixmppResume(t *testing.T) {
	ts := smServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	desk := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
	desk.Send(`<presence/>`)
	desk.Ping()
	p, phone := startSlixmpp(t, ts)
	desk.Expect(presenceFrom("", phone))
	sess := ts.Sessions().Get(phone)

	for _, b := range []string{"m1", "m2", "m3", "m4", "m5", "m6"} {
		bob.Sendf(`<message to='%s' type='chat'><body>%s</body></message>`, phone, b)
	}
	p.Expect("m6", slixBody("m6"))
	bob.Sendf(`<message to='%s' type='chat'><body>cut</body></message>`, phone)
	p.Expect("cut", xmpptest.IsEvent("cut"))
	waitDetached(t, ts, phone)
	for _, b := range []string{"a1", "a2", "a3"} {
		bob.Sendf(`<message to='%s' type='chat'><body>%s</body></message>`, phone, b)
	}
	bob.Ping()
	p.Command("reconnect")
	p.Expect("resumed", func(e xmpptest.Event) bool {
		if e.Str("event") == "bound-again" {
			t.Fatal("slixmpp could not resume and bound a new session")
		}
		return e.Str("event") == "resumed"
	})
	if e := p.Expect("a3", slixBody("a3")); !e.Bool("delayed") {
		t.Errorf("a3, queued while away, came without a delay stamp")
	}
	bob.Sendf(`<message to='%s' type='chat'><body>after</body></message>`, phone)
	p.Expect("after", slixBody("after"))
	if ts.Sessions().Get(phone) != sess {
		t.Fatal("the session was replaced, not resumed")
	}
	p.Command("quit")
	p.Expect("exit", func(e xmpptest.Event) bool { return e.Str("result") == "ok" })
	counts := bodyCount(p)
	for _, b := range []string{"m1", "m2", "m3", "m4", "m5", "m6", "cut", "a1", "a2", "a3", "after"} {
		if counts[b] != 1 {
			t.Errorf("%s arrived %d times, want once (all: %v)", b, counts[b], counts)
		}
	}
	// One unavailable presence: at quit, none during the cut.
	desk.Expect(presenceFrom("unavailable", phone))
	desk.Ping()
	desk.ExpectNone(presenceFrom("unavailable", phone), 0)
}

// TestSlixmppCSI: slixmpp says it is inactive; chat states wait, a newer
// one from the same sender replaces the older, a message with a body
// brings the latest state first and then itself, and <active/> sends what
// waits.
func TestSlixmppCSI(t *testing.T) {
	ts := smServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	p, phone := startSlixmpp(t, ts)
	// The driver pings the server after <inactive/>: once the answer is
	// back, the server has read the nonza.
	p.Command("inactive")
	p.Expect("inactive", xmpptest.IsEvent("csi"))
	for _, st := range []string{"composing", "paused", "active"} {
		bob.Sendf(`<message to='%s' type='chat'><%s xmlns='http://jabber.org/protocol/chatstates'/></message>`, phone, st)
	}
	bob.Sendf(`<message to='%s' type='chat'><body>urgent</body></message>`, phone)
	p.Expect("urgent", slixBody("urgent"))
	var states []string
	for _, e := range p.Seen {
		if e.Str("event") == "message" && e.Str("state") != "" && e.Str("body") == "" {
			states = append(states, e.Str("state"))
		}
	}
	if strings.Join(states, ",") != "active" {
		t.Fatalf("chat states delivered while inactive: %v, want only the latest (active); all: %v", states, p.Seen)
	}
	bob.Sendf(`<message to='%s' type='chat'><gone xmlns='http://jabber.org/protocol/chatstates'/></message>`, phone)
	bob.Ping()
	p.Command("active")
	p.Expect("gone after active", func(e xmpptest.Event) bool { return e.Str("state") == "gone" })
	for i, e := range p.Seen {
		if e.Str("state") == "gone" && (i == 0 || p.Seen[i-1].Str("event") != "csi" || p.Seen[i-1].Str("state") != "active") {
			t.Fatalf("the held state arrived before <active/>: %v", p.Seen)
		}
	}
}
