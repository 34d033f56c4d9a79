package privilege_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	"gatehouse/logging/archive"
	"gatehouse/transports/component"
	"gatehouse/transports/privilege"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const (
	slidge   = "slidge.example"
	spectrum = "spectrum.example"
	plain    = "plain.example"
	secret   = "component-secret-0123456789"
	alicePW  = "alice-secret-1"
)

// comp is a scripted component on a real component stream.
type comp struct {
	t  *testing.T
	c  *component.Client
	in chan *stanza.Stanza
}

func dial(t *testing.T, ts *xmpptest.TestServer, domain string) *comp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	c, err := component.Dial(ctx, ts.ComponentAddrs()[0], domain, []byte(secret))
	if err != nil {
		t.Fatalf("dial %s: %v", domain, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	k := &comp{t: t, c: c, in: make(chan *stanza.Stanza, 64)}
	go func() {
		defer close(k.in)
		for {
			s, err := c.Recv()
			if err != nil {
				return
			}
			k.in <- s
		}
	}()
	return k
}

func (k *comp) send(format string, args ...any) {
	k.t.Helper()
	s := parse(k.t, fmt.Sprintf(format, args...))
	if err := k.c.Send(s); err != nil {
		k.t.Fatal(err)
	}
}

// expect waits for a stanza matching f, dropping others.
func (k *comp) expect(what string, f func(*stanza.Stanza) bool) *stanza.Stanza {
	k.t.Helper()
	timer := time.NewTimer(xmpptest.Timeout)
	defer timer.Stop()
	for {
		select {
		case s, ok := <-k.in:
			if !ok {
				k.t.Fatalf("stream closed while waiting for %s", what)
			}
			if f(s) {
				return s
			}
		case <-timer.C:
			k.t.Fatalf("timeout waiting for %s", what)
		}
	}
}

func parse(t *testing.T, s string) *stanza.Stanza {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			st, err := stanza.Parse(d, se)
			if err != nil {
				t.Fatalf("parse %q: %v", s, err)
			}
			return st
		}
	}
}

func setup(t *testing.T) *xmpptest.TestServer {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{
			{Domain: slidge, Secret: secret, Type: "telegram", Privileges: config.Privileges{
				Roster: "both", Message: "outgoing", Presence: "managed_entity"}},
			{Domain: spectrum, Secret: secret, Type: "icq", Privileges: config.Privileges{Roster: "get", Version: 1}},
			{Domain: plain, Secret: secret},
		}
	})
	ts.AddUser(t, "alice", alicePW)
	return ts
}

func perms(s *stanza.Stanza, ns string) map[string]string {
	out := map[string]string{}
	if p := s.Child(ns, "privilege"); p != nil {
		for _, e := range p.Elements() {
			out[e.AttrValue("access")] = e.AttrValue("type")
		}
	}
	return out
}

func isIQ(id string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Kind == stanza.KindIQ && s.ID == id }
}

func TestAdvertisement(t *testing.T) {
	ts := setup(t)
	for _, tc := range []struct {
		domain, ns string
		want       map[string]string
	}{
		{slidge, privilege.NS2, map[string]string{"roster": "both", "message": "outgoing", "presence": "managed_entity"}},
		{spectrum, privilege.NS1, map[string]string{"roster": "get", "message": "none", "presence": "none"}},
	} {
		k := dial(t, ts, tc.domain)
		adv := k.expect("advertisement", func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage })
		if adv.From.String() != "localhost" || fmt.Sprint(perms(adv, tc.ns)) != fmt.Sprint(tc.want) {
			t.Errorf("%s: advertisement %s, want %v in %s", tc.domain, adv, tc.want, tc.ns)
		}
	}
}

