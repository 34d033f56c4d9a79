package interop

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// TestAdvertisedFeaturesAnswer asks disco#info of the server, of an
// account (PEP), of every service the server lists in disco#items
// (upload, pubsub, conference) and of a room, and looks at the stream
// features after STARTTLS and after login; for every feature advertised
// it runs a probe that sends a real
// request over the socket and checks the feature does what it says (not
// service-unavailable or feature-not-implemented). A feature without a
// probe fails the test, and so does a probe whose XEP (or RFC) has no row
// in docs/xeps.md or one marked "not supported": what we advertise, what
// answers and what the documentation claims stay the same list.
func TestAdvertisedFeaturesAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newProber(t, e)
	doc := xepRows(t)

	entities := []struct{ kind, jid string }{
		{"server", e.ts.Domain},
		{"account", e.bare("alice")},
	}
	items := p.iq(p.alice, e.ts.Domain, "get", `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	var listed []string
	for _, it := range items.Payload().Elements() {
		listed = append(listed, it.AttrValue("jid"))
	}
	sort.Strings(listed)
	cfg, hosts := e.ts.Config, e.ts.Config.Hosts
	kindOf := map[string]string{
		cfg.Upload.ServiceDomain(hosts): "upload",
		cfg.PubSub.ServiceDomain(hosts): "pubsub",
		cfg.MUC.ServiceDomain(hosts):    "conference",
	}
	for _, want := range []string{"upload", "pubsub", "conference"} {
		found := false
		for _, j := range listed {
			if kindOf[j] == want {
				found = true
			}
		}
		if !found {
			t.Errorf("server disco#items %v lists no %s service", listed, want)
		}
	}
	for _, j := range listed {
		k, ok := kindOf[j]
		if !ok {
			t.Errorf("server disco#items lists %s, which this test does not know: add its probes", j)
			continue
		}
		entities = append(entities, struct{ kind, jid string }{k, j})
	}

	probed := 0
	for i := 0; i < len(entities); i++ {
		ent := entities[i]
		if ent.kind == "conference" {
			// A room of the group chat service has features of its own
			// (XEP-0045 §6.4); made now, with the clients as they are.
			entities = append(entities, struct{ kind, jid string }{"room", p.createRoom(ent.jid)})
		}
		info := p.iq(p.alice, ent.jid, "get", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
		var feats []string
		for _, f := range info.Payload().Elements() {
			if f.Name.Local == "feature" {
				feats = append(feats, f.AttrValue("var"))
			}
		}
		if len(feats) == 0 {
			t.Errorf("%s (%s) advertises no features: %s", ent.kind, ent.jid, info)
		}
		for _, f := range feats {
			probed += p.run(t, doc, ent.kind, ent.jid, f)
		}
	}
	// Stream features are advertised too: those offered after STARTTLS
	// (SASL) and after authentication.
	pre, feats := e.ts.DialUnauthenticated(t)
	_ = pre.Conn().Close()
	for _, f := range feats.Elements() {
		probed += p.run(t, doc, "sasl", e.ts.Domain, f.Name.Space)
	}
	for _, f := range p.alice.Features.Elements() {
		probed += p.run(t, doc, "stream", e.ts.Domain, f.Name.Space)
	}
	t.Logf("%d advertised features probed", probed)
}

// probe checks one advertised feature of the entity at to.
type probe struct {
	spec string // "XEP-0313" or "RFC 6121": the docs/xeps.md row it belongs to
	run  func(p *prober, to string)
}

// run looks up and runs the probe for feature f of an entity of kind.
func (p *prober) run(t *testing.T, doc map[string]string, kind, to, f string) int {
	t.Helper()
	pr, ok := probes[kind][f]
	if !ok {
		t.Errorf("%s %s advertises %q, which has no probe: add one to probes in features_test.go (and a docs/xeps.md row), or stop advertising it", kind, to, f)
		return 0
	}
	if status, ok := doc[pr.spec]; !ok {
		t.Errorf("%s %s advertises %q (%s), but docs/xeps.md has no row for %s", kind, to, f, pr.spec, pr.spec)
	} else if strings.HasPrefix(strings.ToLower(status), "not supported") {
		t.Errorf("%s %s advertises %q, but docs/xeps.md says %s is %q", kind, to, f, pr.spec, status)
	}
	t.Run(kind+"/"+f, func(t *testing.T) {
		p.t = t
		defer func() { p.t = p.root }()
		pr.run(p, to)
	})
	return 1
}

// xepRows reads docs/xeps.md: "XEP-0313" / "RFC 6121" → status column.
func xepRows(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "xeps.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	re := regexp.MustCompile(`(?m)^\| \[(\d{4})\]\((https://[^)]+)\)[^|]*\| [^|]+ \| ([^|]+) \|`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		key := "XEP-" + m[1]
		if strings.Contains(m[2], "rfc-editor") {
			key = "RFC " + m[1]
		}
		rows[key] = strings.TrimSpace(m[3])
	}
	if len(rows) < 20 {
		t.Fatalf("docs/xeps.md: only %d table rows parsed", len(rows))
	}
	return rows
}

// prober holds the logged-in clients the probes use: alice (whose
// account is probed), bob (her contact, both ways, with entity caps that
// want urn:xmpp:probe:tune notifications) and carol (a stranger to both).
type prober struct {
	root, t *testing.T
	e       *env
	alice   *xmpptest.Client
	bob     *xmpptest.Client
	carol   *xmpptest.Client // logged in on first use (msgoffline needs her offline first)
	n       int
	http    *http.Client
}

const probeNotifyNode = "urn:xmpp:probe:tune"

func newProber(t *testing.T, e *env) *prober {
	p := &prober{root: t, t: t, e: e}
	p.http = &http.Client{Timeout: xmpptest.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ts.Roots}}}
	t.Cleanup(p.http.CloseIdleConnections)
	p.alice = e.online(t, "alice", "probe")
	p.bob = e.dial(t, "bob", "probe")
	// bob comes online with caps; the server asks what they mean (once)
	// and bob says he wants notifications of probeNotifyNode only.
	const capsNode, ver = "https://gatehouse.test/probe", "probe-caps-ver-1"
	p.bob.Sendf(`<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='%s' ver='%s'/></presence>`, capsNode, ver)
	q := p.bob.Expect(func(s *stanza.Stanza) bool {
		pl := s.Payload()
		return s.Kind == stanza.KindIQ && s.Type == "get" && pl != nil && pl.Name.Space == "http://jabber.org/protocol/disco#info"
	})
	if got := q.Payload().AttrValue("node"); got != capsNode+"#"+ver {
		t.Fatalf("caps query for node %q", got)
	}
	p.bob.Send(fmt.Sprintf(`<iq type='result' id='%s' to='%s'><query xmlns='http://jabber.org/protocol/disco#info' node='%s#%s'>`+
		`<identity category='client' type='pc' name='probe'/><feature var='http://jabber.org/protocol/disco#info'/>`+
		`<feature var='http://jabber.org/protocol/caps'/><feature var='%s'/><feature var='%s+notify'/></query></iq>`,
		q.ID, q.From, capsNode, ver, probeNotifyNode, probeNotifyNode))
	// A mutual subscription, as two contacts have; once bob approves,
	// alice gets his presence (with the caps). Subscription requests go
	// to resources that asked for the roster (RFC 6121 §3.1.3).
	for _, c := range []*xmpptest.Client{p.alice, p.bob} {
		p.iq(c, "", "get", `<query xmlns='jabber:iq:roster'/>`)
	}
	p.alice.Sendf(`<presence to='%s' type='subscribe'/>`, e.bare("bob"))
	p.bob.Expect(xmpptest.IsPresence("subscribe", e.bare("alice")))
	p.bob.Sendf(`<presence to='%s' type='subscribed'/>`, e.bare("alice"))
	p.bob.Sendf(`<presence to='%s' type='subscribe'/>`, e.bare("alice"))
	p.alice.Expect(xmpptest.IsPresence("subscribe", e.bare("bob")))
	p.alice.Sendf(`<presence to='%s' type='subscribed'/>`, e.bare("bob"))
	p.alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.Type == "" && s.From.Bare().String() == e.bare("bob")
	})
	p.bob.Ping()
	p.alice.Ping()
	return p
}

