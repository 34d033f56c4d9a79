package blocking_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/mod/blocking"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
	"gatehouse/xmpp/xmpptest"
)

// quiet is how long ExpectNone waits; it only runs after a round trip has
// proven that anything sent earlier would already be queued.
const quiet = 200 * time.Millisecond

func users(t *testing.T) *xmpptest.TestServer {
	t.Helper()
	ts := xmpptest.RunServer(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, u+" pw")
	}
	return ts
}

func dial(t *testing.T, ts *xmpptest.TestServer, user, res string) *xmpptest.Client {
	t.Helper()
	return ts.Dial(t, user, user+" pw", xmpptest.ClientOptions{Resource: res})
}

// login connects like a client: roster, then initial presence.
func login(t *testing.T, ts *xmpptest.TestServer, user, res string) *xmpptest.Client {
	t.Helper()
	c := dial(t, ts, user, res)
	c.Send(`<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>`)
	c.Expect(xmpptest.IsIQ("roster"))
	c.Send(`<presence/>`)
	c.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Equal(c.JID) && s.Type == ""
	})
	return c
}

func iq(t *testing.T, c *xmpptest.Client, id, typ, to, payload string) *stanza.Stanza {
	t.Helper()
	if to != "" {
		to = " to='" + to + "'"
	}
	c.Sendf(`<iq type='%s' id='%s'%s>%s</iq>`, typ, id, to, payload)
	return c.Expect(xmpptest.IsIQ(id))
}

func items(jids ...string) string {
	var b strings.Builder
	for _, j := range jids {
		b.WriteString(`<item jid='` + j + `'/>`)
	}
	return b.String()
}

// block runs a block command and requires success.
func block(t *testing.T, c *xmpptest.Client, jids ...string) {
	t.Helper()
	if r := iq(t, c, "blk", "set", "", `<block xmlns='urn:xmpp:blocking'>`+items(jids...)+`</block>`); r.Type != "result" {
		t.Fatalf("block %v: %s", jids, r)
	}
}

func unblock(t *testing.T, c *xmpptest.Client, jids ...string) {
	t.Helper()
	if r := iq(t, c, "ublk", "set", "", `<unblock xmlns='urn:xmpp:blocking'>`+items(jids...)+`</unblock>`); r.Type != "result" {
		t.Fatalf("unblock %v: %s", jids, r)
	}
}

func blocklist(t *testing.T, c *xmpptest.Client) []string {
	t.Helper()
	r := iq(t, c, "bl", "get", "", `<blocklist xmlns='urn:xmpp:blocking'/>`)
	l := r.Child(blocking.NS, "blocklist")
	if r.Type != "result" || l == nil {
		t.Fatalf("blocklist: %s", r)
	}
	var out []string
	for _, it := range l.Elements() {
		out = append(out, it.AttrValue("jid"))
	}
	return out
}

func isPush(op string, jids ...string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		p := s.Child(blocking.NS, op)
		if s.Kind != stanza.KindIQ || s.Type != "set" || p == nil || len(p.Elements()) != len(jids) {
			return false
		}
		for i, it := range p.Elements() {
			if it.AttrValue("jid") != jids[i] {
				return false
			}
		}
		return true
	}
}

func from(who string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.From.Bare().String() == who }
}

func isError(id string, cond stanza.Condition) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.ID == id && s.Type == "error" && s.ErrorCondition() == cond }
}