func TestRosterLimitedToOwnDomain(t *testing.T) {
	ts := setup(t)
	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<iq type='set' id='r0'><query xmlns='jabber:iq:roster'><item jid='dave@localhost' name='Dave'/></query></iq>`)
	alice.Expect(xmpptest.IsIQ("r0"))
	alice.Send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	alice.Expect(xmpptest.IsIQ("r1"))

	k := dial(t, ts, slidge)
	k.send(`<iq type='set' id='s1' from='%s' to='alice@localhost'><query xmlns='jabber:iq:roster'>
		<item jid='bob@%[1]s' name='Bob' subscription='both'><group>Telegram</group></item>
		<item jid='carol@%[1]s' name='Carol'/></query></iq>`, slidge)
	if r := k.expect("set result", isIQ("s1")); r.Type != "result" {
		t.Fatalf("roster set: %s", r)
	}
	push := alice.Expect(func(s *stanza.Stanza) bool {
		q := s.Child("jabber:iq:roster", "query")
		return s.Kind == stanza.KindIQ && s.Type == "set" && q != nil && len(q.Elements()) == 1 && q.Elements()[0].AttrValue("jid") == "bob@"+slidge
	})
	it := push.Child("jabber:iq:roster", "query").Elements()[0]
	if it.AttrValue("subscription") != "both" || it.AttrValue("name") != "Bob" || it.ChildText("jabber:iq:roster", "group") != "Telegram" {
		t.Errorf("push %s", push)
	}

	// A contact elsewhere is refused, and nothing of the set is applied.
	k.send(`<iq type='set' id='s2' from='%s' to='alice@localhost'><query xmlns='jabber:iq:roster'>
		<item jid='eve@%[1]s'/><item jid='mallory@localhost'/></query></iq>`, slidge)
	if r := k.expect("refusal", isIQ("s2")); r.ErrorCondition() != stanza.Forbidden {
		t.Fatalf("foreign contact: %s", r)
	}

	// Get shows the transport's contacts only.
	k.send(`<iq type='get' id='g1' from='%s' to='alice@localhost'><query xmlns='jabber:iq:roster'/></iq>`, slidge)
	r := k.expect("get result", isIQ("g1"))
	var got []string
	for _, e := range r.Child("jabber:iq:roster", "query").Elements() {
		got = append(got, e.AttrValue("jid"))
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"bob@" + slidge, "carol@" + slidge}) {
		t.Errorf("roster get by transport: %v (%s)", got, r)
	}

	// Removal.
	k.send(`<iq type='set' id='s3' from='%s' to='alice@localhost'><query xmlns='jabber:iq:roster'><item jid='carol@%[1]s' subscription='remove'/></query></iq>`, slidge)
	if r := k.expect("remove", isIQ("s3")); r.Type != "result" {
		t.Fatalf("remove: %s", r)
	}
	alice.Expect(func(s *stanza.Stanza) bool {
		q := s.Child("jabber:iq:roster", "query")
		return q != nil && s.Type == "set" && len(q.Elements()) == 1 && q.Elements()[0].AttrValue("subscription") == "remove"
	})
	items, _, err := ts.DB().Roster(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, it := range items {
		stored = append(stored, it.JID)
	}
	if fmt.Sprint(stored) != fmt.Sprint([]string{"bob@" + slidge, "dave@localhost"}) {
		t.Errorf("stored roster %v", stored)
	}
}

func TestRosterPermissionsEnforced(t *testing.T) {
	ts := setup(t)
	sp, pl := dial(t, ts, spectrum), dial(t, ts, plain)
	for _, tc := range []struct {
		k                 *comp
		domain, typ, item string
		want              string
	}{
		{sp, spectrum, "set", "<item jid='bob@" + spectrum + "'/>", string(stanza.Forbidden)}, // get only
		{pl, plain, "get", "", string(stanza.Forbidden)},                                      // no privileges
		{sp, spectrum, "get", "", "result"},
	} {
		tc.k.send(`<iq type='%s' id='p1' from='%s' to='alice@localhost'><query xmlns='jabber:iq:roster'>%s</query></iq>`, tc.typ, tc.domain, tc.item)
		r := tc.k.expect("answer", isIQ("p1"))
		got := r.Type
		if r.Type == "error" {
			got = string(r.ErrorCondition())
		}
		if got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.domain, tc.typ, r, tc.want)
		}
	}
}

// A message alice wrote in the other network's own app comes back to her
// clients as a "sent" carbon, in jabber:client, and into her archive.
func TestSentCarbon(t *testing.T) {
	ts := setup(t)
	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	alice.Expect(xmpptest.IsIQ("c1"))
	k := dial(t, ts, slidge)
	k.send(`<message from='%s' to='localhost' id='w1'><privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>
		<message xmlns='jabber:client' from='alice@localhost' to='bob@%[1]s' type='chat' id='tg1'><body>sent from my phone</body></message>
		</forwarded></privilege></message>`, slidge)
	c := alice.Expect(func(s *stanza.Stanza) bool { return s.Child("urn:xmpp:carbons:2", "sent") != nil })
	inner := c.Child("urn:xmpp:carbons:2", "sent").Child("urn:xmpp:forward:0", "forwarded").Child("", "message")
	if inner == nil || inner.ChildText("", "body") != "sent from my phone" || inner.AttrValue("to") != "bob@"+slidge || inner.AttrValue("from") != "alice@localhost" {
		t.Fatalf("carbon %s", c)
	}
	if !c.From.Equal(c.To.Bare()) {
		t.Errorf("carbon from %s to %s", c.From, c.To)
	}
	// The archive has it (XEP-0313 query).
	alice.Send(`<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>`)
	res := alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Child("urn:xmpp:mam:2", "result") != nil
	})
	fwd := res.Child("urn:xmpp:mam:2", "result").Child("urn:xmpp:forward:0", "forwarded").Child("", "message")
	if fwd == nil || fwd.ChildText("", "body") != "sent from my phone" {
		t.Errorf("archive result %s", res)
	}
	alice.Expect(xmpptest.IsIQ("q1"))
	// The crossing (the wrapper, from the transport) is in the compliance
	// archive once.
	n := 0
	if _, err := ts.Archive().Search(context.Background(), archive.Filter{Network: slidge},
		archive.Actor{Name: "test", Origin: "cli"}, func(r *archive.StanzaRow) error {
			if strings.Contains(r.Raw, "sent from my phone") {
				n++
			}
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("compliance archive: %d rows, want 1", n)
	}

	// Not on behalf of someone who is not a user here, nor to someone
	// outside the transport.
	for i, inner := range []string{
		`<message xmlns='jabber:client' from='alice@elsewhere.example' to='bob@` + slidge + `' type='chat'><body>x</body></message>`,
		`<message xmlns='jabber:client' from='alice@localhost' to='dave@localhost' type='chat'><body>x</body></message>`,
	} {
		id := fmt.Sprintf("bad%d", i)
		k.send(`<message from='%s' to='localhost' id='%s'><privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>%s</forwarded></privilege></message>`, slidge, id, inner)
		r := k.expect("refusal", func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.ID == id })
		if r.ErrorCondition() != stanza.Forbidden {
			t.Errorf("case %d: %s", i, r)
		}
	}
	// A transport without the message permission.
	p := dial(t, ts, spectrum)
	p.send(`<message from='%s' to='localhost' id='np'><privilege xmlns='urn:xmpp:privilege:1'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='alice@localhost' to='bob@%[1]s'><body>x</body></message></forwarded></privilege></message>`, spectrum)
	if r := p.expect("refusal", func(s *stanza.Stanza) bool { return s.ID == "np" }); r.ErrorCondition() != stanza.Forbidden {
		t.Errorf("no message permission: %s", r)
	}
	alice.ExpectNone(func(s *stanza.Stanza) bool { return s.Child("urn:xmpp:carbons:2", "sent") != nil }, 200*time.Millisecond)
}

func TestPresenceCopy(t *testing.T) {
	ts := setup(t)
	k := dial(t, ts, slidge)
	k.expect("advertisement", func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage })
	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<presence><show>away</show></presence>`)
	p := k.expect("presence", func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence })
	if p.From.String() != "alice@localhost/laptop" || p.Child("", "show").Text() != "away" || p.Type != "" {
		t.Errorf("presence copy %s", p)
	}
	alice.Close()
	p = k.expect("unavailable", func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "unavailable" })
	if p.From.String() != "alice@localhost/laptop" {
		t.Errorf("unavailable %s", p)
	}
}