func (p *prober) id() string { p.n++; return fmt.Sprintf("probe-%d", p.n) }

// iq sends an iq and fails the probe unless the answer is a result.
func (p *prober) iq(c *xmpptest.Client, to, typ, payload string) *stanza.Stanza {
	p.t.Helper()
	r := p.iqAny(c, to, typ, payload)
	if r.Type != "result" {
		p.t.Fatalf("%s to %s: %s answered %s", typ, to, payload, r)
	}
	return r
}

// iqErr sends an iq that must fail with condition cond.
func (p *prober) iqErr(c *xmpptest.Client, to, typ, payload string, cond stanza.Condition) *stanza.Stanza {
	p.t.Helper()
	r := p.iqAny(c, to, typ, payload)
	if r.Type != "error" || r.ErrorCondition() != cond {
		p.t.Fatalf("%s to %s: %s: want error %s, got %s", typ, to, payload, cond, r)
	}
	return r
}

func (p *prober) iqAny(c *xmpptest.Client, to, typ, payload string) *stanza.Stanza {
	p.t.Helper()
	id := p.id()
	toAttr := ""
	if to != "" {
		toAttr = fmt.Sprintf(" to='%s'", to)
	}
	c.Sendf(`<iq type='%s' id='%s'%s>%s</iq>`, typ, id, toAttr, payload)
	return c.Expect(xmpptest.IsIQ(id))
}

func (p *prober) carolClient() *xmpptest.Client {
	if p.carol == nil {
		p.carol = p.e.online(p.root, "carol", "probe")
	}
	return p.carol
}

// find returns the first descendant of el (depth-first) with the name.
func find(el *stanza.Element, space, local string) *stanza.Element {
	if el == nil {
		return nil
	}
	if el.Name.Space == space && el.Name.Local == local {
		return el
	}
	for _, c := range el.Elements() {
		if f := find(c, space, local); f != nil {
			return f
		}
	}
	return nil
}

func findIn(s *stanza.Stanza, space, local string) *stanza.Element {
	return find(s.Element(), space, local)
}

// isEvent matches a pubsub event message for node (from any entity).
func isEvent(node string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		if s.Kind != stanza.KindMessage {
			return false
		}
		ev := s.Child(nsPubSub+"#event", "event")
		if ev == nil {
			return false
		}
		for _, k := range ev.Elements() {
			if k.AttrValue("node") == node {
				return true
			}
		}
		return false
	}
}

const (
	nsPubSub = "http://jabber.org/protocol/pubsub"
	nsDisco  = "http://jabber.org/protocol/disco"
)

