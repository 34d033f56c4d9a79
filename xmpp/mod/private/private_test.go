package private_test

import (
	"strings"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/private"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func setup(t *testing.T) (*xmpptest.TestServer, *xmpptest.Client, *xmpptest.Client) {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.Limits.MaxStanzaBytes = 1 << 20 })
	ts.AddUser(t, "alice", "alice pw")
	ts.AddUser(t, "bob", "bob pw")
	return ts, ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{}), ts.Dial(t, "bob", "bob pw", xmpptest.ClientOptions{})
}

func iq(t *testing.T, c *xmpptest.Client, typ, to, inner string) *stanza.Stanza {
	t.Helper()
	if to != "" {
		to = " to='" + to + "'"
	}
	c.Sendf(`<iq type='%s' id='p'%s><query xmlns='jabber:iq:private'>%s</query></iq>`, typ, to, inner)
	return c.Expect(xmpptest.IsIQ("p"))
}

// stored returns the single element inside a get result.
func stored(t *testing.T, r *stanza.Stanza) *stanza.Element {
	t.Helper()
	q := r.Child(private.NS, "query")
	if r.Type != "result" || q == nil || len(q.Elements()) != 1 {
		t.Fatalf("got %s", r)
	}
	return q.Elements()[0]
}

func TestRoundTrip(t *testing.T) {
	ts, alice, _ := setup(t)
	bm := `<storage xmlns='storage:bookmarks'><conference jid='room@conference.localhost' autojoin='true'><nick>al</nick></conference></storage>`
	if r := iq(t, alice, "set", "", bm+`<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>`); r.Type != "result" {
		t.Fatal(r)
	}
	tests := []struct {
		name, query, ns, local, check string
	}{
		{"bookmarks", `<storage xmlns='storage:bookmarks'/>`, "storage:bookmarks", "storage", "al"},
		{"second element of the same set", `<exodus xmlns='exodus:prefs'/>`, "exodus:prefs", "exodus", "Hamlet"},
		{"nothing stored", `<prefs xmlns='urn:example:none'/>`, "urn:example:none", "prefs", ""},
		{"same namespace, other name", `<other xmlns='storage:bookmarks'/>`, "storage:bookmarks", "other", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			el := stored(t, iq(t, alice, "get", "", tc.query))
			if el.Name.Space != tc.ns || el.Name.Local != tc.local {
				t.Fatalf("got element %s", el)
			}
			if tc.check == "" {
				if len(el.Children) != 0 {
					t.Fatalf("want an empty element, got %s", el)
				}
				return
			}
			if !strings.Contains(el.String(), tc.check) {
				t.Fatalf("%s lacks %q", el, tc.check)
			}
		})
	}
	// A new session reads what the old one stored; a new set replaces.
	alice.Close()
	alice = ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
	if r := iq(t, alice, "set", "", `<storage xmlns='storage:bookmarks'/>`); r.Type != "result" {
		t.Fatal(r)
	}
	if el := stored(t, iq(t, alice, "get", "", `<storage xmlns='storage:bookmarks'/>`)); len(el.Children) != 0 {
		t.Fatalf("not replaced: %s", el)
	}
	if el := stored(t, iq(t, alice, "get", "", `<exodus xmlns='exodus:prefs'/>`)); !strings.Contains(el.String(), "Hamlet") {
		t.Fatalf("lost: %s", el)
	}
}

func TestErrors(t *testing.T) {
	_, alice, bob := setup(t)
	big := `<big xmlns='urn:example:big'>` + strings.Repeat("x", private.DefaultMaxBytes) + `</big>`
	tests := []struct {
		name  string
		c     *xmpptest.Client
		typ   string
		to    string
		inner string
		want  stanza.Condition
	}{
		{"other account get", bob, "get", "alice@localhost", `<storage xmlns='storage:bookmarks'/>`, stanza.Forbidden},
		{"other account set", bob, "set", "alice@localhost", `<storage xmlns='storage:bookmarks'/>`, stanza.Forbidden},
		{"set without child", alice, "set", "", ``, stanza.NotAcceptable},
		{"get without child", alice, "get", "", ``, stanza.BadRequest},
		{"get of two elements", alice, "get", "", `<a xmlns='urn:example:a'/><b xmlns='urn:example:b'/>`, stanza.BadRequest},
		{"jabber: namespace", alice, "set", "", `<query xmlns='jabber:iq:roster'/>`, stanza.NotAcceptable},
		{"jabber.org namespace", alice, "get", "", `<x xmlns='http://jabber.org/protocol/muc'/>`, stanza.NotAcceptable},
		{"vcard-temp", alice, "set", "", `<vCard xmlns='vcard-temp'><FN>Hamlet</FN></vCard>`, stanza.NotAcceptable},
		{"no namespace of its own", alice, "set", "", `<prefs xmlns='jabber:client'/>`, stanza.NotAcceptable},
		{"reserved among valid", alice, "set", "", `<ok xmlns='urn:example:ok'/><vCard xmlns='vcard-temp'/>`, stanza.NotAcceptable},
		{"oversized", alice, "set", "", big, stanza.NotAcceptable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := iq(t, tc.c, tc.typ, tc.to, tc.inner)
			if r.ErrorCondition() != tc.want {
				t.Fatalf("got %s, want %s", r, tc.want)
			}
		})
	}
	// Nothing of a refused set was stored.
	if el := stored(t, iq(t, alice, "get", "", `<ok xmlns='urn:example:ok'/>`)); len(el.Children) != 0 || len(el.Attr) != 0 {
		t.Fatalf("partial set stored: %s", el)
	}
}
