package muc_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// TestFederatedOccupant has a user of another server (a second Gatehouse,
// over real s2s) join a room: the room's traffic to and from that occupant
// crosses the boundary of the room's server and lands in its compliance
// archive, and the local occupant's copies do not.
func TestFederatedOccupant(t *testing.T) {
	ca := s2stest.NewCA(t)
	a := xmpptest.RunServer(t, s2stest.Federated("a.example"), s2stest.WithCert(ca, ca.Issue(t, "a.example")))
	b := xmpptest.RunServer(t, s2stest.Federated("b.example"), s2stest.WithCert(ca, ca.Issue(t, "b.example")))
	aS2S, _ := a.S2SAddrs()
	bS2S, _ := b.S2SAddrs()
	for _, r := range []struct {
		ts             *xmpptest.TestServer
		domain, target string
	}{{a, "b.example", bS2S[0]}, {b, "a.example", aS2S[0]}, {b, "conference.a.example", aS2S[0]}} {
		if err := r.ts.SetS2SRoute(r.domain, r.target); err != nil {
			t.Fatal(err)
		}
	}
	a.AddUser(t, "alice", "alice-pw")
	b.AddUser(t, "bob", "bob-pw")
	alice := a.Dial(t, "alice", "alice-pw", xmpptest.ClientOptions{Resource: "desk"})
	t.Cleanup(alice.Close)
	bob := b.Dial(t, "bob", "bob-pw", xmpptest.ClientOptions{Resource: "laptop"})
	t.Cleanup(bob.Close)

	const fedRoom = "lobby@conference.a.example"
	alice.Sendf(`<presence to='%s/Alice'/>`, fedRoom) // groupchat 1.0 join: an instant room
	alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Child("", "subject") != nil })

	bob.Sendf(`<presence to='%s/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, fedRoom)
	self := bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == fedRoom+"/Bob"
	})
	if !hasStatus(self, "110") {
		t.Fatalf("bob's own presence over s2s: %s", self)
	}
	bob.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Child("", "subject") != nil })
	alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.String() == fedRoom+"/Bob" })

	alice.Sendf(`<message to='%s' type='groupchat' id='g1'><body>welcome, partner</body></message>`, fedRoom)
	if m := bob.Expect(xmpptest.IsMessage("welcome, partner")); m.From.String() != fedRoom+"/Alice" {
		t.Fatalf("bob got %s", m)
	}
	alice.Expect(xmpptest.IsMessage("welcome, partner"))
	bob.Sendf(`<message to='%s' type='groupchat' id='g2'><body>thanks</body></message>`, fedRoom)
	alice.Expect(xmpptest.IsMessage("thanks"))

	// The compliance archive of a.example holds the crossings: the copy out
	// to bob and bob's message in; nothing for alice's own copies.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(a.Config.DataDir, a.Config.Archive.File)+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		var n int
		if err := db.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM stanzas WHERE kind = 'message' AND body = 'welcome, partner'`); n != 1 {
		t.Fatalf("crossings recorded for the outgoing copy: %d, want 1", n)
	}
	var account, local string
	if err := db.QueryRow(`SELECT account, local_jid FROM stanzas WHERE body = 'welcome, partner'`).Scan(&account, &local); err != nil {
		t.Fatal(err)
	}
	t.Logf("archive row of the outgoing copy: account %q, local_jid %q", account, local)
	if n := count(`SELECT count(*) FROM stanzas WHERE kind = 'message' AND body = 'thanks' AND direction = 'in'`); n != 1 {
		t.Fatalf("crossings recorded for the incoming message: %d, want 1", n)
	}
}