func TestMatches(t *testing.T) {
	tests := []struct {
		entry, j string
		want     bool
	}{
		{"bob@example.com/desk", "bob@example.com/desk", true},
		{"bob@example.com/desk", "bob@example.com/phone", false},
		{"bob@example.com/desk", "bob@example.com", false},
		{"bob@example.com", "bob@example.com/phone", true},
		{"bob@example.com", "bob@example.com", true},
		{"bob@example.com", "eve@example.com", false},
		{"example.com/gw", "example.com/gw", true},
		{"example.com/gw", "bob@example.com/gw", false},
		{"example.com/gw", "example.com", false},
		{"example.com", "example.com", true},
		{"example.com", "bob@example.com/desk", true},
		{"example.com", "example.com/gw", true},
		{"example.com", "room@conference.example.com/nick", true},
		{"example.com", "badexample.com", false},
		{"example.com", "example.com.evil.org", false},
		{"conference.example.com", "example.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.entry+" "+tc.j, func(t *testing.T) {
			set := map[string]struct{}{jid.MustParse(tc.entry).String(): {}}
			if got := blocking.Matches(set, jid.MustParse(tc.j)); got != tc.want {
				t.Fatalf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCommandErrors(t *testing.T) {
	ts := users(t)
	alice := dial(t, ts, "alice", "a")
	tests := []struct {
		name, typ, to, payload string
		want                   stanza.Condition
	}{
		{"blocklist set", "set", "", `<blocklist xmlns='urn:xmpp:blocking'/>`, stanza.BadRequest},
		{"block get", "get", "", `<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block>`, stanza.BadRequest},
		{"unblock get", "get", "", `<unblock xmlns='urn:xmpp:blocking'/>`, stanza.BadRequest},
		{"block without items", "set", "", `<block xmlns='urn:xmpp:blocking'/>`, stanza.BadRequest},
		{"block invalid JID", "set", "", `<block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block>`, stanza.JIDMalformed},
		{"block empty JID", "set", "", `<block xmlns='urn:xmpp:blocking'><item jid=''/></block>`, stanza.JIDMalformed},
		{"unblock invalid JID", "set", "", `<unblock xmlns='urn:xmpp:blocking'><item jid='@x'/></unblock>`, stanza.JIDMalformed},
		{"someone else's blocklist", "get", "bob@localhost", `<blocklist xmlns='urn:xmpp:blocking'/>`, stanza.ServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := iq(t, alice, "e", tc.typ, tc.to, tc.payload); r.ErrorCondition() != tc.want {
				t.Fatalf("got %s, want %s", r, tc.want)
			}
		})
	}
	if l := blocklist(t, alice); len(l) != 0 {
		t.Fatalf("a failed command changed the blocklist: %v", l)
	}
	if r := iq(t, alice, "h", "get", "localhost", `<blocklist xmlns='urn:xmpp:blocking'/>`); r.Type != "result" {
		t.Fatalf("blocklist addressed to the server: %s", r)
	}
}

// TestPushes checks normalisation, list contents and that only resources
// that requested the blocklist get pushes (XEP-0191 §3.3-3.5).
func TestPushes(t *testing.T) {
	ts := users(t)
	a1 := dial(t, ts, "alice", "one")
	a2 := dial(t, ts, "alice", "two")
	if l := blocklist(t, a1); len(l) != 0 {
		t.Fatalf("new account blocklist %v", l)
	}
	steps := []struct {
		name  string
		op    string // block, unblock
		jids  []string
		push  []string
		after []string
	}{
		{"block normalises", "block", []string{"Bob@LocalHost", "example.net", "bob@localhost"}, []string{"bob@localhost", "example.net"}, []string{"bob@localhost", "example.net"}},
		{"block again is idempotent", "block", []string{"example.net"}, []string{"example.net"}, []string{"bob@localhost", "example.net"}},
		{"unblock one", "unblock", []string{"bob@localhost"}, []string{"bob@localhost"}, []string{"example.net"}},
		{"unblock absent", "unblock", []string{"carol@localhost"}, []string{"carol@localhost"}, []string{"example.net"}},
		{"unblock all", "unblock", nil, nil, nil},
	}
	for _, s := range steps {
		if s.op == "block" {
			block(t, a1, s.jids...)
		} else {
			unblock(t, a1, s.jids...)
		}
		// Pushes precede the result, so the push is already queued.
		a1.Expect(isPush(s.op, s.push...))
		a2.Ping()
		a2.ExpectNone(func(st *stanza.Stanza) bool { return st.Child(blocking.NS, s.op) != nil }, quiet)
		if got := blocklist(t, a2); strings.Join(got, " ") != strings.Join(s.after, " ") {
			t.Fatalf("%s: blocklist %v, want %v", s.name, got, s.after)
		}
		// a2 asked for the list now, so it gets later pushes too; start
		// each step from a fresh second session instead.
		a2.Close()
		a2 = dial(t, ts, "alice", "two")
	}
}

// TestInbound checks how stanzas from a blocked entity are refused
// (XEP-0191 §3.3) for each matching rule.
func TestInbound(t *testing.T) {
	tests := []struct {
		name    string
		entry   string
		blocked map[string]bool // bob resource -> blocked
	}{
		{"bare JID", "bob@localhost", map[string]bool{"desk": true, "phone": true}},
		{"full JID", "bob@localhost/desk", map[string]bool{"desk": true, "phone": false}},
		{"domain", "localhost", map[string]bool{"desk": true, "phone": true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := users(t)
			alice := dial(t, ts, "alice", "a")
			block(t, alice, tc.entry)
			for res, blocked := range tc.blocked {
				bob := dial(t, ts, "bob", res)
				bob.Send(`<message type='chat' id='m1' to='alice@localhost/a'><body>chat ` + res + `</body></message>`)
				bob.Send(`<message type='headline' id='m2' to='alice@localhost/a'><body>headline ` + res + `</body></message>`)
				bob.Send(`<presence id='p1' to='alice@localhost/a'/>`)
				bob.Send(`<iq type='get' id='q1' to='alice@localhost/a'><query xmlns='jabber:iq:version'/></iq>`)
				// Requests the server answers for alice's bare JID too.
				bob.Send(`<iq type='get' id='v1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>`)
				if blocked {
					bob.Expect(isError("m1", stanza.ServiceUnavailable))
					bob.Expect(isError("q1", stanza.ServiceUnavailable))
					bob.Expect(isError("v1", stanza.ServiceUnavailable))
					bob.Ping()
					bob.ExpectNone(func(s *stanza.Stanza) bool { return s.ID == "m2" || s.ID == "p1" }, quiet)
					alice.Ping()
					alice.ExpectNone(from("bob@localhost"), quiet)
					continue
				}
				alice.Expect(xmpptest.IsMessage("chat " + res))
				alice.Expect(xmpptest.IsMessage("headline " + res))
				alice.Expect(func(s *stanza.Stanza) bool { return s.ID == "p1" && s.Kind == stanza.KindPresence })
				if v := bob.Expect(xmpptest.IsIQ("v1")); v.Type == "error" && v.ErrorCondition() == stanza.ServiceUnavailable {
					t.Fatalf("vCard refused to an unblocked contact: %s", v)
				}
				q := alice.Expect(xmpptest.IsIQ("q1"))
				alice.Send(q.Result().String())
				bob.Expect(func(s *stanza.Stanza) bool { return s.ID == "q1" && s.Type == "result" })
			}
			// The server itself is never blocked, even by its domain.
			if r := iq(t, alice, "srv", "get", "localhost", `<query xmlns='jabber:iq:version'/>`); r.Type != "result" {
				t.Fatalf("server query: %s", r)
			}
		})
	}
}

// TestOutbound checks that a user cannot reach whom they blocked and gets
// the blocked application error (XEP-0191 §3.3).
func TestOutbound(t *testing.T) {
	ts := users(t)
	alice := dial(t, ts, "alice", "a")
	bob := dial(t, ts, "bob", "b")
	carol := dial(t, ts, "carol", "c")
	block(t, alice, "bob@localhost")
	tests := []struct {
		name, xml, id string
		refused       bool
	}{
		{"message", `<message type='chat' id='o1' to='bob@localhost'><body>hi bob</body></message>`, "o1", true},
		{"message to full JID", `<message id='o2' to='bob@localhost/b'><body>hi bob/b</body></message>`, "o2", true},
		{"iq", `<iq type='get' id='o3' to='bob@localhost/b'><query xmlns='jabber:iq:version'/></iq>`, "o3", true},
		{"directed presence", `<presence id='o4' to='bob@localhost'/>`, "o4", true},
		{"subscription request", `<presence id='o5' type='subscribe' to='bob@localhost'/>`, "o5", true},
		{"message to someone else", `<message type='chat' id='o6' to='carol@localhost/c'><body>hi carol</body></message>`, "o6", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice.Send(tc.xml)
			if !tc.refused {
				carol.Expect(xmpptest.IsMessage("hi carol"))
				return
			}
			r := alice.Expect(isError(tc.id, stanza.NotAcceptable))
			e := r.Child("", "error")
			if e.AttrValue("type") != "cancel" || e.Child(blocking.NSErrors, "blocked") == nil {
				t.Fatalf("error lacks <blocked/>: %s", r)
			}
			if r.From.Bare().String() != "bob@localhost" {
				t.Fatalf("error from %s", r.From)
			}
		})
	}
	// Ending a subscription is still possible and answers are dropped
	// silently rather than bounced.
	alice.Send(`<presence id='u1' type='unsubscribed' to='bob@localhost'/>`)
	alice.Send(`<iq type='result' id='r1' to='bob@localhost/b'/>`)
	alice.Ping()
	alice.ExpectNone(func(s *stanza.Stanza) bool { return s.ID == "u1" || s.ID == "r1" }, quiet)
	bob.Ping()
	bob.ExpectNone(func(s *stanza.Stanza) bool {
		return s.Kind != stanza.KindPresence || s.Type != "unsubscribed"
	}, quiet)
}

// TestPresence checks presence on block and unblock (XEP-0191 §3.3, §3.4)
// with real subscriptions: the blocked contact sees the user go offline,
// gets no updates while blocked, and sees the current presence again after
// unblocking; a contact without a subscription learns nothing.
func TestPresence(t *testing.T) {
	ts := users(t)
	ctx := context.Background()
	for _, r := range []struct{ user, contact string }{{"alice", "bob@localhost"}, {"bob", "alice@localhost"}} {
		if _, err := ts.DB().PutRosterItem(ctx, r.user, storage.RosterItem{JID: r.contact, Subscription: storage.SubBoth}); err != nil {
			t.Fatal(err)
		}
	}
	alice := login(t, ts, "alice", "a")
	bob := login(t, ts, "bob", "b")
	carol := login(t, ts, "carol", "c")
	bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == "alice@localhost/a" && s.Type == ""
	})
	alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == "bob@localhost/b" && s.Type == ""
	})

	block(t, alice, "bob@localhost", "carol@localhost")
	bob.Expect(func(s *stanza.Stanza) bool { return s.From.String() == "alice@localhost/a" && s.Type == "unavailable" })
	carol.Ping()
	carol.ExpectNone(from("alice@localhost"), quiet)

	// While blocked, presence changes cross in neither direction.
	alice.Send(`<presence><show>away</show></presence>`)
	alice.Expect(func(s *stanza.Stanza) bool { return s.From.Equal(alice.JID) && s.Child("", "show") != nil })
	bob.Send(`<presence><show>dnd</show></presence>`)
	bob.Expect(func(s *stanza.Stanza) bool { return s.From.Equal(bob.JID) && s.Child("", "show") != nil })
	bob.Ping()
	bob.ExpectNone(withShow("alice@localhost", "away"), quiet)
	alice.Ping()
	alice.ExpectNone(withShow("bob@localhost", "dnd"), quiet)

	unblock(t, alice, "bob@localhost")
	bob.Expect(withShow("alice@localhost", "away"))
	alice.Expect(withShow("bob@localhost", "dnd"))
	carol.Ping()
	carol.ExpectNone(from("alice@localhost"), quiet)
}

func withShow(who, show string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.Type == "" && s.From.Bare().String() == who &&
			s.Child("", "show") != nil && s.Child("", "show").Text() == show
	}
}
