package muc_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/muc"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const (
	service = "conference.localhost"
	room    = "team@conference.localhost"
)

var ids atomic.Uint64

func nextID() string { return fmt.Sprintf("t%d", ids.Add(1)) }

// users logs each name in (password = name + "-pw") and returns the clients.
func users(t *testing.T, ts *xmpptest.TestServer, names ...string) map[string]*xmpptest.Client {
	t.Helper()
	out := make(map[string]*xmpptest.Client, len(names))
	for _, n := range names {
		ts.AddUser(t, n, n+"-pw")
		c := ts.Dial(t, n, n+"-pw", xmpptest.ClientOptions{Resource: "res"})
		t.Cleanup(c.Close)
		// Available, so that messages to the bare JID are delivered live.
		c.Send(`<presence/>`)
		c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.Equal(c.JID) })
		out[n] = c
	}
	return out
}

// iq sends an iq (its id is filled in) and returns the answer.
func iq(c *xmpptest.Client, format string, args ...any) *stanza.Stanza {
	id := nextID()
	c.Sendf(strings.Replace(format, "<iq ", "<iq id='"+id+"' ", 1), args...)
	return c.Expect(xmpptest.IsIQ(id))
}

func mucX(st *stanza.Stanza) *stanza.Element { return st.Child(muc.NSUser, "x") }

func hasStatus(st *stanza.Stanza, code string) bool {
	x := mucX(st)
	if x == nil {
		return false
	}
	for _, s := range x.Elements() {
		if s.Name.Local == "status" && s.AttrValue("code") == code {
			return true
		}
	}
	return false
}

func item(st *stanza.Stanza) *stanza.Element {
	if x := mucX(st); x != nil {
		return x.Child(muc.NSUser, "item")
	}
	return nil
}

// presenceFrom matches presence of type typ from room/nick.
func presenceFrom(nick, typ string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.Type == typ && s.From.String() == room+"/"+nick
	}
}

func isSubject(s *stanza.Stanza) bool {
	return s.Kind == stanza.KindMessage && s.Type == "groupchat" && s.Child("", "subject") != nil && s.Body() == ""
}

// join enters the room as nick and waits for the end of the join (the
// subject); it returns the client's own presence.
func join(t *testing.T, c *xmpptest.Client, nick, inner string) *stanza.Stanza {
	t.Helper()
	c.Sendf(`<presence to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'>%s</x></presence>`, room, nick, inner)
	self := c.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == room+"/"+nick && (hasStatus(s, "110") || s.Type == "error")
	})
	if self.Type == "error" {
		return self
	}
	c.Expect(isSubject)
	return self
}

// create makes the room as alice's and submits the given fields (an
// instant room when none).
func create(t *testing.T, c *xmpptest.Client, nick string, fields map[string]string) {
	t.Helper()
	self := join(t, c, nick, "")
	if !hasStatus(self, "201") || item(self).AttrValue("affiliation") != "owner" {
		t.Fatalf("creator's presence: %s", self)
	}
	configure(t, c, fields)
}

