package mam_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const (
	nsCarbons = "urn:xmpp:carbons:2"
	nsForward = "urn:xmpp:forward:0"
)

var queryN atomic.Int64

// page is what one archive query returned.
type page struct {
	results []*stanza.Stanza // result messages, in arrival order
	iq      *stanza.Stanza   // the iq result or error
	fin     *stanza.Element
}

func (p page) ids() []string {
	var out []string
	for _, r := range p.results {
		out = append(out, r.Child(mam.NS, "result").AttrValue("id"))
	}
	return out
}

func (p page) bodies() []string {
	var out []string
	for _, r := range p.results {
		out = append(out, forwarded(r).ChildText("", "body"))
	}
	return out
}

func (p page) complete() bool { return p.fin.AttrValue("complete") == "true" }

func (p page) rsm(local string) string {
	return p.fin.Child(mam.NSRSM, "set").ChildText(mam.NSRSM, local)
}

// forwarded returns the archived message inside a result.
func forwarded(r *stanza.Stanza) *stanza.Element {
	return r.Child(mam.NS, "result").Child(nsForward, "forwarded").Child("", "message")
}

// archiveQuery sends a query with the given form fields and RSM children
// and collects the results that precede the iq answer.
func archiveQuery(t testing.TB, c *xmpptest.Client, fields, set string, extra ...string) page {
	t.Helper()
	n := queryN.Add(1)
	id, qid := fmt.Sprintf("mamq%d", n), fmt.Sprintf("qid%d", n)
	var b strings.Builder
	fmt.Fprintf(&b, `<iq type='set' id='%s'><query xmlns='urn:xmpp:mam:2' queryid='%s'>`, id, qid)
	if fields != "" {
		b.WriteString(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>` + fields + `</x>`)
	}
	if set != "" {
		b.WriteString(`<set xmlns='http://jabber.org/protocol/rsm'>` + set + `</set>`)
	}
	b.WriteString(strings.Join(extra, "") + `</query></iq>`)
	c.Send(b.String())
	p := page{iq: c.Expect(xmpptest.IsIQ(id))}
	p.fin = p.iq.Child(mam.NS, "fin")
	// The server sends every result before the iq: they are all queued.
	for {
		r, err := c.TryExpect(func(s *stanza.Stanza) bool {
			res := s.Child(mam.NS, "result")
			return s.Kind == stanza.KindMessage && res != nil && res.AttrValue("queryid") == qid
		}, 0)
		if err != nil {
			break
		}
		if r.From.String() != c.JID.Bare().String() {
			t.Fatalf("result from %s, want the archive's JID %s", r.From, c.JID.Bare())
		}
		p.results = append(p.results, r)
	}
	if p.iq.Type == "result" && p.fin == nil {
		t.Fatalf("query answered without fin: %s", p.iq)
	}
	return p
}

func field(name string, values ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<field var='%s'>`, name)
	for _, v := range values {
		fmt.Fprintf(&b, `<value>%s</value>`, v)
	}
	b.WriteString(`</field>`)
	return b.String()
}

// stanzaIDs lists the stanza-id elements of a message as by=id.
func stanzaIDs(children []*stanza.Element) []string {
	var out []string
	for _, e := range children {
		if e.Name.Local == "stanza-id" && e.Name.Space == mam.NSSID {
			out = append(out, e.AttrValue("by")+"="+e.AttrValue("id"))
		}
	}
	return out
}

func ownStanzaID(t *testing.T, children []*stanza.Element, by string) string {
	t.Helper()
	var found []string
	for _, s := range stanzaIDs(children) {
		if b, id, _ := strings.Cut(s, "="); b == by {
			found = append(found, id)
		}
	}
	if len(found) != 1 || found[0] == "" {
		t.Fatalf("stanza-ids by %s: %v (all: %v)", by, found, stanzaIDs(children))
	}
	return found[0]
}

func setup(t testing.TB, opts ...xmpptest.Option) *xmpptest.TestServer {
	ts := xmpptest.RunServer(t, opts...)
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, u+" password")
	}
	return ts
}

func dial(t testing.TB, ts *xmpptest.TestServer, user, resource string) *xmpptest.Client {
	c := ts.Dial(t, user, user+" password", xmpptest.ClientOptions{Resource: resource})
	c.Send(`<presence/>`)
	return c
}