func probeDiscoInfo(p *prober, to string) {
	r := p.iq(p.alice, to, "get", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	if findIn(r, nsDisco+"#info", "identity") == nil {
		p.t.Fatalf("disco#info of %s has no identity: %s", to, r)
	}
}

func probeDiscoItems(p *prober, to string) {
	p.iq(p.alice, to, "get", `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
}

func probePing(p *prober, to string) {
	p.iq(p.alice, to, "get", `<ping xmlns='urn:xmpp:ping'/>`)
}

// probes: entity kind → feature var → probe.
var probes = map[string]map[string]probe{
	"server": {
		nsDisco + "#info":  {"XEP-0030", probeDiscoInfo},
		nsDisco + "#items": {"XEP-0030", probeDiscoItems},
		"urn:xmpp:ping":    {"XEP-0199", probePing},
		"http://jabber.org/protocol/commands": {"XEP-0050", func(p *prober, to string) {
			const nsCmd = "http://jabber.org/protocol/commands"
			r := p.iq(p.alice, to, "get", `<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/>`)
			found := false
			for _, it := range r.Payload().Elements() {
				if it.Name.Space == nsDisco+"#items" && it.Name.Local == "item" && it.AttrValue("node") == "ping" {
					found = true
				}
			}
			if !found {
				p.t.Errorf("command list without a disco#items <item node='ping'/>: %s", r)
			}
			r = p.iq(p.alice, to, "set", `<command xmlns='http://jabber.org/protocol/commands' node='ping' action='execute'/>`)
			c := r.Child(nsCmd, "command")
			if c == nil || c.AttrValue("status") != "completed" || c.Child(nsCmd, "note") == nil {
				p.t.Fatalf("ping command: want status completed with a <note/> in %s, got %s", nsCmd, r)
			}
		}},
		"jabber:iq:private": {"XEP-0049", func(p *prober, to string) {
			p.iq(p.alice, "", "set", `<query xmlns='jabber:iq:private'><probe xmlns='urn:gatehouse:probe'>kept</probe></query>`)
			r := p.iq(p.alice, "", "get", `<query xmlns='jabber:iq:private'><probe xmlns='urn:gatehouse:probe'/></query>`)
			if !strings.Contains(r.String(), ">kept<") {
				p.t.Fatalf("private storage: %s", r)
			}
		}},
		"jabber:iq:register": {"XEP-0077", func(p *prober, to string) {
			r := p.iq(p.alice, to, "get", `<query xmlns='jabber:iq:register'/>`)
			if r.Payload().Child("jabber:iq:register", "registered") == nil || r.Payload().ChildText("jabber:iq:register", "username") != "alice" {
				p.t.Fatalf("registration form of a logged-in user: %s", r)
			}
			// The logged-in user's password change (§3.3); set it back.
			p.iq(p.alice, to, "set", `<query xmlns='jabber:iq:register'><username>alice</username><password>alice-new-password-1</password></query>`)
			p.iq(p.alice, to, "set", `<query xmlns='jabber:iq:register'><username>alice</username><password>`+users["alice"]+`</password></query>`)
		}},
		"jabber:iq:roster": {"RFC 6121", func(p *prober, to string) {
			r := p.iq(p.alice, "", "get", `<query xmlns='jabber:iq:roster'/>`)
			if !strings.Contains(r.String(), p.e.bare("bob")) {
				p.t.Fatalf("roster without bob: %s", r)
			}
		}},
		"jabber:iq:version": {"XEP-0092", func(p *prober, to string) {
			r := p.iq(p.alice, to, "get", `<query xmlns='jabber:iq:version'/>`)
			if r.Payload().ChildText("jabber:iq:version", "name") == "" {
				p.t.Fatalf("version without name: %s", r)
			}
		}},
		"msgoffline": {"XEP-0160", func(p *prober, to string) {
			if p.carol != nil {
				p.t.Fatal("carol is online already")
			}
			p.alice.Sendf(`<message to='%s' type='chat' id='%s'><body>offline probe</body></message>`, p.e.bare("carol"), p.id())
			p.alice.Ping()
			c := p.carolClient()
			m := c.Expect(xmpptest.IsMessage("offline probe"))
			if m.Child("urn:xmpp:delay", "delay") == nil {
				p.t.Fatalf("offline message without delay: %s", m)
			}
		}},
		"urn:xmpp:blocking": {"XEP-0191", func(p *prober, to string) {
			p.iq(p.alice, "", "set", `<block xmlns='urn:xmpp:blocking'><item jid='spammer.example'/></block>`)
			r := p.iq(p.alice, "", "get", `<blocklist xmlns='urn:xmpp:blocking'/>`)
			if !strings.Contains(r.String(), "spammer.example") {
				p.t.Fatalf("blocklist: %s", r)
			}
			p.iq(p.alice, "", "set", `<unblock xmlns='urn:xmpp:blocking'><item jid='spammer.example'/></unblock>`)
		}},
		"urn:xmpp:carbons:2": {"XEP-0280", func(p *prober, to string) {
			second := p.e.online(p.t, "alice", "carbons")
			defer second.Close()
			p.iq(second, "", "set", `<enable xmlns='urn:xmpp:carbons:2'/>`)
			p.alice.Sendf(`<message to='%s' type='chat' id='%s'><body>carbon probe</body></message>`, p.e.bare("bob"), p.id())
			p.bob.Expect(xmpptest.IsMessage("carbon probe"))
			second.Expect(func(s *stanza.Stanza) bool {
				sent := s.Child("urn:xmpp:carbons:2", "sent")
				return sent != nil && strings.Contains(sent.String(), "carbon probe")
			})
		}},
		"urn:xmpp:pep-vcard-conversion:0": {"XEP-0398", probeAvatarConversion},
		// Should the server mirror its users' MAM feature on its own
		// address, as ejabberd does (profanity 0.13 looks only there), a
		// query without 'to' reads the user's archive.
		"urn:xmpp:mam:2": {"XEP-0313", func(p *prober, to string) { probeMAM(p, "") }},
		"urn:xmpp:mam:2#extended": {"XEP-0313", func(p *prober, to string) {
			probeMAMExtended(p, "")
			probeMAMMetadata(p, "")
		}},
		"urn:xmpp:time": {"XEP-0202", func(p *prober, to string) {
			r := p.iq(p.alice, to, "get", `<time xmlns='urn:xmpp:time'/>`)
			if r.Payload().ChildText("urn:xmpp:time", "utc") == "" {
				p.t.Fatalf("time: %s", r)
			}
		}},
		"vcard-temp": {"XEP-0054", func(p *prober, to string) {
			r := p.iq(p.alice, to, "get", `<vCard xmlns='vcard-temp'/>`)
			if r.Payload().ChildText("vcard-temp", "FN") == "" {
				p.t.Fatalf("server vCard without FN: %s", r)
			}
		}},
	},
	"account": {
		nsDisco + "#info":  {"XEP-0030", probeDiscoInfo},
		nsDisco + "#items": {"XEP-0030", probeDiscoItems},
		"urn:xmpp:mam:2":   {"XEP-0313", probeMAM},
		"urn:xmpp:mam:2#extended": {"XEP-0313", func(p *prober, to string) {
			probeMAMExtended(p, to)
			probeMAMMetadata(p, to)
		}},
		"urn:xmpp:sid:0": {"XEP-0359", func(p *prober, to string) {
			p.bob.Sendf(`<message to='%s' type='chat' id='%s'><body>stanza-id probe</body></message>`, p.e.bare("alice"), p.id())
			m := p.alice.Expect(xmpptest.IsMessage("stanza-id probe"))
			sid := m.Child("urn:xmpp:sid:0", "stanza-id")
			if sid == nil || sid.AttrValue("by") != p.e.bare("alice") || sid.AttrValue("id") == "" {
				p.t.Fatalf("message without our stanza-id: %s", m)
			}
		}},
		"urn:xmpp:push:0": {"XEP-0357", probePush},
		"urn:xmpp:bookmarks:1#compat": {"XEP-0402", func(p *prober, to string) {
			room := "probe@conference." + p.e.ts.Domain
			p.iq(p.alice, "", "set", fmt.Sprintf(`<pubsub xmlns='%s'><publish node='urn:xmpp:bookmarks:1'><item id='%s'><conference xmlns='urn:xmpp:bookmarks:1' name='Probe' autojoin='true'><nick>alice</nick></conference></item></publish>`+
				`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s#publish-options</value></field><field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub>`, nsPubSub, room, nsPubSub))
			r := p.iq(p.alice, "", "get", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`)
			if !strings.Contains(r.String(), room) {
				p.t.Fatalf("XEP-0402 bookmark not in XEP-0048 storage: %s", r)
			}
		}},
		"urn:xmpp:pep-vcard-conversion:0": {"XEP-0398", probeAvatarConversion},
		"vcard-temp": {"XEP-0054", func(p *prober, to string) {
			p.iq(p.alice, "", "set", `<vCard xmlns='vcard-temp'><FN>Alice Probe</FN></vCard>`)
			r := p.iq(p.bob, to, "get", `<vCard xmlns='vcard-temp'/>`)
			if r.Payload().ChildText("vcard-temp", "FN") != "Alice Probe" {
				p.t.Fatalf("vCard as seen by a contact: %s", r)
			}
		}},
	},
	"upload": {
		nsDisco + "#info":        {"XEP-0030", probeDiscoInfo},
		"urn:xmpp:http:upload:0": {"XEP-0363", probeUpload},
	},
	"pubsub": {
		nsDisco + "#info":  {"XEP-0030", probeDiscoInfo},
		nsDisco + "#items": {"XEP-0030", probeDiscoItems},
	},
	"conference": {
		nsDisco + "#info":  {"XEP-0030", probeDiscoInfo},
		nsDisco + "#items": {"XEP-0030", probeDiscoItems},
		"urn:xmpp:ping":    {"XEP-0199", probePing},
		"urn:xmpp:unique": {"XEP-0307", func(p *prober, to string) {
			r := p.iq(p.alice, to, "get", `<unique xmlns='urn:xmpp:unique'/>`)
			if strings.TrimSpace(r.Payload().Text()) == "" {
				p.t.Fatalf("unique room name: %s", r)
			}
		}},
	},
	"sasl": {
		// Every offered mechanism the test client speaks logs in
		// (SCRAM-SHA-512 and its -PLUS: mellium/sasl has no SHA-512;
		// profanity's libstrophe logs in with it in TestProfanitySession).
		"urn:ietf:params:xml:ns:xmpp-sasl": {"RFC 6120", func(p *prober, to string) {
			_, feats := p.e.ts.DialUnauthenticated(p.t)
			tried := 0
			for _, m := range feats.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms").Elements() {
				mech := m.Text()
				if strings.HasPrefix(mech, "SCRAM-SHA-512") {
					continue
				}
				c, err := p.e.ts.TryDial(p.t, "alice", users["alice"], xmpptest.ClientOptions{Mechanism: mech, Resource: "sasl"})
				if err != nil {
					p.t.Errorf("login with the offered mechanism %s: %v", mech, err)
					continue
				}
				if c.Mech != mech {
					p.t.Errorf("asked for %s, logged in with %s", mech, c.Mech)
				}
				c.Close()
				tried++
			}
			if tried < 4 {
				p.t.Fatalf("only %d mechanisms tried", tried)
			}
		}},
		// XEP-0440: the advertised channel-binding types work with -PLUS
		// (tls-exporter on TLS 1.3, tls-server-end-point on TLS 1.2).
		"urn:xmpp:sasl-cb:0": {"XEP-0440", func(p *prober, to string) {
			for _, o := range []xmpptest.ClientOptions{{TLS13: true}, {TLS12: true}} {
				o.Mechanism, o.Resource = "SCRAM-SHA-256-PLUS", "cb"
				c, err := p.e.ts.TryDial(p.t, "alice", users["alice"], o)
				if err != nil {
					p.t.Fatalf("SCRAM-SHA-256-PLUS (TLS 1.3: %v): %v", o.TLS13, err)
				}
				c.Close()
			}
		}},
	},
	"stream": {
		"urn:ietf:params:xml:ns:xmpp-bind": {"RFC 6120", func(p *prober, to string) {
			if p.alice.JID.Resourcepart() != "probe" {
				p.t.Fatalf("bound %s", p.alice.JID)
			}
		}},
		"urn:ietf:params:xml:ns:xmpp-session": {"RFC 6121", func(p *prober, to string) {
			p.iq(p.alice, "", "set", `<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>`)
		}},
		"urn:xmpp:sm:3": {"XEP-0198", func(p *prober, to string) {
			c := p.e.ts.Dial(p.t, "alice", users["alice"], xmpptest.ClientOptions{Resource: "sm", SM: true})
			defer c.Close()
			if c.SMID == "" {
				p.t.Fatal("no resumable stream management session")
			}
			c.Ping()
			if h := c.RequestAck(); h == 0 {
				p.t.Fatalf("server acknowledged %d stanzas after a ping", h)
			}
		}},
		"urn:xmpp:csi:0": {"XEP-0352", func(p *prober, to string) {
			// Inactive, alice gets bob's chat states held back: of
			// composing and paused only the newer arrives, and only
			// just before the next message with a body.
			p.alice.Send(`<inactive xmlns='urn:xmpp:csi:0'/>`)
			p.alice.Ping()
			const cs = "http://jabber.org/protocol/chatstates"
			p.bob.Sendf(`<message to='%s' type='chat'><composing xmlns='%s'/></message>`, p.alice.JID, cs)
			p.bob.Sendf(`<message to='%s' type='chat'><paused xmlns='%s'/></message>`, p.alice.JID, cs)
			p.bob.Sendf(`<message to='%s' type='chat'><body>csi probe</body></message>`, p.alice.JID)
			fromBob := func(s *stanza.Stanza) bool {
				return s.Kind == stanza.KindMessage && s.From.Bare().String() == p.e.bare("bob") &&
					(s.Body() == "csi probe" || s.Child(cs, "composing") != nil || s.Child(cs, "paused") != nil)
			}
			first, second := p.alice.Expect(fromBob), p.alice.Expect(fromBob)
			if first.Child(cs, "paused") == nil || second.Body() != "csi probe" {
				p.t.Fatalf("while inactive got\n%s\nthen\n%s", first, second)
			}
			p.alice.Send(`<active xmlns='urn:xmpp:csi:0'/>`)
			p.alice.Ping()
		}},
		"urn:xmpp:features:rosterver": {"XEP-0237", func(p *prober, to string) {
			r := p.iq(p.alice, "", "get", `<query xmlns='jabber:iq:roster' ver=''/>`)
			ver := r.Payload().AttrValue("ver")
			if ver == "" {
				p.t.Fatalf("roster without version: %s", r)
			}
			r = p.iq(p.alice, "", "get", fmt.Sprintf(`<query xmlns='jabber:iq:roster' ver='%s'/>`, ver))
			if r.Payload() != nil {
				p.t.Fatalf("unchanged roster sent again: %s", r)
			}
		}},
		"urn:xmpp:features:pre-approval": {"RFC 6121", func(p *prober, to string) {
			dave := "dave@" + p.e.ts.Domain
			p.alice.Sendf(`<presence to='%s' type='subscribed'/>`, dave)
			push := p.alice.Expect(func(s *stanza.Stanza) bool {
				return s.Kind == stanza.KindIQ && s.Type == "set" && strings.Contains(s.String(), dave)
			})
			if it := findIn(push, "jabber:iq:roster", "item"); it == nil || it.AttrValue("approved") != "true" {
				p.t.Fatalf("pre-approval roster push: %s", push)
			}
			p.alice.Sendf(`<iq type='result' id='%s'/>`, push.ID)
		}},
	},
}

func init() {
	// The pubsub features are the same on an account (PEP) and on the
	// service; the service has no presence-based delivery.
	for f, pr := range pubsubProbes {
		probes["account"][f] = pr
		if f != nsPubSub+"#auto-subscribe" && f != nsPubSub+"#filtered-notifications" {
			probes["pubsub"][f] = pr
		}
	}
}

// mamQuery runs a MAM query on alice's archive (or the room at to) and
// returns the result messages, checking the fin.
func (p *prober) mamQuery(to, inner string) []*stanza.Stanza {
	p.t.Helper()
	qid := p.id()
	id := p.id()
	toAttr := ""
	if to != "" {
		toAttr = fmt.Sprintf(" to='%s'", to)
	}
	p.alice.Sendf(`<iq type='set' id='%s'%s><query xmlns='urn:xmpp:mam:2' queryid='%s'>%s</query></iq>`, id, toAttr, qid, inner)
	var got []*stanza.Stanza
	for {
		s := p.alice.Expect(func(s *stanza.Stanza) bool {
			if s.Kind == stanza.KindIQ && s.ID == id {
				return true
			}
			r := s.Child("urn:xmpp:mam:2", "result")
			return s.Kind == stanza.KindMessage && r != nil && r.AttrValue("queryid") == qid
		})
		if s.Kind == stanza.KindIQ {
			if s.Type != "result" || s.Child("urn:xmpp:mam:2", "fin") == nil {
				p.t.Fatalf("MAM query answered %s", s)
			}
			return got
		}
		got = append(got, s)
	}
}

func probeMAM(p *prober, to string) {
	for i := 1; i <= 3; i++ {
		p.alice.Sendf(`<message to='%s' type='chat' id='%s'><body>mam probe %d</body></message>`, p.e.bare("bob"), p.id(), i)
		p.bob.Expect(xmpptest.IsMessage(fmt.Sprintf("mam probe %d", i)))
	}
	form := fmt.Sprintf(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field><field var='with'><value>%s</value></field></x>`, p.e.bare("bob"))
	// The last page of two, backwards (RSM before, empty).
	ms := p.mamQuery(to, form+`<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>`)
	var bodies []string
	for _, m := range ms {
		if fw := findIn(m, "urn:xmpp:forward:0", "forwarded"); fw != nil {
			bodies = append(bodies, bodyOf(fw))
		}
	}
	if strings.Join(bodies, "|") != "mam probe 2|mam probe 3" {
		p.t.Fatalf("last page of the archive with bob: %q", bodies)
	}
}

// bodyOf returns the text of the first <body/> under el (in the stream's
// namespace, however the parser names it).
func bodyOf(el *stanza.Element) string {
	for _, ns := range []string{"", "jabber:client"} {
		if b := find(el, ns, "body"); b != nil {
			return b.Text()
		}
	}
	return ""
}

// probeMAMExtended: the #extended query fields (ids, before-id) on the
// archive at to ("" for the user's own).
func probeMAMExtended(p *prober, to string) {
	p.t.Helper()
	mamForm := func(fields string) string {
		return `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>` + fields + `</x>`
	}
	resultID := func(m *stanza.Stanza) string { return findIn(m, "urn:xmpp:mam:2", "result").AttrValue("id") }
	last := p.mamQuery(to, `<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>`)
	if len(last) != 2 {
		p.t.Fatalf("last page of two: %v", last)
	}
	older, newer := resultID(last[0]), resultID(last[1])
	ms := p.mamQuery(to, mamForm(fmt.Sprintf(`<field var='ids'><value>%s</value></field>`, newer)))
	if len(ms) != 1 || resultID(ms[0]) != newer {
		p.t.Fatalf("query by ids: %v", ms)
	}
	ms = p.mamQuery(to, mamForm(fmt.Sprintf(`<field var='before-id'><value>%s</value></field>`, newer))+`<set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set>`)
	if len(ms) != 1 || resultID(ms[0]) != older {
		p.t.Fatalf("query before-id: %v", ms)
	}
}

// probeMAMMetadata: archive metadata (first and last id), which
// Gatehouse's account archives count under #extended.
func probeMAMMetadata(p *prober, to string) {
	p.t.Helper()
	r := p.iq(p.alice, to, "get", `<metadata xmlns='urn:xmpp:mam:2'/>`)
	start := findIn(r, "urn:xmpp:mam:2", "start")
	end := findIn(r, "urn:xmpp:mam:2", "end")
	if start == nil || end == nil || start.AttrValue("id") == "" || end.AttrValue("id") == "" {
		p.t.Fatalf("archive metadata: %s", r)
	}
}

func probeAvatarConversion(p *prober, to string) {
	img := []byte("\x89PNG\r\n\x1a\n probe avatar bytes")
	const id = "2a5c1ff1a5f2e3bca1d4a8fbd05cdfcd1b41e20d" // any id; the server keys by it
	data := base64.StdEncoding.EncodeToString(img)
	p.iq(p.alice, "", "set", fmt.Sprintf(`<pubsub xmlns='%s'><publish node='urn:xmpp:avatar:data'><item id='%s'><data xmlns='urn:xmpp:avatar:data'>%s</data></item></publish></pubsub>`, nsPubSub, id, data))
	p.iq(p.alice, "", "set", fmt.Sprintf(`<pubsub xmlns='%s'><publish node='urn:xmpp:avatar:metadata'><item id='%s'><metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='%d' id='%s' type='image/png' height='1' width='1'/></metadata></item></publish></pubsub>`, nsPubSub, id, len(img), id))
	r := p.iq(p.alice, "", "get", `<vCard xmlns='vcard-temp'/>`)
	photo := findIn(r, "vcard-temp", "BINVAL")
	if photo == nil {
		p.t.Fatalf("avatar not converted to a vCard PHOTO: %s", r)
	}
	got, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(photo.Text()), ""))
	if err != nil || !bytes.Equal(got, img) {
		p.t.Fatalf("vCard PHOTO is not the avatar: %v", err)
	}
}

