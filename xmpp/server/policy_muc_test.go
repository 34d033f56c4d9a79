package server_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/xmpp/stanza"
)

// A user the policy keeps from talking outside cannot do it through a
// group chat either: the room's copy for an outside occupant is judged as
// the user's own message; other members' copies go out as usual.
func TestPolicyAppliesToRoomCopies(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "")
	alice := online(t, e.ts, "alice")
	intern := online(t, e.ts, "intern")
	const room = "lobby@conference.localhost"
	alice.Sendf(`<presence to='%s/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.String() == room+"/Alice" })
	// A new room is locked until configured: accept the defaults.
	alice.Sendf(`<iq type='set' to='%s' id='cfg'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`, room)
	alice.Expect(func(s *stanza.Stanza) bool { return s.ID == "cfg" && s.Type == "result" })
	intern.Sendf(`<presence to='%s/Intern'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	intern.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.String() == room+"/Intern" })
	// The outside partner (through the transport) joins.
	e.peer.send(`<presence from='partner@irc.localhost/irc' to='%s/Partner'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	e.peer.expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == room+"/Partner" && s.Type == ""
	})

	alice.Sendf(`<message to='%s' type='groupchat' id='a1'><body>from alice</body></message>`, room)
	e.peer.expect(func(s *stanza.Stanza) bool { return s.Body() == "from alice" && s.From.String() == room+"/Alice" })

	intern.Sendf(`<message to='%s' type='groupchat' id='i1'><body>from the intern</body></message>`, room)
	// Local members still get it; the outside copy is refused as the
	// intern's own message would be.
	alice.Expect(func(s *stanza.Stanza) bool { return s.Body() == "from the intern" })
	alice.Sendf(`<message to='%s' type='groupchat' id='a2'><body>after</body></message>`, room)
	e.peer.expect(func(s *stanza.Stanza) bool { return s.Body() == "after" })
	e.peer.none(func(s *stanza.Stanza) bool { return strings.Contains(s.Body(), "from the intern") })

	// The compliance archive names the user who spoke, and the nick the
	// copy went out as.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.ts.Config.DataDir, e.ts.Config.Archive.File)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := map[string]string{}
	q, err := db.Query(`SELECT coalesce(body, ''), account || ' ' || local_jid || ' ' || verdict FROM stanzas WHERE direction = 'out' AND kind = 'message' AND type = 'groupchat'`)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for q.Next() {
		var body, v string
		if err := q.Scan(&body, &v); err != nil {
			t.Fatal(err)
		}
		rows[body] = v
	}
	for body, want := range map[string]string{
		"from alice":      "alice@localhost " + room + "/Alice allow",
		"from the intern": "intern@localhost " + room + "/Intern deny",
	} {
		if rows[body] != want {
			t.Errorf("archive row for %q: %q, want %q", body, rows[body], want)
		}
	}
}