func configure(t *testing.T, c *xmpptest.Client, fields map[string]string) *stanza.Stanza {
	t.Helper()
	var b strings.Builder
	b.WriteString(`<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`)
	for k, v := range fields {
		fmt.Fprintf(&b, `<field var='%s'><value>%s</value></field>`, k, v)
	}
	res := iq(c, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>%s</x></query></iq>`, room, b.String())
	if res.Type != "result" {
		t.Fatalf("configure: %s", res)
	}
	return res
}

func say(c *xmpptest.Client, body string) {
	c.Sendf(`<message to='%s' type='groupchat' id='%s'><body>%s</body></message>`, room, nextID(), body)
}

func groupchat(body string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Type == "groupchat" && s.Body() == body
	}
}

func errorCond(st *stanza.Stanza) stanza.Condition {
	if st.Type != "error" {
		return ""
	}
	return st.ErrorCondition()
}

func TestCreateConfigureJoinTalkHistoryArchive(t *testing.T) {
	ts := xmpptest.RunServer(t)
	c := users(t, ts, "alice", "bob", "carol")
	alice, bob, carol := c["alice"], c["bob"], c["carol"]

	// A new room is locked until its owner configures it.
	self := join(t, alice, "Alice", "")
	if !hasStatus(self, "201") || !hasStatus(self, "110") || item(self).AttrValue("role") != "moderator" {
		t.Fatalf("creator's presence: %s", self)
	}
	if p := join(t, bob, "Bob", ""); errorCond(p) != stanza.ItemNotFound {
		t.Fatalf("joining a locked room: %s", p)
	}
	form := iq(alice, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`, room)
	if !strings.Contains(form.String(), "muc#roomconfig_persistentroom") || !strings.Contains(form.String(), "muc#roomconfig_whois") {
		t.Fatalf("configuration form: %s", form)
	}
	if res := iq(bob, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`, room); errorCond(res) != stanza.ItemNotFound {
		t.Fatalf("a stranger asked for the form of a locked room: %s", res)
	}
	configure(t, alice, map[string]string{
		"muc#roomconfig_roomname": "Team", "muc#roomconfig_persistentroom": "1", "muc#roomconfig_whois": "anyone",
	})
	alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && hasStatus(s, "172") })

	// A bad value fails the whole form.
	res := iq(alice, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_maxusers'><value>lots</value></field></x></query></iq>`, room)
	if errorCond(res) != stanza.NotAcceptable {
		t.Fatalf("bad form: %s", res)
	}

	self = join(t, bob, "Bob", "")
	if !hasStatus(self, "100") || item(self).AttrValue("jid") != bob.JID.String() || self.Child(muc.NSOccupantID, "occupant-id") == nil {
		t.Fatalf("bob's own presence: %s", self)
	}
	// Bob saw Alice before himself; Alice sees Bob arrive.
	bob.Expect(presenceFrom("Alice", ""))
	if p := alice.Expect(presenceFrom("Bob", "")); item(p).AttrValue("role") != "participant" {
		t.Fatalf("bob as alice sees him: %s", p)
	}
	// A nickname in use by someone else is refused.
	if p := join(t, carol, "Bob", ""); errorCond(p) != stanza.Conflict {
		t.Fatalf("nick conflict: %s", p)
	}

	say(alice, "one")
	for _, cl := range []*xmpptest.Client{alice, bob} {
		m := cl.Expect(groupchat("one"))
		if m.From.String() != room+"/Alice" {
			t.Fatalf("from: %s", m)
		}
		sid := m.Child(muc.NSSID, "stanza-id")
		if sid == nil || sid.AttrValue("by") != room || m.Child(muc.NSOccupantID, "occupant-id") == nil {
			t.Fatalf("message lacks stanza-id or occupant-id: %s", m)
		}
	}
	say(bob, "two")
	alice.Expect(groupchat("two"))
	bob.Expect(groupchat("two"))
	// The subject, set by a moderator.
	alice.Sendf(`<message to='%s' type='groupchat'><subject>Plans</subject></message>`, room)
	bob.Expect(func(s *stanza.Stanza) bool { return isSubject(s) && s.Child("", "subject").Text() == "Plans" })

	// History on join, limited as asked; then the subject.
	carol.Sendf(`<presence to='%s/Carol'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='1'/></x></presence>`, room)
	h := carol.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() != "" })
	if h.Body() != "two" || h.Child(stanza.NSDelay, "delay") == nil {
		t.Fatalf("history: %s", h)
	}
	if subj := carol.Expect(isSubject); subj.Child("", "subject").Text() != "Plans" {
		t.Fatalf("subject on join: %s", subj)
	}

	// Private message.
	bob.Sendf(`<message to='%s/Carol' type='chat'><body>psst</body></message>`, room)
	if pm := carol.Expect(xmpptest.IsMessage("psst")); pm.From.String() != room+"/Bob" || mucX(pm) == nil {
		t.Fatalf("private message: %s", pm)
	}

	// The room archive, as an occupant sees it.
	qid := nextID()
	fin := iq(carol, `<iq type='set' to='%s'><query xmlns='urn:xmpp:mam:2' queryid='%s'/></iq>`, room, qid)
	if fin.Type != "result" || fin.Child("urn:xmpp:mam:2", "fin") == nil {
		t.Fatalf("archive query: %s", fin)
	}
	var bodies []string
	for range 2 {
		r := carol.Expect(func(s *stanza.Stanza) bool { return s.Child("urn:xmpp:mam:2", "result") != nil })
		if r.From.String() != room {
			t.Fatalf("archive result from %s", r.From)
		}
		fwd := r.Child("urn:xmpp:mam:2", "result").Child("urn:xmpp:forward:0", "forwarded")
		bodies = append(bodies, fwd.Child("", "message").ChildText("", "body"))
	}
	if strings.Join(bodies, ",") != "one,two" {
		t.Fatalf("archive: %v", bodies)
	}

	// Discovery: the server lists the service, the service lists the room,
	// the room describes itself.
	if host := iq(bob, `<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`); !strings.Contains(host.String(), service) {
		t.Fatalf("server items: %s", host)
	}
	if svc := iq(bob, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, service); !strings.Contains(svc.String(), "conference") {
		t.Fatalf("service info: %s", svc)
	}
	items := iq(bob, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`, service)
	if !strings.Contains(items.String(), room) {
		t.Fatalf("service items: %s", items)
	}
	info := iq(bob, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, room)
	for _, f := range []string{"muc_persistent", "muc_nonanonymous", "urn:xmpp:mam:2", muc.NSOccupantID, muc.NSModerate, muc.NSSelfPing} {
		if !strings.Contains(info.String(), "'"+f+"'") && !strings.Contains(info.String(), `"`+f+`"`) {
			t.Fatalf("room disco#info lacks %s: %s", f, info)
		}
	}

	// A join from a client that is already inside (it reconnected before
	// the room saw it leave) gets the room state again.
	if self := join(t, carol, "Carol", ""); self.Type == "error" || !hasStatus(self, "110") {
		t.Fatalf("rejoin: %s", self)
	}

	// Leaving: everyone is told, the leaver gets 110.
	carol.Sendf(`<presence to='%s/Carol' type='unavailable'/>`, room)
	if p := carol.Expect(presenceFrom("Carol", "unavailable")); !hasStatus(p, "110") {
		t.Fatalf("own leave: %s", p)
	}
	bob.Expect(presenceFrom("Carol", "unavailable"))

	// Nickname change (XEP-0045 §7.6).
	bob.Sendf(`<presence to='%s/Robert'/>`, room)
	if p := alice.Expect(presenceFrom("Bob", "unavailable")); !hasStatus(p, "303") || item(p).AttrValue("nick") != "Robert" {
		t.Fatalf("nick change: %s", p)
	}
	alice.Expect(presenceFrom("Robert", ""))
}

func TestKickBanMembersOnlyPasswordModerated(t *testing.T) {
	ts := xmpptest.RunServer(t)
	c := users(t, ts, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := c["alice"], c["bob"], c["carol"], c["dave"]
	create(t, alice, "Alice", nil)

	join(t, bob, "Bob", "")
	alice.Expect(presenceFrom("Bob", ""))

	// Kick.
	res := iq(alice, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Bob' role='none'><reason>calm down</reason></item></query></iq>`, room)
	if res.Type != "result" {
		t.Fatalf("kick: %s", res)
	}
	if p := bob.Expect(presenceFrom("Bob", "unavailable")); !hasStatus(p, "307") || !hasStatus(p, "110") || item(p).ChildText(muc.NSUser, "reason") != "calm down" {
		t.Fatalf("kicked presence: %s", p)
	}
	alice.Expect(presenceFrom("Bob", "unavailable"))
	// A participant may not kick the owner.
	join(t, bob, "Bob", "")
	res = iq(bob, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Alice' role='none'/></query></iq>`, room)
	if errorCond(res) != stanza.Forbidden {
		t.Fatalf("participant kicking the owner: %s", res)
	}

	// Ban.
	res = iq(alice, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@localhost' affiliation='outcast'/></query></iq>`, room)
	if res.Type != "result" {
		t.Fatalf("ban: %s", res)
	}
	if p := bob.Expect(presenceFrom("Bob", "unavailable")); !hasStatus(p, "301") {
		t.Fatalf("banned presence: %s", p)
	}
	if p := join(t, bob, "Bob", ""); errorCond(p) != stanza.Forbidden {
		t.Fatalf("banned user rejoined: %s", p)
	}
	list := iq(alice, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query></iq>`, room)
	if !strings.Contains(list.String(), "bob@localhost") {
		t.Fatalf("outcast list: %s", list)
	}

	// Members only; a mediated invitation makes the invitee a member.
	configure(t, alice, map[string]string{"muc#roomconfig_membersonly": "1"})
	if p := join(t, carol, "Carol", ""); errorCond(p) != stanza.RegistrationRequiredCond {
		t.Fatalf("non-member joined a members-only room: %s", p)
	}
	alice.Sendf(`<message to='%s'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='carol@localhost'><reason>join us</reason></invite></x></message>`, room)
	inv := carol.Expect(func(s *stanza.Stanza) bool { return mucX(s) != nil && mucX(s).Child(muc.NSUser, "invite") != nil })
	if inv.From.String() != room || mucX(inv).Child(muc.NSUser, "invite").AttrValue("from") != "alice@localhost" {
		t.Fatalf("invitation: %s", inv)
	}
	if p := join(t, carol, "Carol", ""); p.Type == "error" {
		t.Fatalf("invited member could not join: %s", p)
	}

	// Password.
	configure(t, alice, map[string]string{"muc#roomconfig_membersonly": "0", "muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3cret"})
	if p := join(t, dave, "Dave", ""); errorCond(p) != stanza.NotAuthorized {
		t.Fatalf("joined without the password: %s", p)
	}
	if p := join(t, dave, "Dave", "<password>s3cret</password>"); p.Type == "error" {
		t.Fatalf("joined with the password: %s", p)
	}

	// Moderated: a newcomer is a visitor and may not speak until given voice.
	configure(t, alice, map[string]string{"muc#roomconfig_passwordprotectedroom": "0", "muc#roomconfig_moderatedroom": "1"})
	dave.Expect(func(s *stanza.Stanza) bool {
		return presenceFrom("Dave", "")(s) && item(s).AttrValue("role") == "visitor"
	})
	dave.Sendf(`<message to='%s' type='groupchat' id='v1'><body>hi</body></message>`, room)
	if e := dave.Expect(func(s *stanza.Stanza) bool { return s.ID == "v1" }); errorCond(e) != stanza.Forbidden {
		t.Fatalf("visitor spoke: %s", e)
	}
	// Dave asks for voice (XEP-0045 §7.13); the moderator approves the form.
	dave.Sendf(`<message to='%s'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#role'><value>participant</value></field></x></message>`, room)
	req := alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Child("jabber:x:data", "x") != nil
	})
	if !strings.Contains(req.String(), "dave@localhost") || !strings.Contains(req.String(), "muc#request_allow") {
		t.Fatalf("voice request form: %s", req)
	}
	alice.Sendf(`<message to='%s'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#role'><value>participant</value></field><field var='muc#roomnick'><value>Dave</value></field><field var='muc#request_allow'><value>true</value></field></x></message>`, room)
	dave.Expect(func(s *stanza.Stanza) bool {
		return presenceFrom("Dave", "")(s) && item(s).AttrValue("role") == "participant"
	})
	say(dave, "thanks")
	alice.Expect(groupchat("thanks"))
	// Revoking voice through muc#admin.
	res = iq(alice, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Dave' role='visitor'/></query></iq>`, room)
	if res.Type != "result" {
		t.Fatalf("revoke voice: %s", res)
	}
	dave.Expect(func(s *stanza.Stanza) bool {
		return presenceFrom("Dave", "")(s) && item(s).AttrValue("role") == "visitor"
	})
}

func TestSelfPingModerationInvites(t *testing.T) {
	ts := xmpptest.RunServer(t)
	c := users(t, ts, "alice", "bob", "carol")
	alice, bob, carol := c["alice"], c["bob"], c["carol"]
	create(t, alice, "Alice", nil)
	join(t, bob, "Bob", "")

	// XEP-0410: the room answers a ping to one's own occupant JID.
	if res := iq(bob, `<iq type='get' to='%s/Bob'><ping xmlns='urn:xmpp:ping'/></iq>`, room); res.Type != "result" {
		t.Fatalf("self-ping: %s", res)
	}
	if res := iq(carol, `<iq type='get' to='%s/Bob'><ping xmlns='urn:xmpp:ping'/></iq>`, room); errorCond(res) != stanza.NotAcceptable {
		t.Fatalf("self-ping from a non-occupant: %s", res)
	}

	// Requests to another occupant are relayed under the room's name, and
	// so is the answer; vCards come from the occupant's account.
	bob.Sendf(`<iq type='get' id='ver1' to='%s/Alice'><query xmlns='jabber:iq:version'/></iq>`, room)
	req := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindIQ && s.Type == "get" })
	if req.From.String() != room+"/Bob" || req.ID == "ver1" {
		t.Fatalf("relayed request: %s", req)
	}
	alice.Sendf(`<iq type='result' id='%s' to='%s'><query xmlns='jabber:iq:version'><name>test</name></query></iq>`, req.ID, req.From)
	if ans := bob.Expect(xmpptest.IsIQ("ver1")); ans.Type != "result" || ans.From.String() != room+"/Alice" || !strings.Contains(ans.String(), "test") {
		t.Fatalf("relayed answer: %s", ans)
	}
	if res := iq(alice, `<iq type='set'><vCard xmlns='vcard-temp'><FN>Alice A.</FN></vCard></iq>`); res.Type != "result" {
		t.Fatalf("vcard set: %s", res)
	}
	if res := iq(bob, `<iq type='get' to='%s/Alice'><vCard xmlns='vcard-temp'/></iq>`, room); res.Type != "result" || !strings.Contains(res.String(), "Alice A.") {
		t.Fatalf("occupant vCard: %s", res)
	}

	// XEP-0425: a moderator retracts Bob's message.
	say(bob, "regrettable")
	m := alice.Expect(groupchat("regrettable"))
	sid := m.Child(muc.NSSID, "stanza-id").AttrValue("id")
	res := iq(alice, `<iq type='set' to='%s'><moderate xmlns='urn:xmpp:message-moderate:1' id='%s'><retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate></iq>`, room, sid)
	if res.Type != "result" {
		t.Fatalf("moderate: %s", res)
	}
	ann := bob.Expect(func(s *stanza.Stanza) bool { return s.Child(muc.NSRetract, "retract") != nil })
	if r := ann.Child(muc.NSRetract, "retract"); r.AttrValue("id") != sid || r.Child(muc.NSModerate, "moderated").AttrValue("by") != room+"/Alice" {
		t.Fatalf("retraction: %s", ann)
	}
	if res := iq(bob, `<iq type='set' to='%s'><moderate xmlns='urn:xmpp:message-moderate:1' id='%s'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>`, room, sid); errorCond(res) != stanza.Forbidden {
		t.Fatalf("participant moderated: %s", res)
	}
	// The archive keeps a tombstone, not the text.
	fin := iq(bob, `<iq type='set' to='%s'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field><field var='ids'><value>%s</value></field></x></query></iq>`, room, sid)
	if fin.Type != "result" {
		t.Fatalf("archive query: %s", fin)
	}
	r := bob.Expect(func(s *stanza.Stanza) bool { return s.Child("urn:xmpp:mam:2", "result") != nil })
	if s := r.String(); strings.Contains(s, "regrettable") || !strings.Contains(s, "retracted") {
		t.Fatalf("archived after moderation: %s", s)
	}

	// XEP-0249 direct invitation: client to client, routed like any message.
	alice.Sendf(`<message to='carol@localhost'><x xmlns='jabber:x:conference' jid='%s' reason='come'/></message>`, room)
	if d := carol.Expect(func(s *stanza.Stanza) bool { return s.Child("jabber:x:conference", "x") != nil }); d.From.Bare().String() != "alice@localhost" {
		t.Fatalf("direct invitation: %s", d)
	}
	// Declining a mediated invitation reaches the inviter; a decline of an
	// invitation the room never relayed is refused (the room relays no
	// messages in its name to arbitrary addresses).
	carol.Sendf(`<message to='%s' id='d0'><x xmlns='http://jabber.org/protocol/muc#user'><decline to='bob@localhost'/></x></message>`, room)
	if e := carol.Expect(func(s *stanza.Stanza) bool { return s.ID == "d0" }); errorCond(e) != stanza.NotAcceptable {
		t.Fatalf("decline without invitation: %s", e)
	}
	alice.Sendf(`<message to='%s'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='carol@localhost'/></x></message>`, room)
	carol.Expect(func(s *stanza.Stanza) bool { return mucX(s) != nil && mucX(s).Child(muc.NSUser, "invite") != nil })
	carol.Sendf(`<message to='%s'><x xmlns='http://jabber.org/protocol/muc#user'><decline to='alice@localhost'><reason>busy</reason></decline></x></message>`, room)
	if d := alice.Expect(func(s *stanza.Stanza) bool { return mucX(s) != nil && mucX(s).Child(muc.NSUser, "decline") != nil }); d.From.String() != room {
		t.Fatalf("decline: %s", d)
	}

	// A client that disconnects leaves the room (its directed presence is revoked).
	bob.Close()
	if p := alice.Expect(presenceFrom("Bob", "unavailable")); item(p) == nil {
		t.Fatalf("leave on disconnect: %s", p)
	}
	// Destroying the room.
	res = iq(alice, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy><reason>done</reason></destroy></query></iq>`, room)
	if res.Type != "result" {
		t.Fatalf("destroy: %s", res)
	}
	if p := alice.Expect(presenceFrom("Alice", "unavailable")); mucX(p).Child(muc.NSUser, "destroy") == nil {
		t.Fatalf("destroy presence: %s", p)
	}
	if res := iq(carol, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, room); errorCond(res) != stanza.ItemNotFound {
		t.Fatalf("destroyed room still answers: %s", res)
	}
}

func TestPersistentRoomSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *config.Config) { c.DataDir = dir }
	ts := xmpptest.RunServer(t, withDir)
	c := users(t, ts, "alice", "bob")
	alice, bob := c["alice"], c["bob"]
	create(t, alice, "Alice", map[string]string{"muc#roomconfig_persistentroom": "1", "muc#roomconfig_roomname": "Kept"})
	iq(alice, `<iq type='set' to='%s'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@localhost' affiliation='member'/></query></iq>`, room)
	say(alice, "before restart")
	alice.Expect(groupchat("before restart"))
	alice.Close()
	bob.Close()
	ts.Stop()

	ts2 := xmpptest.RunServer(t, withDir)
	b2 := ts2.Dial(t, "bob", "bob-pw", xmpptest.ClientOptions{})
	t.Cleanup(b2.Close)
	b2.Sendf(`<presence to='%s/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	self := b2.Expect(func(s *stanza.Stanza) bool { return hasStatus(s, "110") })
	if hasStatus(self, "201") || item(self).AttrValue("affiliation") != "member" {
		t.Fatalf("rejoining the kept room: %s", self)
	}
	if h := b2.Expect(groupchat("before restart")); h.Child(stanza.NSDelay, "delay") == nil {
		t.Fatalf("history after restart: %s", h)
	}
	info := iq(b2, `<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, room)
	if !strings.Contains(info.String(), "Kept") {
		t.Fatalf("room name after restart: %s", info)
	}
	_ = time.Second
}