func probePush(p *prober, to string) {
	// The app server is carol's client here; bob has no session while
	// alice writes to him, so the server asks the app server to wake him.
	// bob enables push the way Conversations does (publish-options with
	// a secret), and then once more with the plain request of XEP-0357
	// Example 9 (no publish-options) for a second node.
	app := p.carolClient()
	bob := p.e.dial(p.t, "bob", "push")
	p.iq(bob, "", "set", fmt.Sprintf(`<enable xmlns='urn:xmpp:push:0' jid='%s' node='probe-node'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>probe-secret</value></field></x></enable>`, app.JID))
	plain := p.iqAny(bob, "", "set", fmt.Sprintf(`<enable xmlns='urn:xmpp:push:0' jid='%s' node='probe-node-plain'/>`, app.JID))
	bob.Close()
	p.bob.Close()
	p.e.waitGone(p.t, "bob")
	p.alice.Sendf(`<message to='%s' type='chat' id='%s'><body>push probe</body></message>`, p.e.bare("bob"), p.id())
	n := app.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindIQ && s.Type == "set" && s.From.String() == p.e.bare("bob") && s.Child(nsPubSub, "pubsub") != nil
	})
	pub := findIn(n, nsPubSub, "publish")
	if pub == nil || pub.AttrValue("node") != "probe-node" || find(pub, "urn:xmpp:push:0", "notification") == nil {
		p.t.Errorf("notification is not a XEP-0357 pubsub publish to probe-node: %s", n)
	}
	if po := findIn(n, nsPubSub, "publish-options"); po == nil || !strings.Contains(po.String(), "probe-secret") {
		p.t.Errorf("notification without the registration's publish-options: %s", n)
	}
	app.Sendf(`<iq type='result' id='%s' to='%s'/>`, n.ID, n.From)
	// bob back (without caps), for the probes after this one.
	p.bob = p.e.online(p.root, "bob", "probe")
	p.bob.Expect(xmpptest.IsMessage("push probe"))
	p.iq(p.bob, "", "set", fmt.Sprintf(`<disable xmlns='urn:xmpp:push:0' jid='%s'/>`, app.JID))
	if plain.Type != "result" {
		p.t.Fatalf("enable without publish-options (XEP-0357 Example 9) answered %s", plain)
	}
}

