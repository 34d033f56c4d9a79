package pubsub_test

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"gatehouse/xmpp/mod/pubsub"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
	"gatehouse/xmpp/xmpptest"
)

const capsNode = "https://gatehouse.test/client"

// capsVer computes the XEP-0115 §5.1 ver of a client with one identity
// (client/pc, no name) and the given features.
func capsVer(features []string) string {
	f := append([]string(nil), features...)
	sort.Strings(f)
	s := "client/pc//<" + strings.Join(f, "<") + "<"
	sum := sha1.Sum([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

type env struct {
	ts *xmpptest.TestServer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ts := xmpptest.RunServer(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, u+" pw")
	}
	return &env{ts: ts}
}

// friends makes a and b mutual contacts ('both').
func (e *env) friends(t *testing.T, a, b string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range [][2]string{{a, b}, {b, a}} {
		if _, err := e.ts.DB().PutRosterItem(ctx, p[0], storage.RosterItem{JID: p[1] + "@localhost", Subscription: storage.SubBoth}); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) dial(t *testing.T, user, res string) *xmpptest.Client {
	t.Helper()
	return e.ts.Dial(t, user, user+" pw", xmpptest.ClientOptions{Resource: res})
}

// available sends presence with caps for features. If answer is set, the
// client expects the server's disco#info query for them and answers it.
func available(t *testing.T, c *xmpptest.Client, features []string, answer bool, to string) {
	t.Helper()
	ver := capsVer(features)
	if to != "" {
		to = " to='" + to + "'"
	}
	c.Sendf(`<presence%s><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>`, to, pubsub.NSCaps, capsNode, ver)
	if !answer {
		return
	}
	q := c.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindIQ && s.Type == "get" && s.Child(pubsub.NSDiscoInfo, "query") != nil
	})
	if got := q.Child(pubsub.NSDiscoInfo, "query").AttrValue("node"); got != capsNode+"#"+ver {
		t.Fatalf("caps query for node %q, want %q", got, capsNode+"#"+ver)
	}
	var b strings.Builder
	b.WriteString(`<identity category='client' type='pc'/>`)
	for _, f := range features {
		fmt.Fprintf(&b, `<feature var='%s'/>`, f)
	}
	c.Sendf(`<iq type='result' id='%s' to='%s'><query xmlns='%s' node='%s#%s'>%s</query></iq>`,
		q.ID, q.From, pubsub.NSDiscoInfo, capsNode, ver, b.String())
}

// iq sends an iq and returns the answer.
func iq(t *testing.T, c *xmpptest.Client, typ, to, inner string) *stanza.Stanza {
	t.Helper()
	id := fmt.Sprintf("q%d", nextID())
	if to != "" {
		to = " to='" + to + "'"
	}
	c.Sendf(`<iq type='%s' id='%s'%s>%s</iq>`, typ, id, to, inner)
	return c.Expect(xmpptest.IsIQ(id))
}

var idCounter atomic.Int64

func nextID() int64 { return idCounter.Add(1) }

func mustResult(t *testing.T, r *stanza.Stanza) *stanza.Stanza {
	t.Helper()
	if r.Type != "result" {
		t.Fatalf("want result, got %s", r)
	}
	return r
}

func wantError(t *testing.T, r *stanza.Stanza, cond stanza.Condition, app string) {
	t.Helper()
	if r.Type != "error" || r.ErrorCondition() != cond {
		t.Fatalf("want error %s, got %s", cond, r)
	}
	if app != "" && r.Child("", "error").Child(pubsub.NSErrors, app) == nil {
		t.Fatalf("want pubsub#errors %s, got %s", app, r)
	}
}

// isEvent matches a pubsub event for node from 'from'; item is an item
// id that must be in it ("" any).
func isEvent(from, node, item string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		if s.Kind != stanza.KindMessage || s.From.String() != from {
			return false
		}
		ev := s.Child(pubsub.NSEvent, "event")
		if ev == nil {
			return false
		}
		items := ev.Child(pubsub.NSEvent, "items")
		if items == nil || items.AttrValue("node") != node {
			return false
		}
		if item == "" {
			return true
		}
		for _, it := range items.Elements() {
			if it.AttrValue("id") == item {
				return true
			}
		}
		return false
	}
}

const tuneNS = "http://jabber.org/protocol/tune"

func publish(node, id, payload, options string) string {
	po := ""
	if options != "" {
		po = `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` + options + `</x></publish-options>`
	}
	return fmt.Sprintf(`<pubsub xmlns='%s'><publish node='%s'><item id='%s'>%s</item></publish>%s</pubsub>`, pubsub.NS, node, id, payload, po)
}