// XEP-0144 roster item exchange from a transport reaches the user's
// client unchanged, as a message to the bare JID and as an iq to a full
// JID.
func TestRosterItemExchangeRouted(t *testing.T) {
	ts := setup(t)
	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<presence/>`)
	alice.Expect(xmpptest.IsPresence("", "alice@localhost"))
	k := dial(t, ts, plain)
	k.send(`<message from='%s' to='alice@localhost' id='rx1'><body>suggested contacts</body><x xmlns='http://jabber.org/protocol/rosterx'><item action='add' jid='x@%[1]s' name='X'/></x></message>`, plain)
	m := alice.Expect(func(s *stanza.Stanza) bool { return s.ID == "rx1" })
	if x := m.Child("http://jabber.org/protocol/rosterx", "x"); x == nil || x.Child("http://jabber.org/protocol/rosterx", "item").AttrValue("jid") != "x@"+plain {
		t.Fatalf("rosterx message: %s", m)
	}
	k.send(`<iq type='set' from='%s' to='alice@localhost/laptop' id='rx2'><x xmlns='http://jabber.org/protocol/rosterx'><item action='add' jid='y@%[1]s'/></x></iq>`, plain)
	iq := alice.Expect(xmpptest.IsIQ("rx2"))
	if iq.Child("http://jabber.org/protocol/rosterx", "x") == nil {
		t.Fatalf("rosterx iq: %s", iq)
	}
	alice.Sendf(`<iq type='result' to='%s' id='rx2'/>`, plain)
	if r := k.expect("the client's answer", isIQ("rx2")); r.Type != "result" {
		t.Fatalf("answer: %s", r)
	}
}