func probeUpload(p *prober, to string) {
	body := []byte("file shared by the feature probe\n")
	r := p.iq(p.alice, to, "get", fmt.Sprintf(`<request xmlns='urn:xmpp:http:upload:0' filename='probe.txt' size='%d' content-type='text/plain'/>`, len(body)))
	put := findIn(r, "urn:xmpp:http:upload:0", "put")
	get := findIn(r, "urn:xmpp:http:upload:0", "get")
	if put == nil || get == nil {
		p.t.Fatalf("slot: %s", r)
	}
	req, err := http.NewRequest(http.MethodPut, put.AttrValue("url"), bytes.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	res, err := p.http.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		p.t.Fatalf("PUT %s: %s", put.AttrValue("url"), res.Status)
	}
	res, err = p.http.Get(get.AttrValue("url"))
	if err != nil {
		p.t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		p.t.Fatalf("GET %s: %s %q", get.AttrValue("url"), res.Status, got)
	}
	// The size limit that disco#info announces is enforced.
	info := p.iq(p.alice, to, "get", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	var max string
	for _, f := range findIn(info, "jabber:x:data", "x").Elements() {
		if f.AttrValue("var") == "max-file-size" {
			max = f.ChildText("jabber:x:data", "value")
		}
	}
	if max == "" {
		p.t.Fatalf("no max-file-size in %s", info)
	}
	e := p.iqErr(p.alice, to, "get", fmt.Sprintf(`<request xmlns='urn:xmpp:http:upload:0' filename='big.bin' size='%s1' content-type='application/octet-stream'/>`, max), stanza.NotAcceptable)
	if !strings.Contains(e.String(), "file-too-large") {
		p.t.Fatalf("oversized request: %s", e)
	}
}

// waitGone waits until user has no session left.
func (e *env) waitGone(t *testing.T, user string) {
	t.Helper()
	j := jid.MustParse(e.bare(user))
	deadline := time.Now().Add(stepTimeout)
	for len(e.ts.Sessions().Resources(j)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still has sessions", user)
		}
		time.Sleep(pollEvery)
	}
}

// pubsub probes; to is the service (an account's bare JID or the pubsub
// domain), alice owns the nodes, bob is her contact, carol a stranger.
func (p *prober) node() string { return "urn:xmpp:probe:" + p.id() }

func (p *prober) publish(to, node, item, opts string) *stanza.Stanza {
	p.t.Helper()
	po := ""
	if opts != "" {
		po = fmt.Sprintf(`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s#publish-options</value></field>%s</x></publish-options>`, nsPubSub, opts)
	}
	return p.iq(p.alice, to, "set", fmt.Sprintf(`<pubsub xmlns='%s'><publish node='%s'><item id='%s'><entry xmlns='urn:xmpp:probe'>%s</entry></item></publish>%s</pubsub>`, nsPubSub, node, item, item, po))
}

// keepMany makes a node keep several items (a PEP node keeps one by
// default).
const keepMany = `<field var='pubsub#max_items'><value>10</value></field>`

func accessOpt(model string) string {
	return fmt.Sprintf(`<field var='pubsub#access_model'><value>%s</value></field>`, model)
}

// items fetches node's items as c; the answer is returned as is.
func (p *prober) items(c *xmpptest.Client, to, node, inner string) *stanza.Stanza {
	p.t.Helper()
	return p.iqAny(c, to, "get", fmt.Sprintf(`<pubsub xmlns='%s'><items node='%s'>%s</items></pubsub>`, nsPubSub, node, inner))
}

func itemIDs(r *stanza.Stanza) []string {
	var ids []string
	if it := findIn(r, nsPubSub, "items"); it != nil {
		for _, i := range it.Elements() {
			ids = append(ids, i.AttrValue("id"))
		}
	}
	return ids
}