func field(v, val string) string {
	return fmt.Sprintf(`<field var='%s'><value>%s</value></field>`, v, val)
}

// TestPEPNotifyWithCaps: a publication reaches the contacts (and own
// resources) whose caps ask for it, not others; a resource coming online
// later gets the last item; strangers are refused by the presence access
// model but see an open node.
func TestPEPNotifyWithCaps(t *testing.T) {
	e := newEnv(t)
	e.friends(t, "alice", "bob")
	feats := []string{pubsub.NSDiscoInfo, tuneNS + "+notify", "urn:xmpp:open+notify"}

	alice := e.dial(t, "alice", "a1")
	available(t, alice, feats, true, "")
	bob := e.dial(t, "bob", "b1")
	available(t, bob, feats, false, "") // same caps: already known
	carol := e.dial(t, "carol", "c1")
	available(t, carol, feats, false, "alice@localhost") // directed presence, not a contact
	alice.Expect(xmpptest.IsPresence("", "bob@localhost"))
	bob.Ping()
	carol.Ping()

	tune := `<tune xmlns='` + tuneNS + `'><artist>Yes</artist><title>Heart of the Sunrise</title></tune>`
	r := mustResult(t, iq(t, alice, "set", "", publish(tuneNS, "t1", tune, "")))
	if r.Child(pubsub.NS, "pubsub").Child(pubsub.NS, "publish").Child(pubsub.NS, "item").AttrValue("id") != "t1" {
		t.Fatalf("publish result %s", r)
	}
	ev := bob.Expect(isEvent("alice@localhost", tuneNS, "t1"))
	if ev.Type != "headline" || !strings.Contains(ev.String(), "Heart of the Sunrise") {
		t.Fatalf("notification %s", ev)
	}
	alice.Expect(isEvent("alice@localhost", tuneNS, "t1")) // own resource with +notify

	// An open node reaches carol; the tune (presence access) did not.
	mustResult(t, iq(t, alice, "set", "", publish("urn:xmpp:open", "o1", `<x xmlns='urn:xmpp:open'/>`, field("pubsub#access_model", "open"))))
	first := carol.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage })
	if !isEvent("alice@localhost", "urn:xmpp:open", "o1")(first) {
		t.Fatalf("carol's first message is not the open node's event: %s", first)
	}

	// Items: the contact may read, the stranger may not.
	items := mustResult(t, iq(t, bob, "get", "alice@localhost", `<pubsub xmlns='`+pubsub.NS+`'><items node='`+tuneNS+`'/></pubsub>`))
	if !strings.Contains(items.String(), "Heart of the Sunrise") {
		t.Fatalf("items %s", items)
	}
	wantError(t, iq(t, carol, "get", "alice@localhost", `<pubsub xmlns='`+pubsub.NS+`'><items node='`+tuneNS+`'/></pubsub>`),
		stanza.NotAuthorized, "presence-subscription-required")

	// A second resource of bob comes online: it gets the last item.
	bob2 := e.dial(t, "bob", "b2")
	available(t, bob2, feats, false, "")
	bob2.Expect(isEvent("alice@localhost", tuneNS, "t1"))

	// publish-options that do not match the node: precondition-not-met.
	wantError(t, iq(t, alice, "set", "", publish(tuneNS, "t2", tune, field("pubsub#access_model", "open"))),
		stanza.Conflict, "precondition-not-met")

	// Retract with notify.
	mustResult(t, iq(t, alice, "set", "", `<pubsub xmlns='`+pubsub.NS+`'><retract node='`+tuneNS+`' notify='true'><item id='t1'/></retract></pubsub>`))
	bob.Expect(func(s *stanza.Stanza) bool {
		ev := s.Child(pubsub.NSEvent, "event")
		return ev != nil && ev.Child(pubsub.NSEvent, "items") != nil && ev.Child(pubsub.NSEvent, "items").Child(pubsub.NSEvent, "retract") != nil
	})
}

