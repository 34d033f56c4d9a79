package roster_test

import (
	"testing"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const nsRoster = "jabber:iq:roster"

// rosterItem returns the single item of a roster result or push.
func rosterItem(s *stanza.Stanza) *stanza.Element {
	q := s.Child(nsRoster, "query")
	if q == nil {
		return nil
	}
	return q.Child(nsRoster, "item")
}

func isPush(jidStr, sub string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		it := rosterItem(s)
		return s.Kind == stanza.KindIQ && s.Type == "set" && it != nil && it.AttrValue("jid") == jidStr && it.AttrValue("subscription") == sub
	}
}

func TestRosterSetGetRemove(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	a1 := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "one"})
	a2 := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "two"})
	a3 := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "three"}) // never asks for the roster

	for _, c := range []*xmpptest.Client{a1, a2} {
		c.Send(`<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>`)
		r := c.Expect(xmpptest.IsIQ("r0"))
		q := r.Child(nsRoster, "query")
		if r.Type != "result" || q == nil || q.AttrValue("ver") == "" || len(q.Elements()) != 0 {
			t.Fatalf("empty roster: %s", r)
		}
	}

	a1.Send(`<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='Bob@Example.org' name='Bob' subscription='both'><group>Friends</group><group>Work</group></item></query></iq>`)
	if r := a1.Expect(xmpptest.IsIQ("s1")); r.Type != "result" {
		t.Fatalf("set: %s", r)
	}
	for _, c := range []*xmpptest.Client{a1, a2} {
		p := c.Expect(isPush("bob@example.org", "none"))
		it := rosterItem(p)
		if it.AttrValue("name") != "Bob" || len(it.Elements()) != 2 || p.Child(nsRoster, "query").AttrValue("ver") == "" {
			t.Fatalf("push: %s", p)
		}
		if p.From.String() != "alice@localhost" && p.From.String() != "" {
			t.Fatalf("push from %s", p.From)
		}
	}
	a3.Ping()
	a3.ExpectNone(isPush("bob@example.org", "none"), 0)

	a1.Send(`<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>`)
	r := a1.Expect(xmpptest.IsIQ("g1"))
	ver := r.Child(nsRoster, "query").AttrValue("ver")
	if it := rosterItem(r); it == nil || it.AttrValue("jid") != "bob@example.org" {
		t.Fatalf("roster: %s", r)
	}
	// XEP-0237: the same version means no roster in the result.
	a1.Sendf(`<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='%s'/></iq>`, ver)
	if r := a1.Expect(xmpptest.IsIQ("g2")); r.Type != "result" || r.Child(nsRoster, "query") != nil {
		t.Fatalf("same version: %s", r)
	}
	a1.Send(`<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='stale'/></iq>`)
	if r := a1.Expect(xmpptest.IsIQ("g3")); rosterItem(r) == nil {
		t.Fatalf("stale version: %s", r)
	}

	a2.Send(`<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@example.org' subscription='remove'/></query></iq>`)
	a2.Expect(xmpptest.IsIQ("rm"))
	a1.Expect(isPush("bob@example.org", "remove"))
	a2.Expect(isPush("bob@example.org", "remove"))
}

func TestRosterErrors(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "correct horse")
	ts.AddUser(t, "bob", "battery staple")
	a := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{})
	tests := []struct {
		name, iq, cond string
	}{
		{"remove missing", `<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='nobody@example.org' subscription='remove'/></query></iq>`, "item-not-found"},
		{"two items", `<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='a@example.org'/><item jid='b@example.org'/></query></iq>`, "bad-request"},
		{"no items", `<iq type='set' id='x'><query xmlns='jabber:iq:roster'/></iq>`, "bad-request"},
		{"duplicate group", `<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='a@example.org'><group>G</group><group>G</group></item></query></iq>`, "bad-request"},
		{"empty group", `<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='a@example.org'><group/></item></query></iq>`, "not-acceptable"},
		{"bad jid", `<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='@@'/></query></iq>`, "jid-malformed"},
		{"get with items", `<iq type='get' id='x'><query xmlns='jabber:iq:roster'><item jid='a@example.org'/></query></iq>`, "bad-request"},
		{"someone else's roster", `<iq type='get' id='x' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>`, "forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.Send(tc.iq)
			r := a.Expect(xmpptest.IsIQ("x"))
			if r.Type != "error" || string(r.ErrorCondition()) != tc.cond {
				t.Fatalf("got %s, want error %s", r, tc.cond)
			}
		})
	}
}