func (p *prober) wantItems(c *xmpptest.Client, to, node string, want ...string) {
	p.t.Helper()
	r := p.items(c, to, node, "")
	if r.Type != "result" || strings.Join(itemIDs(r), ",") != strings.Join(want, ",") {
		p.t.Fatalf("items of %s as %s: want %v, got %s", node, c.JID, want, r)
	}
}

// wantRefused checks c may not read node: an access error, not a
// missing feature.
func (p *prober) wantRefused(c *xmpptest.Client, to, node string) {
	p.t.Helper()
	r := p.items(c, to, node, "")
	switch r.ErrorCondition() {
	case stanza.Forbidden, stanza.NotAllowed, stanza.NotAuthorized:
	default:
		p.t.Fatalf("items of %s as %s: want an access error, got %s", node, c.JID, r)
	}
}

func (p *prober) owner(to, op string) *stanza.Stanza {
	p.t.Helper()
	return p.iq(p.alice, to, "set", fmt.Sprintf(`<pubsub xmlns='%s#owner'>%s</pubsub>`, nsPubSub, op))
}

var pubsubProbes = map[string]probe{
	nsPubSub: {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", "")
		p.wantItems(p.alice, to, n, "a")
	}},
	nsPubSub + "#publish": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		r := p.publish(to, n, "given-id", "")
		if it := findIn(r, nsPubSub, "item"); it == nil || it.AttrValue("id") != "given-id" {
			p.t.Fatalf("publish result: %s", r)
		}
	}},
	nsPubSub + "#auto-create": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.wantRefusedOrMissing(to, n)
		p.publish(to, n, "a", "")
		p.wantItems(p.alice, to, n, "a")
	}},
	nsPubSub + "#create-nodes": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.iq(p.alice, to, "set", fmt.Sprintf(`<pubsub xmlns='%s'><create node='%s'/></pubsub>`, nsPubSub, n))
		p.iqErr(p.alice, to, "set", fmt.Sprintf(`<pubsub xmlns='%s'><create node='%s'/></pubsub>`, nsPubSub, n), stanza.Conflict)
		p.wantItems(p.alice, to, n)
	}},
	nsPubSub + "#config-node": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", "")
		r := p.iq(p.alice, to, "get", fmt.Sprintf(`<pubsub xmlns='%s#owner'><configure node='%s'/></pubsub>`, nsPubSub, n))
		if !strings.Contains(r.String(), "pubsub#access_model") {
			p.t.Fatalf("configuration form: %s", r)
		}
		p.owner(to, fmt.Sprintf(`<configure node='%s'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s#node_config</value></field>%s</x></configure>`, n, nsPubSub, accessOpt("whitelist")))
		p.wantRefused(p.bob, to, n)
	}},
	nsPubSub + "#delete-items":  {"XEP-0060", probeRetract},
	nsPubSub + "#retract-items": {"XEP-0060", probeRetract},
	nsPubSub + "#delete-nodes": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", "")
		p.owner(to, fmt.Sprintf(`<delete node='%s'/>`, n))
		if r := p.items(p.alice, to, n, ""); r.ErrorCondition() != stanza.ItemNotFound {
			p.t.Fatalf("items of a deleted node: %s", r)
		}
	}},
	nsPubSub + "#purge-nodes": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", keepMany)
		p.publish(to, n, "b", keepMany)
		p.owner(to, fmt.Sprintf(`<purge node='%s'/>`, n))
		p.wantItems(p.alice, to, n)
	}},
	nsPubSub + "#item-ids": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "one", keepMany)
		p.publish(to, n, "two", keepMany)
		r := p.items(p.alice, to, n, `<item id='one'/>`)
		if strings.Join(itemIDs(r), ",") != "one" {
			p.t.Fatalf("item by id: %s", r)
		}
	}},
	nsPubSub + "#persistent-items": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "one", keepMany)
		p.publish(to, n, "two", keepMany)
		r := p.items(p.alice, to, n, "")
		if ids := itemIDs(r); len(ids) != 2 {
			p.t.Fatalf("persisted items: %s", r)
		}
	}},
	nsPubSub + "#retrieve-items": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "old", keepMany)
		p.publish(to, n, "new", keepMany)
		r := p.iq(p.alice, to, "get", fmt.Sprintf(`<pubsub xmlns='%s'><items node='%s' max_items='1'/></pubsub>`, nsPubSub, n))
		if strings.Join(itemIDs(r), ",") != "new" {
			p.t.Fatalf("newest item: %s", r)
		}
	}},
	nsPubSub + "#subscribe": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "first", accessOpt("open"))
		p.subscribe(p.bob, to, n)
		p.publish(to, n, "second", "")
		p.bob.Expect(isItemEvent(n, "second"))
	}},
	nsPubSub + "#last-published": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "before-subscription", accessOpt("open"))
		// PEP nodes send it by default, service nodes when configured to.
		p.owner(to, fmt.Sprintf(`<configure node='%s'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s#node_config</value></field><field var='pubsub#send_last_published_item'><value>on_sub</value></field></x></configure>`, n, nsPubSub))
		p.subscribe(p.bob, to, n)
		p.bob.Expect(isItemEvent(n, "before-subscription"))
	}},
	nsPubSub + "#retrieve-subscriptions": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", accessOpt("open"))
		p.subscribe(p.bob, to, n)
		r := p.iq(p.bob, to, "get", fmt.Sprintf(`<pubsub xmlns='%s'><subscriptions/></pubsub>`, nsPubSub))
		if !strings.Contains(r.String(), n) {
			p.t.Fatalf("bob's subscriptions: %s", r)
		}
	}},
	nsPubSub + "#retrieve-affiliations": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", "")
		r := p.iq(p.alice, to, "get", fmt.Sprintf(`<pubsub xmlns='%s'><affiliations/></pubsub>`, nsPubSub))
		for _, a := range findIn(r, nsPubSub, "affiliations").Elements() {
			if a.AttrValue("node") == n && a.AttrValue("affiliation") == "owner" {
				return
			}
		}
		p.t.Fatalf("alice's affiliations without owner of %s: %s", n, r)
	}},
	nsPubSub + "#modify-affiliations": {"XEP-0060", probeWhitelist},
	nsPubSub + "#access-whitelist":    {"XEP-0060", probeWhitelist},
	nsPubSub + "#access-open": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", accessOpt("open"))
		p.wantItems(p.carolClient(), to, n, "a")
	}},
	nsPubSub + "#access-presence": {"XEP-0060", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", accessOpt("presence"))
		p.wantItems(p.bob, to, n, "a")
		p.wantRefused(p.carolClient(), to, n)
	}},
	nsPubSub + "#publish-options": {"XEP-0223", func(p *prober, to string) {
		n := p.node()
		p.publish(to, n, "a", accessOpt("whitelist"))
		p.wantRefused(p.bob, to, n)
		r := p.iqAny(p.alice, to, "set", fmt.Sprintf(`<pubsub xmlns='%s'><publish node='%s'><item id='b'><entry xmlns='urn:xmpp:probe'/></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s#publish-options</value></field>%s</x></publish-options></pubsub>`, nsPubSub, n, nsPubSub, accessOpt("open")))
		if r.ErrorCondition() != stanza.Conflict || findIn(r, nsPubSub+"#errors", "precondition-not-met") == nil {
			p.t.Fatalf("publish-options mismatch: %s", r)
		}
	}},
	// PEP: contacts whose caps want node+notify get items unasked; others
	// (and other nodes) not.
	nsPubSub + "#auto-subscribe": {"XEP-0163", func(p *prober, to string) {
		item := p.id()
		p.publish(to, probeNotifyNode, item, "")
		p.bob.Expect(isItemEvent(probeNotifyNode, item))
	}},
	nsPubSub + "#filtered-notifications": {"XEP-0163", func(p *prober, to string) {
		other, want := p.id(), p.id()
		p.publish(to, "urn:xmpp:probe:unwanted", other, "")
		p.publish(to, probeNotifyNode, want, "")
		got := p.bob.Expect(func(s *stanza.Stanza) bool {
			return isItemEvent("urn:xmpp:probe:unwanted", other)(s) || isItemEvent(probeNotifyNode, want)(s)
		})
		if !isItemEvent(probeNotifyNode, want)(got) {
			p.t.Fatalf("bob got a notification his caps do not ask for: %s", got)
		}
	}},
}