func TestArchiveBothSides(t *testing.T) {
	ts := setup(t)
	desk := dial(t, ts, "alice", "desk")
	phone := dial(t, ts, "alice", "phone")
	bob := dial(t, ts, "bob", "laptop")
	phone.Send(`<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	phone.Expect(xmpptest.IsIQ("c"))

	desk.Send(`<message to='bob@localhost' type='chat' id='m1'><body>hello bob</body></message>`)
	got := bob.Expect(xmpptest.IsMessage("hello bob"))
	bobID := ownStanzaID(t, got.Elements(), "bob@localhost")
	if ids := stanzaIDs(got.Elements()); len(ids) != 1 {
		t.Fatalf("bob's copy carries %v; the sender's archive id must not leak", ids)
	}
	carbon := phone.Expect(func(s *stanza.Stanza) bool { return s.Child(nsCarbons, "sent") != nil })
	sent := carbon.Child(nsCarbons, "sent").Child(nsForward, "forwarded").Child("", "message")
	aliceID := ownStanzaID(t, sent.Elements(), "alice@localhost")

	// Each side's archive has the message under the id it was told.
	a := archiveQuery(t, desk, "", "")
	if !slices.Equal(a.ids(), []string{aliceID}) || !slices.Equal(a.bodies(), []string{"hello bob"}) || !a.complete() {
		t.Fatalf("alice's archive: %v %v complete=%v", a.ids(), a.bodies(), a.complete())
	}
	fwd := a.results[0].Child(mam.NS, "result").Child(nsForward, "forwarded")
	if d := fwd.Child(stanza.NSDelay, "delay"); d == nil || d.AttrValue("stamp") == "" {
		t.Fatalf("result without delay: %s", a.results[0])
	}
	if m := forwarded(a.results[0]); m.AttrValue("to") != "bob@localhost" || m.AttrValue("from") != "alice@localhost/desk" || m.AttrValue("id") != "m1" {
		t.Fatalf("archived message lost its attributes: %s", m)
	}
	b := archiveQuery(t, bob, "", "")
	if !slices.Equal(b.ids(), []string{bobID}) || !slices.Equal(b.bodies(), []string{"hello bob"}) {
		t.Fatalf("bob's archive: %v %v", b.ids(), b.bodies())
	}

	// Offline delivery: the stored copy carries the stanza-id too.
	desk.Send(`<message to='carol@localhost' type='chat'><body>while you were out</body></message>`)
	desk.Ping()
	carol := dial(t, ts, "carol", "")
	off := carol.Expect(xmpptest.IsMessage("while you were out"))
	carolID := ownStanzaID(t, off.Elements(), "carol@localhost")
	if c := archiveQuery(t, carol, "", ""); !slices.Equal(c.ids(), []string{carolID}) {
		t.Fatalf("carol's archive: %v, want %s", c.ids(), carolID)
	}

	// To an outside address: archived on the sender's side only.
	desk.Send(`<message to='friend@elsewhere.example' type='chat'><body>to the outside</body></message>`)
	// A note to self is archived once, when delivered.
	desk.Send(`<message to='alice@localhost' type='chat'><body>note to self</body></message>`)
	phone.Expect(xmpptest.IsMessage("note to self"))
	// Chat states alone are not archived.
	desk.Send(`<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	desk.Ping()
	a = archiveQuery(t, desk, "", "")
	want := []string{"hello bob", "while you were out", "to the outside", "note to self"}
	if !slices.Equal(a.bodies(), want) {
		t.Fatalf("alice's archive: %v, want %v", a.bodies(), want)
	}
	if w := archiveQuery(t, desk, field("with", "friend@elsewhere.example"), ""); !slices.Equal(w.bodies(), []string{"to the outside"}) {
		t.Fatalf("with the outside: %v", w.bodies())
	}
	if w := archiveQuery(t, desk, field("with", "alice@localhost"), ""); !slices.Equal(w.bodies(), []string{"note to self"}) {
		t.Fatalf("with self: %v", w.bodies())
	}
}

func TestSpoofedStanzaIDStripped(t *testing.T) {
	ts := setup(t)
	alice := dial(t, ts, "alice", "desk")
	bob := dial(t, ts, "bob", "")
	forged := `<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='forged-1'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='Alice@LOCALHOST' id='forged-2'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='carol@localhost' id='forged-3'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.elsewhere.example' id='theirs'/>`
	bob.Send(`<message to='alice@localhost' type='chat'><body>spoof</body>` + forged + `</message>`)
	got := alice.Expect(xmpptest.IsMessage("spoof"))
	ids := stanzaIDs(got.Elements())
	own := ownStanzaID(t, got.Elements(), "alice@localhost")
	if len(ids) != 2 || !slices.Contains(ids, "room@muc.elsewhere.example=theirs") || strings.HasPrefix(own, "forged") {
		t.Fatalf("stanza-ids after delivery: %v", ids)
	}
	// Archived without the forged ids, too.
	a := archiveQuery(t, alice, "", "")
	if len(a.results) != 1 || !slices.Equal(stanzaIDs(forwarded(a.results[0]).Elements()), []string{"room@muc.elsewhere.example=theirs"}) {
		t.Fatalf("archived copy: %v", a.results)
	}
	// Not archived (a never preference) still means stripped.
	alice.Send(`<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>bob@localhost</jid></never></prefs></iq>`)
	alice.Expect(xmpptest.IsIQ("p"))
	bob.Send(`<message to='alice@localhost/desk' type='chat'><body>spoof again</body>` + forged + `</message>`)
	got = alice.Expect(xmpptest.IsMessage("spoof again"))
	if ids := stanzaIDs(got.Elements()); !slices.Equal(ids, []string{"room@muc.elsewhere.example=theirs"}) {
		t.Fatalf("unarchived message kept %v", ids)
	}
	// A client cannot plant an archive id in its own sent message either.
	alice.Send(`<iq type='set' id='p2'><prefs xmlns='urn:xmpp:mam:2' default='always'/></iq>`)
	alice.Expect(xmpptest.IsIQ("p2"))
	alice.Send(`<message to='bob@localhost' type='chat'><body>planted</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='mine'/></message>`)
	got = bob.Expect(xmpptest.IsMessage("planted"))
	if ids := stanzaIDs(got.Elements()); len(ids) != 1 || strings.Contains(ids[0], "mine") {
		t.Fatalf("bob got %v", ids)
	}
	a = archiveQuery(t, alice, "", "")
	if len(a.results) != 2 || len(stanzaIDs(forwarded(a.results[1]).Elements())) != 0 {
		t.Fatalf("alice's archive: %v", a.results)
	}
}

// seed archives messages for alice straight into the server's archive
// file, with chosen stamps: one every hour from t0, with bob, carol and
// bob's phone in turn.
func seed(t testing.TB, ts *xmpptest.TestServer, n int, t0 time.Time) []string {
	t.Helper()
	s, err := mam.OpenStore(context.Background(), filepath.Join(ts.Config.DataDir, ts.Config.MAM.File), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peers := [][2]string{{"bob@localhost", "laptop"}, {"carol@localhost", ""}, {"bob@localhost", "phone"}}
	var ids []string
	for i := range n {
		p := peers[i%len(peers)]
		from := p[0]
		if p[1] != "" {
			from += "/" + p[1]
		}
		id, err := s.Append(context.Background(), mam.Entry{User: "alice", Time: t0.Add(time.Duration(i) * time.Hour), Peer: p[0], PeerRes: p[1],
			XML: fmt.Appendf(nil, `<message from="%s" to="alice@localhost" type="chat"><body>m%d</body></message>`, from, i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func bodies(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("m%d", i))
	}
	return out
}

func TestQueryFilters(t *testing.T) {
	ts := setup(t)
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := seed(t, ts, 12, t0)
	alice := dial(t, ts, "alice", "")
	at := func(h int) string { return t0.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	tests := []struct {
		name   string
		fields string
		want   []string
	}{
		{"all", "", bodies(0, 12)},
		{"with bare", field("with", "bob@localhost"), []string{"m0", "m2", "m3", "m5", "m6", "m8", "m9", "m11"}},
		{"with full", field("with", "bob@localhost/phone"), []string{"m2", "m5", "m8", "m11"}},
		{"with nobody", field("with", "nobody@localhost"), nil},
		{"start", field("start", at(9)), bodies(9, 12)},
		{"end", field("end", at(2)), bodies(0, 3)},
		{"start and end", field("start", at(4)) + field("end", at(6)), bodies(4, 7)},
		{"start end with", field("start", at(4)) + field("end", at(8)) + field("with", "carol@localhost"), []string{"m4", "m7"}},
		{"ids", field("ids", ids[7], ids[3]), []string{"m3", "m7"}},
		{"after-id", field("after-id", ids[9]), bodies(10, 12)},
		{"before-id", field("before-id", ids[2]), bodies(0, 2)},
		{"between ids", field("after-id", ids[3]) + field("before-id", ids[7]), bodies(4, 7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := archiveQuery(t, alice, tc.fields, "")
			if p.iq.Type != "result" || !slices.Equal(p.bodies(), tc.want) || !p.complete() {
				t.Fatalf("got %v complete=%v (%s), want %v", p.bodies(), p.complete(), p.iq, tc.want)
			}
			if got := p.rsm("count"); got != fmt.Sprint(len(tc.want)) {
				t.Fatalf("count %s, want %d", got, len(tc.want))
			}
			for i, r := range p.results {
				d := r.Child(mam.NS, "result").Child(nsForward, "forwarded").Child(stanza.NSDelay, "delay")
				var n int
				fmt.Sscanf(tc.want[i], "m%d", &n)
				if want := t0.Add(time.Duration(n) * time.Hour).Format("2006-01-02T15:04:05.000Z"); d.AttrValue("stamp") != want {
					t.Fatalf("stamp %s, want %s", d.AttrValue("stamp"), want)
				}
			}
		})
	}

	errs := []struct {
		name   string
		fields string
		set    string
		cond   stanza.Condition
	}{
		{"unknown rsm after", "", "<after>no-such-id</after>", stanza.ItemNotFound},
		{"unknown rsm before", "", "<before>no-such-id</before>", stanza.ItemNotFound},
		{"unknown after-id", field("after-id", "no-such-id"), "", stanza.ItemNotFound},
		{"unknown before-id", field("before-id", "no-such-id"), "", stanza.ItemNotFound},
		{"unknown in ids", field("ids", ids[0], "no-such-id"), "", stanza.ItemNotFound},
		{"unknown field", field("include-groupchat", "true"), "", stanza.FeatureNotImplemented},
		{"bad stamp", field("start", "last tuesday"), "", stanza.BadRequest},
		{"rsm index", "", "<index>3</index>", stanza.FeatureNotImplemented},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			p := archiveQuery(t, alice, tc.fields, tc.set)
			if p.iq.Type != "error" || p.iq.ErrorCondition() != tc.cond || len(p.results) != 0 {
				t.Fatalf("got %s with %d results, want %s", p.iq, len(p.results), tc.cond)
			}
		})
	}
	// item-not-found is of type cancel (XEP-0313 example 16).
	p := archiveQuery(t, alice, "", "<after>no-such-id</after>")
	if e := p.iq.Child("", "error"); e.AttrValue("type") != "cancel" {
		t.Fatalf("error type %s", e)
	}
}

func TestPaging(t *testing.T) {
	ts := setup(t)
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 25
	ids := seed(t, ts, n, t0)
	alice := dial(t, ts, "alice", "")

	// Forwards to the end.
	var got []string
	var completes []bool
	set := "<max>10</max>"
	for range 5 {
		p := archiveQuery(t, alice, "", set)
		got = append(got, p.ids()...)
		completes = append(completes, p.complete())
		if p.rsm("count") != fmt.Sprint(n) || p.rsm("first") != p.ids()[0] || p.rsm("last") != p.ids()[len(p.ids())-1] {
			t.Fatalf("rsm set %s for page %v", p.fin, p.ids())
		}
		if p.complete() {
			break
		}
		set = "<max>10</max><after>" + p.rsm("last") + "</after>"
	}
	if !slices.Equal(got, ids) || !slices.Equal(completes, []bool{false, false, true}) {
		t.Fatalf("forward: %d ids (equal=%v), complete flags %v", len(got), slices.Equal(got, ids), completes)
	}

	// Backwards from the end, each page still in chronological order.
	got, completes = nil, nil
	set = "<max>10</max><before/>"
	for range 5 {
		p := archiveQuery(t, alice, "", set)
		got = append(p.ids(), got...)
		completes = append(completes, p.complete())
		if p.complete() {
			break
		}
		set = "<max>10</max><before>" + p.rsm("first") + "</before>"
	}
	if !slices.Equal(got, ids) || !slices.Equal(completes, []bool{false, false, true}) {
		t.Fatalf("backward: equal=%v, complete flags %v", slices.Equal(got, ids), completes)
	}

	// A page that ends exactly at the end is complete.
	if p := archiveQuery(t, alice, "", "<max>5</max><after>"+ids[19]+"</after>"); !p.complete() || !slices.Equal(p.ids(), ids[20:]) {
		t.Fatalf("exact last page: %v complete=%v", p.ids(), p.complete())
	}
	// Paging within a filter.
	p := archiveQuery(t, alice, field("with", "carol@localhost"), "<max>3</max><before/>")
	if !slices.Equal(p.bodies(), []string{"m16", "m19", "m22"}) || p.complete() || p.rsm("count") != "8" {
		t.Fatalf("filtered last page: %v complete=%v %s", p.bodies(), p.complete(), p.fin)
	}
	// max 0 gives only the count.
	if p := archiveQuery(t, alice, "", "<max>0</max>"); len(p.results) != 0 || p.rsm("count") != fmt.Sprint(n) || p.complete() {
		t.Fatalf("max 0: %d results, %s", len(p.results), p.fin)
	}
	// Flipped page: same items, newest first.
	if p := archiveQuery(t, alice, "", "<max>3</max><before/>", "<flip-page/>"); !slices.Equal(p.bodies(), []string{"m24", "m23", "m22"}) || p.rsm("first") != ids[22] {
		t.Fatalf("flipped: %v %s", p.bodies(), p.fin)
	}
	// The server caps the page size.
	ts2 := setup(t, func(c *config.Config) { c.MAM.MaxPageSize = 4 })
	seed(t, ts2, 6, t0)
	a2 := dial(t, ts2, "alice", "")
	if p := archiveQuery(t, a2, "", "<max>100</max>"); len(p.results) != 4 || p.complete() {
		t.Fatalf("capped page: %d results complete=%v", len(p.results), p.complete())
	}
	if p := archiveQuery(t, a2, "", ""); len(p.results) != 4 {
		t.Fatalf("default page: %d results", len(p.results))
	}
}

func TestFormAndMetadata(t *testing.T) {
	ts := setup(t)
	alice := dial(t, ts, "alice", "")
	alice.Send(`<iq type='get' id='f'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	r := alice.Expect(xmpptest.IsIQ("f"))
	x := r.Child(mam.NS, "query").Child(mam.NSData, "x")
	var vars []string
	for _, f := range x.Elements() {
		vars = append(vars, f.AttrValue("var")+":"+f.AttrValue("type"))
		if f.Child(mam.NSData, "required") != nil {
			t.Fatalf("field %s marked required", f.AttrValue("var"))
		}
	}
	want := []string{"FORM_TYPE:hidden", "with:jid-single", "start:text-single", "end:text-single", "before-id:text-single", "after-id:text-single", "ids:list-multi"}
	if !slices.Equal(vars, want) {
		t.Fatalf("form fields %v, want %v", vars, want)
	}

	alice.Send(`<iq type='get' id='m0'><metadata xmlns='urn:xmpp:mam:2'/></iq>`)
	if md := alice.Expect(xmpptest.IsIQ("m0")).Child(mam.NS, "metadata"); md == nil || len(md.Elements()) != 0 {
		t.Fatalf("empty archive metadata: %v", md)
	}
	t0 := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	ids := seed(t, ts, 3, t0)
	alice.Send(`<iq type='get' id='m1'><metadata xmlns='urn:xmpp:mam:2'/></iq>`)
	md := alice.Expect(xmpptest.IsIQ("m1")).Child(mam.NS, "metadata")
	if s, e := md.Child(mam.NS, "start"), md.Child(mam.NS, "end"); s.AttrValue("id") != ids[0] || e.AttrValue("id") != ids[2] ||
		s.AttrValue("timestamp") != "2024-05-01T08:00:00.000Z" || e.AttrValue("timestamp") != "2024-05-01T10:00:00.000Z" {
		t.Fatalf("metadata %s", md)
	}

	alice.Send(`<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	var feats []string
	for _, f := range alice.Expect(xmpptest.IsIQ("d")).Payload().Elements() {
		if f.Name.Local == "feature" {
			feats = append(feats, f.AttrValue("var"))
		}
	}
	for _, f := range []string{mam.NS, mam.NSExtended, mam.NSSID} {
		if !slices.Contains(feats, f) {
			t.Errorf("account disco lacks %s: %v", f, feats)
		}
	}
}

func TestOtherUsersArchive(t *testing.T) {
	ts := setup(t)
	seed(t, ts, 3, time.Now())
	bob := dial(t, ts, "bob", "")
	for _, tc := range []struct{ name, xml string }{
		{"query", `<iq type='set' id='%s' to='%s'><query xmlns='urn:xmpp:mam:2'/></iq>`},
		{"form", `<iq type='get' id='%s' to='%s'><query xmlns='urn:xmpp:mam:2'/></iq>`},
		{"prefs", `<iq type='get' id='%s' to='%s'><prefs xmlns='urn:xmpp:mam:2'/></iq>`},
		{"prefs set", `<iq type='set' id='%s' to='%s'><prefs xmlns='urn:xmpp:mam:2' default='never'/></iq>`},
		{"metadata", `<iq type='get' id='%s' to='%s'><metadata xmlns='urn:xmpp:mam:2'/></iq>`},
	} {
		for _, target := range []string{"alice@localhost", "nobody@localhost", "alice@localhost/x"} {
			id := tc.name + target
			bob.Sendf(tc.xml, id, target)
			r := bob.Expect(xmpptest.IsIQ(id))
			// The same answer for an account that exists and one that does
			// not, so the archive cannot be used to probe for accounts.
			if r.Type != "error" || r.ErrorCondition() != stanza.ServiceUnavailable {
				t.Errorf("%s of %s: %s", tc.name, target, r)
			}
		}
	}
	bob.Ping()
	bob.ExpectNone(func(s *stanza.Stanza) bool { return s.Child(mam.NS, "result") != nil }, 0)
	// The prefs set above changed nothing.
	alice := dial(t, ts, "alice", "")
	alice.Send(`<iq type='get' id='p'><prefs xmlns='urn:xmpp:mam:2'/></iq>`)
	if p := alice.Expect(xmpptest.IsIQ("p")).Child(mam.NS, "prefs"); p.AttrValue("default") != "always" {
		t.Fatalf("alice's prefs: %s", p)
	}
}

func TestPrefs(t *testing.T) {
	ts := setup(t)
	alice := dial(t, ts, "alice", "")
	bob := dial(t, ts, "bob", "")
	carol := dial(t, ts, "carol", "")

	alice.Send(`<iq type='get' id='p0'><prefs xmlns='urn:xmpp:mam:2'/></iq>`)
	if p := alice.Expect(xmpptest.IsIQ("p0")).Child(mam.NS, "prefs"); p.String() != `<prefs xmlns="urn:xmpp:mam:2" default="always"><always/><never/></prefs>` {
		t.Fatalf("initial prefs %s", p)
	}
	alice.Send(`<iq type='set' id='p1'><prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>Bob@localhost</jid></always></prefs></iq>`)
	if p := alice.Expect(xmpptest.IsIQ("p1")).Child(mam.NS, "prefs"); p.String() != `<prefs xmlns="urn:xmpp:mam:2" default="never"><always><jid>bob@localhost</jid></always><never/></prefs>` {
		t.Fatalf("applied prefs %s", p)
	}
	send := func(from *xmpptest.Client, body string) *stanza.Stanza {
		from.Sendf(`<message to='alice@localhost' type='chat'><body>%s</body></message>`, body)
		return alice.Expect(xmpptest.IsMessage(body))
	}
	if m := send(bob, "from bob, always"); len(stanzaIDs(m.Elements())) != 1 {
		t.Fatalf("bob's message not archived: %s", m)
	}
	if m := send(carol, "from carol, default never"); len(stanzaIDs(m.Elements())) != 0 {
		t.Fatalf("carol's message archived: %s", m)
	}
	alice.Send(`<message to='carol@localhost' type='chat'><body>to carol, never</body></message>`)
	carol.Expect(xmpptest.IsMessage("to carol, never"))

	// roster default: bob is in the roster, carol is not.
	alice.Send(`<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>`)
	alice.Expect(xmpptest.IsIQ("r"))
	alice.Send(`<iq type='set' id='p2'><prefs xmlns='urn:xmpp:mam:2' default='roster'><never><jid>carol@localhost/secret</jid></never></prefs></iq>`)
	alice.Expect(xmpptest.IsIQ("p2"))
	send(bob, "from bob, roster")
	send(carol, "from carol, not in roster")

	// always: everyone but a never entry.
	alice.Send(`<iq type='set' id='p3'><prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>carol@localhost</jid></never></prefs></iq>`)
	alice.Expect(xmpptest.IsIQ("p3"))
	send(carol, "from carol, never listed")
	send(bob, "from bob, always default")

	a := archiveQuery(t, alice, "", "")
	want := []string{"from bob, always", "from bob, roster", "from bob, always default"}
	if !slices.Equal(a.bodies(), want) {
		t.Fatalf("archive %v, want %v", a.bodies(), want)
	}

	for _, tc := range []struct {
		xml  string
		cond stanza.Condition
	}{
		{`<prefs xmlns='urn:xmpp:mam:2'/>`, stanza.BadRequest},
		{`<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>`, stanza.BadRequest},
		{`<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@@</jid></never></prefs>`, stanza.JIDMalformed},
	} {
		alice.Sendf(`<iq type='set' id='bad'>%s</iq>`, tc.xml)
		if r := alice.Expect(xmpptest.IsIQ("bad")); r.ErrorCondition() != tc.cond {
			t.Errorf("%s: %s, want %s", tc.xml, r, tc.cond)
		}
	}
}

func TestDisabled(t *testing.T) {
	ts := setup(t, func(c *config.Config) { c.MAM.Enabled = false })
	alice := dial(t, ts, "alice", "")
	bob := dial(t, ts, "bob", "")
	bob.Send(`<message to='alice@localhost' type='chat'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='forged'/></message>`)
	if m := alice.Expect(xmpptest.IsMessage("x")); len(stanzaIDs(m.Elements())) != 0 {
		t.Fatalf("forged id kept while archiving is off: %s", m)
	}
	alice.Send(`<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("q")); r.ErrorCondition() != stanza.ServiceUnavailable {
		t.Fatalf("query while disabled: %s", r)
	}
	alice.Send(`<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("d")); strings.Contains(r.String(), mam.NS) {
		t.Fatalf("mam advertised while disabled: %s", r)
	}
}

// BenchmarkQueryOverSocket is the page latency a client sees: a year of
// one user's history (100k messages, 20 contacts), one query for 50
// messages over TLS, until the fin arrives.
func BenchmarkQueryOverSocket(b *testing.B) {
	ts := setup(b)
	s, err := mam.OpenStore(context.Background(), filepath.Join(ts.Config.DataDir, ts.Config.MAM.File), nil)
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 365 * 24 * time.Hour / n
	ids := make([]string, 0, n)
	for i := range n {
		peer := fmt.Sprintf("peer%d@example.com", i%20)
		id, err := s.Append(context.Background(), mam.Entry{User: "alice", Time: start.Add(time.Duration(i) * step), Peer: peer, PeerRes: "phone",
			XML: fmt.Appendf(nil, `<message from="%s/phone" to="alice@localhost" type="chat" id="m%d"><body>A typical chat line of about a hundred characters, give or take a few words here and there.</body></message>`, peer, i)})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	s.Close()
	alice := dial(b, ts, "alice", "")
	alice.Ping()
	for _, tc := range []struct{ name, fields, set string }{
		{"last-page", "", "<max>50</max><before/>"},
		{"before-middle", "", "<max>50</max><before>" + ids[n/2] + "</before>"},
		{"with-contact-last-page", field("with", "peer7@example.com"), "<max>50</max><before/>"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if p := archiveQuery(b, alice, tc.fields, tc.set); len(p.results) != 50 {
					b.Fatalf("%d results: %s", len(p.results), p.iq)
				}
			}
		})
	}
}