// TestPEPNoNotifyWithoutCaps: a contact whose caps lack +notify gets no
// event, while one with it does (order shows the first got nothing).
func TestPEPNoNotifyWithoutCaps(t *testing.T) {
	e := newEnv(t)
	e.friends(t, "alice", "bob")
	e.friends(t, "alice", "carol")
	alice := e.dial(t, "alice", "a1")
	alice.Send(`<presence/>`)
	bob := e.dial(t, "bob", "b1")
	available(t, bob, []string{pubsub.NSDiscoInfo}, true, "") // no +notify
	carol := e.dial(t, "carol", "c1")
	available(t, carol, []string{pubsub.NSDiscoInfo, tuneNS + "+notify"}, true, "")
	alice.Expect(xmpptest.IsPresence("", "bob@localhost"))
	alice.Expect(xmpptest.IsPresence("", "carol@localhost"))
	mustResult(t, iq(t, alice, "set", "", publish(tuneNS, "t1", `<tune xmlns='`+tuneNS+`'/>`, "")))
	carol.Expect(isEvent("alice@localhost", tuneNS, "t1"))
	// bob: an explicit message from alice arrives with nothing before it.
	alice.Send(`<message to='bob@localhost/b1' type='chat'><body>marker</body></message>`)
	got := bob.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage })
	if got.Body() != "marker" {
		t.Fatalf("bob got %s before the marker", got)
	}
}

// TestPEPAccessWhitelistAndDisco covers whitelist nodes, affiliations and
// the account's disco#info identity.
func TestPEPAccessWhitelistAndDisco(t *testing.T) {
	e := newEnv(t)
	e.friends(t, "alice", "bob")
	alice := e.dial(t, "alice", "a1")
	bob := e.dial(t, "bob", "b1")
	carol := e.dial(t, "carol", "c1")

	info := mustResult(t, iq(t, alice, "get", "alice@localhost", `<query xmlns='`+pubsub.NSDiscoInfo+`'/>`))
	s := info.String()
	for _, want := range []string{`category="pubsub"`, `type="pep"`, pubsub.NS + "#publish-options", "urn:xmpp:bookmarks:1#compat"} {
		if !strings.Contains(s, want) {
			t.Fatalf("account disco#info lacks %s: %s", want, s)
		}
	}
	mustResult(t, iq(t, bob, "get", "alice@localhost", `<query xmlns='`+pubsub.NSDiscoInfo+`'/>`))
	wantError(t, iq(t, carol, "get", "alice@localhost", `<query xmlns='`+pubsub.NSDiscoInfo+`'/>`), stanza.ServiceUnavailable, "")

	mustResult(t, iq(t, alice, "set", "", publish("urn:xmpp:secret", "s1", `<s xmlns='urn:xmpp:secret'>x</s>`, field("pubsub#access_model", "whitelist"))))
	get := `<pubsub xmlns='` + pubsub.NS + `'><items node='urn:xmpp:secret'/></pubsub>`
	wantError(t, iq(t, bob, "get", "alice@localhost", get), stanza.NotAllowed, "closed-node")
	mustResult(t, iq(t, alice, "set", "", `<pubsub xmlns='`+pubsub.NSOwner+`'><affiliations node='urn:xmpp:secret'><affiliation jid='carol@localhost' affiliation='member'/></affiliations></pubsub>`))
	mustResult(t, iq(t, carol, "get", "alice@localhost", get))
	wantError(t, iq(t, bob, "set", "alice@localhost", publish("urn:xmpp:secret", "s2", `<s xmlns='urn:xmpp:secret'/>`, "")), stanza.Forbidden, "")

	// Node disco on the account.
	ni := mustResult(t, iq(t, carol, "get", "alice@localhost", `<query xmlns='`+pubsub.NSDiscoInfo+`' node='urn:xmpp:secret'/>`))
	if !strings.Contains(ni.String(), `type="leaf"`) {
		t.Fatalf("node info %s", ni)
	}
	// Configure round trip.
	cfg := mustResult(t, iq(t, alice, "get", "", `<pubsub xmlns='`+pubsub.NSOwner+`'><configure node='urn:xmpp:secret'/></pubsub>`))
	if !strings.Contains(cfg.String(), "whitelist") {
		t.Fatalf("configure form %s", cfg)
	}
	wantError(t, iq(t, alice, "set", "", `<pubsub xmlns='`+pubsub.NSOwner+`'><configure node='urn:xmpp:secret'><x xmlns='jabber:x:data' type='submit'>`+field("pubsub#access_model", "roster")+`</x></configure></pubsub>`),
		stanza.NotAcceptable, "")
	mustResult(t, iq(t, alice, "set", "", `<pubsub xmlns='`+pubsub.NSOwner+`'><delete node='urn:xmpp:secret'/></pubsub>`))
	wantError(t, iq(t, carol, "get", "alice@localhost", get), stanza.ItemNotFound, "")
}