func (p *prober) subscribe(c *xmpptest.Client, to, node string) {
	p.t.Helper()
	r := p.iq(c, to, "set", fmt.Sprintf(`<pubsub xmlns='%s'><subscribe node='%s' jid='%s'/></pubsub>`, nsPubSub, node, c.JID.Bare()))
	if sub := findIn(r, nsPubSub, "subscription"); sub == nil || sub.AttrValue("subscription") != "subscribed" {
		p.t.Fatalf("subscribe: %s", r)
	}
}

// wantRefusedOrMissing: the node does not exist yet.
func (p *prober) wantRefusedOrMissing(to, node string) {
	p.t.Helper()
	if r := p.items(p.alice, to, node, ""); r.ErrorCondition() != stanza.ItemNotFound {
		p.t.Fatalf("items of a node never created: %s", r)
	}
}

func isItemEvent(node, item string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		if !isEvent(node)(s) {
			return false
		}
		it := find(s.Child(nsPubSub+"#event", "event"), nsPubSub+"#event", "item")
		return it != nil && it.AttrValue("id") == item
	}
}

func probeRetract(p *prober, to string) {
	n := p.node()
	p.publish(to, n, "keep", keepMany)
	p.publish(to, n, "drop", keepMany)
	p.iq(p.alice, to, "set", fmt.Sprintf(`<pubsub xmlns='%s'><retract node='%s'><item id='drop'/></retract></pubsub>`, nsPubSub, n))
	p.wantItems(p.alice, to, n, "keep")
}

func probeWhitelist(p *prober, to string) {
	n := p.node()
	p.publish(to, n, "a", accessOpt("whitelist"))
	p.wantRefused(p.bob, to, n)
	p.owner(to, fmt.Sprintf(`<affiliations node='%s'><affiliation jid='%s' affiliation='member'/></affiliations>`, n, p.e.bare("bob")))
	p.wantItems(p.bob, to, n, "a")
}

// Group chat. createRoom makes probe-room at service: alice the owner,
// configured moderated, public, temporary and logged (so the archive is
// on), with bob as a participant.
const nsMUC = "http://jabber.org/protocol/muc"

func (p *prober) createRoom(service string) string {
	p.t.Helper()
	room := "probe-room@" + service
	p.alice.Sendf(`<presence to='%s/alice'><x xmlns='%s'/></presence>`, room, nsMUC)
	self := p.alice.Expect(isSelfPresence(room + "/alice"))
	if !strings.Contains(self.String(), `code="201"`) {
		p.t.Fatalf("room not created: %s", self)
	}
	form := func(v, val string) string { return fmt.Sprintf(`<field var='%s'><value>%s</value></field>`, v, val) }
	p.iq(p.alice, room, "set", `<query xmlns='`+nsMUC+`#owner'><x xmlns='jabber:x:data' type='submit'>`+
		form("FORM_TYPE", nsMUC+"#roomconfig")+form("muc#roomconfig_moderatedroom", "1")+form("muc#roomconfig_publicroom", "1")+
		form("muc#roomconfig_persistentroom", "0")+form("muc#roomconfig_enablelogging", "1")+`</x></query>`)
	p.bob.Sendf(`<presence to='%s/bob'><x xmlns='%s'/></presence>`, room, nsMUC)
	p.bob.Expect(isSelfPresence(room + "/bob"))
	p.alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.String() == room+"/bob" })
	// In a moderated room newcomers are visitors; alice gives bob voice.
	p.iq(p.alice, room, "set", `<query xmlns='`+nsMUC+`#admin'><item nick='bob' role='participant'/></query>`)
	p.bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == room+"/bob" && strings.Contains(s.String(), `role="participant"`)
	})
	return room
}

func isSelfPresence(occupant string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		x := s.Child(nsMUC+"#user", "x")
		return s.Kind == stanza.KindPresence && s.From.String() == occupant && x != nil && strings.Contains(x.String(), `code="110"`)
	}
}

// say has bob say body in room and returns alice's copy and bob's echo.
func (p *prober) say(room, body, id string) (atAlice, echo *stanza.Stanza) {
	p.t.Helper()
	p.bob.Sendf(`<message to='%s' type='groupchat' id='%s'><body>%s</body></message>`, room, id, body)
	is := func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Type == "groupchat" && s.From.String() == room+"/bob" && s.Body() == body
	}
	return p.alice.Expect(is), p.bob.Expect(is)
}

func roomStanzaID(s *stanza.Stanza, room string) string {
	for _, e := range s.Elements() {
		if e.Name.Space == "urn:xmpp:sid:0" && e.Name.Local == "stanza-id" && e.AttrValue("by") == room {
			return e.AttrValue("id")
		}
	}
	return ""
}

