package vcard_test

import (
	"strings"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/vcard"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// setup raises the stanza limit above the vCard cap so the module's own
// size check can be reached.
func setup(t *testing.T) (*xmpptest.Client, *xmpptest.Client) {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.Limits.MaxStanzaBytes = 1 << 20 })
	ts.AddUser(t, "alice", "alice pw")
	ts.AddUser(t, "bob", "bob pw")
	return ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{}), ts.Dial(t, "bob", "bob pw", xmpptest.ClientOptions{})
}

func iq(t *testing.T, c *xmpptest.Client, typ, to, payload string) *stanza.Stanza {
	t.Helper()
	if to != "" {
		to = " to='" + to + "'"
	}
	c.Sendf(`<iq type='%s' id='v'%s>%s</iq>`, typ, to, payload)
	return c.Expect(xmpptest.IsIQ("v"))
}

func fn(r *stanza.Stanza) (string, bool) {
	v := r.Child(vcard.NS, "vCard")
	if r.Type != "result" || v == nil {
		return "", false
	}
	return v.ChildText(vcard.NS, "FN"), true
}

func TestVCard(t *testing.T) {
	alice, bob := setup(t)
	big := `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>` + strings.Repeat("A", vcard.DefaultMaxBytes) + `</BINVAL></PHOTO></vCard>`
	steps := []struct {
		name     string
		c        *xmpptest.Client
		typ, to  string
		payload  string
		wantCond stanza.Condition
		wantFN   string // checked on get results
	}{
		{"own empty", alice, "get", "", `<vCard xmlns='vcard-temp'/>`, "", ""},
		{"others missing", bob, "get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`, stanza.ItemNotFound, ""},
		{"set own", alice, "set", "", `<vCard xmlns='vcard-temp'><FN>Alice A.</FN><NICKNAME>al</NICKNAME></vCard>`, "", ""},
		{"get own", alice, "get", "", `<vCard xmlns='vcard-temp'/>`, "", "Alice A."},
		{"get own by bare JID", alice, "get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`, "", "Alice A."},
		{"others read", bob, "get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`, "", "Alice A."},
		{"others set", bob, "set", "alice@localhost", `<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>`, stanza.Forbidden, ""},
		{"unchanged", bob, "get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`, "", "Alice A."},
		{"oversized", alice, "set", "", big, stanza.NotAcceptable, ""},
		{"kept after oversized", alice, "get", "", `<vCard xmlns='vcard-temp'/>`, "", "Alice A."},
		{"server get", alice, "get", "localhost", `<vCard xmlns='vcard-temp'/>`, "", "Gatehouse"},
		{"server set", alice, "set", "localhost", `<vCard xmlns='vcard-temp'><FN>x</FN></vCard>`, stanza.NotAllowed, ""},
		{"missing account", alice, "get", "nobody@localhost", `<vCard xmlns='vcard-temp'/>`, stanza.ServiceUnavailable, ""},
		{"clear", alice, "set", "", `<vCard xmlns='vcard-temp'/>`, "", ""},
		{"cleared", alice, "get", "", `<vCard xmlns='vcard-temp'/>`, "", ""},
		{"cleared for others", bob, "get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`, stanza.ItemNotFound, ""},
	}
	for _, s := range steps {
		r := iq(t, s.c, s.typ, s.to, s.payload)
		if s.wantCond != "" {
			if r.ErrorCondition() != s.wantCond {
				t.Fatalf("%s: got %s, want %s", s.name, r, s.wantCond)
			}
			continue
		}
		if r.Type != "result" {
			t.Fatalf("%s: got %s", s.name, r)
		}
		if s.typ == "get" {
			got, ok := fn(r)
			if !ok || got != s.wantFN {
				t.Fatalf("%s: FN %q (vCard present: %v) in %s, want %q", s.name, got, ok, r, s.wantFN)
			}
		}
	}
}

// TestPersists checks the vCard survives the session and keeps nested
// elements and text intact.
func TestPersists(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice pw")
	c := ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
	r := iq(t, c, "set", "", `<vCard xmlns='vcard-temp'><N><FAMILY>Ä &amp; B</FAMILY></N><EMAIL><INTERNET/><USERID>a@example.com</USERID></EMAIL></vCard>`)
	if r.Type != "result" {
		t.Fatal(r)
	}
	c.Close()
	c = ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
	r = iq(t, c, "get", "", `<vCard xmlns='vcard-temp'/>`)
	v := r.Child(vcard.NS, "vCard")
	if v == nil || v.Child(vcard.NS, "N").ChildText(vcard.NS, "FAMILY") != "Ä & B" ||
		v.Child(vcard.NS, "EMAIL").Child(vcard.NS, "INTERNET") == nil {
		t.Fatalf("got %s", r)
	}
}