// TestAvatarToVCard: a PEP avatar becomes the vCard PHOTO and the photo
// hash in presence (XEP-0398).
func TestAvatarToVCard(t *testing.T) {
	e := newEnv(t)
	e.friends(t, "alice", "bob")
	alice := e.dial(t, "alice", "a1")
	bob := e.dial(t, "bob", "b1")
	bob.Send(`<presence/>`)
	png := []byte("\x89PNG\r\n\x1a\n fake image bytes")
	b64 := base64.StdEncoding.EncodeToString(png)
	sum := sha1.Sum(png)
	id := fmt.Sprintf("%x", sum)
	mustResult(t, iq(t, alice, "set", "", publish(pubsub.NSAvatarData, id, `<data xmlns='`+pubsub.NSAvatarData+`'>`+b64+`</data>`, "")))
	mustResult(t, iq(t, alice, "set", "", publish(pubsub.NSAvatarMetadata, id,
		fmt.Sprintf(`<metadata xmlns='%s'><info id='%s' bytes='%d' type='image/png'/></metadata>`, pubsub.NSAvatarMetadata, id, len(png)), "")))
	v := mustResult(t, iq(t, bob, "get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`))
	photo := v.Child("vcard-temp", "vCard").Child("vcard-temp", "PHOTO")
	if photo == nil || photo.ChildText("vcard-temp", "BINVAL") != b64 || photo.ChildText("vcard-temp", "TYPE") != "image/png" {
		t.Fatalf("vCard %s", v)
	}
	alice.Send(`<presence/>`)
	p := bob.Expect(xmpptest.IsPresence("", "alice@localhost"))
	if p.Child(pubsub.NSVCardUpdate, "x").ChildText(pubsub.NSVCardUpdate, "photo") != id {
		t.Fatalf("presence without the photo hash: %s", p)
	}

	// The other way: a vCard PHOTO becomes the PEP avatar.
	png2 := []byte("another image")
	sum2 := sha1.Sum(png2)
	id2 := fmt.Sprintf("%x", sum2)
	mustResult(t, iq(t, alice, "set", "", `<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>`+base64.StdEncoding.EncodeToString(png2)+`</BINVAL></PHOTO></vCard>`))
	meta := mustResult(t, iq(t, bob, "get", "alice@localhost", `<pubsub xmlns='`+pubsub.NS+`'><items node='`+pubsub.NSAvatarMetadata+`'/></pubsub>`))
	if !strings.Contains(meta.String(), id2) || !strings.Contains(meta.String(), "image/jpeg") {
		t.Fatalf("metadata after vCard set: %s", meta)
	}
}

// TestBookmarksCompat: XEP-0402 items appear as XEP-0048 private XML and
// back.
func TestBookmarksCompat(t *testing.T) {
	e := newEnv(t)
	alice := e.dial(t, "alice", "a1")
	opts := field("pubsub#persist_items", "true") + field("pubsub#max_items", "max") +
		field("pubsub#send_last_published_item", "never") + field("pubsub#access_model", "whitelist")
	mustResult(t, iq(t, alice, "set", "", publish(pubsub.NSBookmarks, "room@conference.localhost",
		`<conference xmlns='urn:xmpp:bookmarks:1' name='The Room' autojoin='true'><nick>al</nick></conference>`, opts)))
	priv := mustResult(t, iq(t, alice, "get", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`))
	c := priv.Child("jabber:iq:private", "query").Child("storage:bookmarks", "storage").Child("storage:bookmarks", "conference")
	if c == nil || c.AttrValue("jid") != "room@conference.localhost" || c.AttrValue("autojoin") != "true" || c.ChildText("", "nick") != "al" {
		t.Fatalf("private bookmarks %s", priv)
	}
	// An old client replaces the list: the new room is an item, the old
	// one is retracted.
	mustResult(t, iq(t, alice, "set", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='other@conference.localhost' name='Other'><nick>al2</nick></conference></storage></query>`))
	items := mustResult(t, iq(t, alice, "get", "", `<pubsub xmlns='`+pubsub.NS+`'><items node='`+pubsub.NSBookmarks+`'/></pubsub>`))
	s := items.String()
	if !strings.Contains(s, "other@conference.localhost") || strings.Contains(s, "room@conference.localhost") || !strings.Contains(s, "al2") {
		t.Fatalf("bookmarks items %s", s)
	}
	// The publish-options the clients send match the node.
	mustResult(t, iq(t, alice, "set", "", publish(pubsub.NSBookmarks, "third@conference.localhost",
		`<conference xmlns='urn:xmpp:bookmarks:1'/>`, opts)))
}

// TestService: users create nodes on pubsub.<domain>, others subscribe
// and get the items.
func TestService(t *testing.T) {
	e := newEnv(t)
	alice := e.dial(t, "alice", "a1")
	bob := e.dial(t, "bob", "b1")
	items := mustResult(t, iq(t, alice, "get", "localhost", `<query xmlns='`+pubsub.NSDiscoItems+`'/>`))
	if !strings.Contains(items.String(), "pubsub.localhost") {
		t.Fatalf("server items %s", items)
	}
	info := mustResult(t, iq(t, alice, "get", "pubsub.localhost", `<query xmlns='`+pubsub.NSDiscoInfo+`'/>`))
	if !strings.Contains(info.String(), `type="service"`) {
		t.Fatalf("service info %s", info)
	}
	mustResult(t, iq(t, alice, "set", "pubsub.localhost", `<pubsub xmlns='`+pubsub.NS+`'><create node='news'/></pubsub>`))
	wantError(t, iq(t, bob, "set", "pubsub.localhost", `<pubsub xmlns='`+pubsub.NS+`'><create node='news'/></pubsub>`), stanza.Conflict, "")
	sub := mustResult(t, iq(t, bob, "set", "pubsub.localhost", `<pubsub xmlns='`+pubsub.NS+`'><subscribe node='news' jid='`+bob.JID.String()+`'/></pubsub>`))
	if !strings.Contains(sub.String(), `subscription="subscribed"`) {
		t.Fatalf("subscribe %s", sub)
	}
	wantError(t, iq(t, bob, "set", "pubsub.localhost", publish("news", "n0", `<entry xmlns='http://www.w3.org/2005/Atom'/>`, "")), stanza.Forbidden, "")
	mustResult(t, iq(t, alice, "set", "pubsub.localhost", publish("news", "n1", `<entry xmlns='http://www.w3.org/2005/Atom'><title>hello</title></entry>`, "")))
	bob.Expect(isEvent("pubsub.localhost", "news", "n1"))
	list := mustResult(t, iq(t, bob, "get", "pubsub.localhost", `<query xmlns='`+pubsub.NSDiscoItems+`'/>`))
	if !strings.Contains(list.String(), `node="news"`) {
		t.Fatalf("service items %s", list)
	}
	mustResult(t, iq(t, bob, "set", "pubsub.localhost", `<pubsub xmlns='`+pubsub.NS+`'><unsubscribe node='news' jid='`+bob.JID.String()+`'/></pubsub>`))
	wantError(t, iq(t, bob, "set", "pubsub.localhost", `<pubsub xmlns='`+pubsub.NS+`'><unsubscribe node='news' jid='`+bob.JID.String()+`'/></pubsub>`), stanza.UnexpectedRequest, "not-subscribed")
}

// TestOMEMONodes: the way Conversations publishes its OMEMO device list
// and bundle (publish-options access_model=open, republished with the same
// options), and a stranger fetching them to start a session.
func TestOMEMONodes(t *testing.T) {
	e := newEnv(t)
	alice := e.dial(t, "alice", "a1")
	carol := e.dial(t, "carol", "c1")
	const list = "eu.siacs.conversations.axolotl.devicelist"
	const bundle = "eu.siacs.conversations.axolotl.bundles:1234"
	open := field("pubsub#access_model", "open")
	for i := range 2 { // the second publish meets the existing node's options
		mustResult(t, iq(t, alice, "set", "", publish(list, "current",
			fmt.Sprintf(`<list xmlns='eu.siacs.conversations.axolotl'><device id='1234'/><device id='%d'/></list>`, 5000+i), open)))
	}
	mustResult(t, iq(t, alice, "set", "", publish(bundle, "current",
		`<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>BQ==</signedPreKeyPublic><identityKey>BQ==</identityKey><prekeys><preKeyPublic preKeyId='1'>BQ==</preKeyPublic></prekeys></bundle>`, open)))
	got := mustResult(t, iq(t, carol, "get", "alice@localhost", `<pubsub xmlns='`+pubsub.NS+`'><items node='`+list+`'/></pubsub>`)).String()
	if !strings.Contains(got, `id="5001"`) || strings.Contains(got, `id="5000"`) {
		t.Fatalf("device list %s", got)
	}
	got = mustResult(t, iq(t, carol, "get", "alice@localhost", `<pubsub xmlns='`+pubsub.NS+`'><items node='`+bundle+`' max_items='1'/></pubsub>`)).String()
	if !strings.Contains(got, "identityKey") {
		t.Fatalf("bundle %s", got)
	}
}