func init() {
	probes["conference"][nsMUC] = probe{"XEP-0045", func(p *prober, to string) {
		// The service hosts rooms: a new one is created on join (status 201).
		room := "probe-new-" + p.id() + "@" + to
		p.alice.Sendf(`<presence to='%s/alice'><x xmlns='%s'/></presence>`, room, nsMUC)
		if self := p.alice.Expect(isSelfPresence(room + "/alice")); !strings.Contains(self.String(), `code="201"`) {
			p.t.Fatalf("join of a new room: %s", self)
		}
		p.alice.Sendf(`<presence to='%s/alice' type='unavailable'/>`, room)
		p.alice.Expect(func(s *stanza.Stanza) bool {
			return s.Kind == stanza.KindPresence && s.From.String() == room+"/alice" && s.Type == "unavailable"
		})
	}}
	probes["room"] = map[string]probe{
		nsDisco + "#info":  {"XEP-0030", probeDiscoInfo},
		nsDisco + "#items": {"XEP-0030", probeDiscoItems},
		"urn:xmpp:ping":    {"XEP-0199", probePing},
		nsMUC: {"XEP-0045", func(p *prober, room string) {
			p.say(room, "muc probe", p.id())
		}},
		nsMUC + "#self-ping-optimization": {"XEP-0410", func(p *prober, room string) {
			p.iq(p.alice, room+"/alice", "get", `<ping xmlns='urn:xmpp:ping'/>`)
			p.iqErr(p.carolClient(), room+"/carol", "get", `<ping xmlns='urn:xmpp:ping'/>`, stanza.NotAcceptable)
		}},
		"urn:xmpp:occupant-id:0": {"XEP-0421", func(p *prober, room string) {
			a, e := p.say(room, "occupant-id probe", p.id())
			ia, ie := a.Child("urn:xmpp:occupant-id:0", "occupant-id"), e.Child("urn:xmpp:occupant-id:0", "occupant-id")
			if ia == nil || ie == nil || ia.AttrValue("id") == "" || ia.AttrValue("id") != ie.AttrValue("id") {
				p.t.Fatalf("occupant ids %s / %s", a, e)
			}
		}},
		nsMUC + "#stable_id": {"XEP-0045", func(p *prober, room string) {
			id := "stable-" + p.id()
			a, e := p.say(room, "stable id probe", id)
			if e.ID != id || roomStanzaID(a, room) == "" || roomStanzaID(a, room) != roomStanzaID(e, room) {
				p.t.Fatalf("echo id %q (sent %q), stanza-ids %q / %q", e.ID, id, roomStanzaID(a, room), roomStanzaID(e, room))
			}
		}},
		"urn:xmpp:sid:0": {"XEP-0359", func(p *prober, room string) {
			a, _ := p.say(room, "stanza-id probe", p.id())
			if roomStanzaID(a, room) == "" {
				p.t.Fatalf("room message without the room's stanza-id: %s", a)
			}
		}},
		"urn:xmpp:message-moderate:1": {"XEP-0425", probeModerate},
		"urn:xmpp:message-retract:1": {"XEP-0424", func(p *prober, room string) {
			// bob retracts his own message (XEP-0424 §4, the room's
			// stanza-id in a groupchat); the room passes it on.
			a, _ := p.say(room, "retraction probe", p.id())
			sid := roomStanzaID(a, room)
			p.bob.Sendf(`<message to='%s' type='groupchat' id='%s'><retract xmlns='urn:xmpp:message-retract:1' id='%s'/>`+
				`<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>/me retracted a message</body><store xmlns='urn:xmpp:hints'/></message>`, room, p.id(), sid)
			p.alice.Expect(func(s *stanza.Stanza) bool {
				r := s.Child("urn:xmpp:message-retract:1", "retract")
				return s.Kind == stanza.KindMessage && s.From.String() == room+"/bob" && r != nil && r.AttrValue("id") == sid
			})
		}},
		nsMUC + "#request": {"XEP-0045", func(p *prober, room string) {
			c := p.carolClient()
			c.Sendf(`<presence to='%s/carol'><x xmlns='%s'/></presence>`, room, nsMUC)
			self := c.Expect(isSelfPresence(room + "/carol"))
			if !strings.Contains(self.String(), `role="visitor"`) {
				p.t.Fatalf("carol in a moderated room: %s", self)
			}
			c.Sendf(`<message to='%s'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>%s#request</value></field><field var='muc#role' type='list-single'><value>participant</value></field></x></message>`, room, nsMUC)
			req := p.alice.Expect(func(s *stanza.Stanza) bool {
				x := s.Child("jabber:x:data", "x")
				return s.Kind == stanza.KindMessage && s.From.String() == room && x != nil && strings.Contains(x.String(), nsMUC+"#request")
			})
			if !strings.Contains(req.String(), "muc#request_allow") {
				p.t.Fatalf("voice request to the moderator: %s", req)
			}
			c.Sendf(`<presence to='%s/carol' type='unavailable'/>`, room)
			c.Expect(func(s *stanza.Stanza) bool {
				return s.Kind == stanza.KindPresence && s.From.String() == room+"/carol" && s.Type == "unavailable"
			})
		}},
		"urn:xmpp:mam:2": {"XEP-0313", func(p *prober, room string) {
			p.say(room, "room archive probe", p.id())
			ms := p.mamQuery(room, `<set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set>`)
			if len(ms) != 1 || !strings.Contains(ms[0].String(), "room archive probe") {
				p.t.Fatalf("room archive, last message: %v", ms)
			}
		}},
		"urn:xmpp:mam:2#extended": {"XEP-0313", func(p *prober, room string) {
			probeMAMExtended(p, room)
			probeMAMMetadata(p, room)
		}},
		// Room type flags: each says how the room behaves.
		"muc_moderated": {"XEP-0045", func(p *prober, room string) {
			c := p.carolClient()
			c.Sendf(`<presence to='%s/carol'><x xmlns='%s'/></presence>`, room, nsMUC)
			c.Expect(isSelfPresence(room + "/carol"))
			id := p.id()
			c.Sendf(`<message to='%s' type='groupchat' id='%s'><body>visitor speaks</body></message>`, room, id)
			e := c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.ID == id })
			if e.Type != "error" || e.ErrorCondition() != stanza.Forbidden {
				p.t.Fatalf("a visitor's message in a moderated room: %s", e)
			}
			c.Sendf(`<presence to='%s/carol' type='unavailable'/>`, room)
			c.Expect(func(s *stanza.Stanza) bool {
				return s.Kind == stanza.KindPresence && s.From.String() == room+"/carol" && s.Type == "unavailable"
			})
		}},
		"muc_public": {"XEP-0045", func(p *prober, room string) {
			j := strings.SplitN(room, "@", 2)
			r := p.iq(p.carolClient(), j[1], "get", `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
			if !strings.Contains(r.String(), room) {
				p.t.Fatalf("public room not listed: %s", r)
			}
		}},
		"muc_open": {"XEP-0045", func(p *prober, room string) {
			c := p.carolClient() // not a member, not invited
			c.Sendf(`<presence to='%s/carol'><x xmlns='%s'/></presence>`, room, nsMUC)
			c.Expect(isSelfPresence(room + "/carol"))
			c.Sendf(`<presence to='%s/carol' type='unavailable'/>`, room)
			c.Expect(func(s *stanza.Stanza) bool {
				return s.Kind == stanza.KindPresence && s.From.String() == room+"/carol" && s.Type == "unavailable"
			})
		}},
		"muc_unsecured": {"XEP-0045", func(p *prober, room string) {
			// bob joined without a password (createRoom).
			p.iq(p.bob, room+"/bob", "get", `<ping xmlns='urn:xmpp:ping'/>`)
		}},
		"muc_semianonymous": {"XEP-0045", func(p *prober, room string) {
			c := p.carolClient()
			c.Sendf(`<presence to='%s/carol'><x xmlns='%s'/></presence>`, room, nsMUC)
			pr := c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.String() == room+"/bob" })
			if strings.Contains(pr.String(), p.e.bare("bob")) {
				p.t.Fatalf("a participant sees bob's real JID: %s", pr)
			}
			c.Expect(isSelfPresence(room + "/carol"))
			c.Sendf(`<presence to='%s/carol' type='unavailable'/>`, room)
			c.Expect(func(s *stanza.Stanza) bool {
				return s.Kind == stanza.KindPresence && s.From.String() == room+"/carol" && s.Type == "unavailable"
			})
		}},
		"muc_temporary": {"XEP-0045", func(p *prober, room string) {
			// A temporary room ends when its last occupant leaves.
			j := strings.SplitN(room, "@", 2)
			tmp := "probe-tmp-" + p.id() + "@" + j[1]
			c := p.carolClient()
			c.Sendf(`<presence to='%s/carol'/>`, tmp) // groupchat 1.0 join: an instant room
			c.Expect(isSelfPresence(tmp + "/carol"))
			p.iq(c, tmp, "get", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
			c.Sendf(`<presence to='%s/carol' type='unavailable'/>`, tmp)
			c.Expect(func(s *stanza.Stanza) bool {
				return s.Kind == stanza.KindPresence && s.From.String() == tmp+"/carol" && s.Type == "unavailable"
			})
			p.iqErr(c, tmp, "get", `<query xmlns='http://jabber.org/protocol/disco#info'/>`, stanza.ItemNotFound)
		}},
	}
}

// probeModerate: alice (a moderator) retracts bob's message (XEP-0425,
// carried in a XEP-0424 retraction); both see it retracted.
func probeModerate(p *prober, room string) {
	a, _ := p.say(room, "moderation probe", p.id())
	sid := roomStanzaID(a, room)
	p.iq(p.alice, room, "set", fmt.Sprintf(`<moderate xmlns='urn:xmpp:message-moderate:1' id='%s'><retract xmlns='urn:xmpp:message-retract:1'/><reason>probe</reason></moderate>`, sid))
	for _, c := range []*xmpptest.Client{p.alice, p.bob} {
		c.Expect(func(s *stanza.Stanza) bool {
			r := s.Child("urn:xmpp:message-retract:1", "retract")
			return s.Kind == stanza.KindMessage && s.From.String() == room && r != nil && r.AttrValue("id") == sid &&
				r.Child("urn:xmpp:message-moderate:1", "moderated") != nil
		})
	}
}
