package muc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// These tests run the real router, hook bus and session table with the
// service; only the connections at the ends are recorders, and the
// transport zone is a queue, so that every crossing can be counted.

type boundary struct {
	mu    sync.Mutex
	calls []*stanza.Stanza
	deny  bool
	// wait stands for the compliance archive's commit in benchmarks.
	wait time.Duration
}

func (b *boundary) Cross(_ context.Context, env *router.Envelope) (router.Decision, error) {
	if b.wait > 0 {
		time.Sleep(b.wait)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, env.Stanza)
	if b.deny {
		return router.Decision{Verdict: router.Deny, Text: "blocked by test rule"}, nil
	}
	return router.Decision{Verdict: router.Allow}, nil
}

func (b *boundary) take() []*stanza.Stanza {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.calls
	b.calls = nil
	return out
}

type queue struct {
	mu  sync.Mutex
	got []*stanza.Stanza
}

func (q *queue) Deliver(_ context.Context, env *router.Envelope) error {
	q.mu.Lock()
	q.got = append(q.got, env.Stanza)
	q.mu.Unlock()
	return nil
}

func (q *queue) take() []*stanza.Stanza {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.got
	q.got = nil
	return out
}

// conn is a session's connection end.
type conn struct {
	mu   sync.Mutex
	got  []*stanza.Stanza
	keep bool
	n    atomic.Int64
}

func (c *conn) Send(st *stanza.Stanza) error {
	c.n.Add(1)
	if c.keep {
		c.mu.Lock()
		c.got = append(c.got, st)
		c.mu.Unlock()
	}
	return nil
}
func (c *conn) Close(string, string) {}

func (c *conn) take() []*stanza.Stanza {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.got
	c.got = nil
	return out
}

type zones struct{ bus *hook.Bus }

func (z zones) ZoneOf(d string) router.Zone {
	switch {
	case z.bus.ZoneOf(d) == router.ZoneLocal:
		return router.ZoneLocal
	case d == "irc.example.net":
		return router.ZoneTransport
	}
	return router.ZoneRemote
}

type fixture struct {
	r         *router.Router
	bus       *hook.Bus
	table     *sessions.Table
	svc       *Service
	boundary  *boundary
	transport *queue
	conns     map[string]*conn
	next      uint64
}

func newFixture(tb testing.TB, archive bool) *fixture {
	tb.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, tb.TempDir()+"/test.db")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	table := sessions.NewTable()
	bus := hook.New([]string{"corp.example"}, db, table)
	f := &fixture{bus: bus, table: table, boundary: &boundary{}, transport: &queue{}, conns: map[string]*conn{}}
	f.r = router.New(router.Config{Resolver: zones{bus}, Local: bus, Transport: f.transport, Boundary: f.boundary})
	bus.SetRouter(f.r)
	cfg := config.Default().MUC
	cfg.Archive = archive
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	f.svc, err = Open(ctx, Options{Config: cfg, Domain: "conference.corp.example", DataDir: tb.TempDir(), Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.svc.Close() })
	f.svc.Register(bus)
	return f
}

// testCreds are the verifiers of every test account (nobody logs in with
// them; deriving them once keeps the 50-user benchmark set-up short).
var testCreds = sync.OnceValues(func() (auth.Credentials, error) { return auth.NewCredentials("pw", 4096) })

func credsOrFail(tb testing.TB) auth.Credentials {
	tb.Helper()
	c, err := testCreds()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// login binds a local session that keeps what it receives when keep.
func (f *fixture) login(tb testing.TB, user string, keep bool) jid.JID {
	tb.Helper()
	if err := f.bus.Accounts().(*storage.DB).CreateUser(context.Background(), user, credsOrFail(tb)); err != nil {
		tb.Fatal(err)
	}
	j := jid.MustParse(user + "@corp.example/desk")
	c := &conn{keep: keep}
	f.next++
	s := sessions.New(j, f.next, c, sessions.Info{})
	s.SetPresence(&stanza.Stanza{Kind: stanza.KindPresence}, 0)
	f.table.Add(s)
	f.conns[j.String()] = c
	return j
}

// route sends st from a client in zone z.
func (f *fixture) route(tb testing.TB, z router.Zone, st *stanza.Stanza) {
	tb.Helper()
	src := router.Endpoint{Zone: z, Domain: st.From.Domainpart(), Conn: 1000}
	if err := f.r.Route(context.Background(), &router.Envelope{Stanza: st, Src: src}); err != nil && z == router.ZoneLocal {
		tb.Fatalf("route %s: %v", st, err)
	}
}

func joinStanza(from jid.JID, nick string) *stanza.Stanza {
	p := &stanza.Stanza{Kind: stanza.KindPresence, From: from, To: jid.MustParse("room@conference.corp.example/" + nick)}
	return p.Append(stanza.NewElement(NS, "x"))
}

func groupchatStanza(from jid.JID, body string) *stanza.Stanza {
	m := &stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: from, To: jid.MustParse("room@conference.corp.example"), ID: "m"}
	return m.Append(stanza.NewElement("", "body").AppendText(body))
}

func instantRoom(owner jid.JID) *stanza.Stanza {
	q := stanza.NewElement(NSOwner, "query").Append(stanza.NewElement(NSData, "x", "type", "submit"))
	return (&stanza.Stanza{Kind: stanza.KindIQ, Type: "set", ID: "cfg", From: owner, To: jid.MustParse("room@conference.corp.example")}).Append(q)
}

func TestOutsideOccupantCrossesBoundaryPerCopy(t *testing.T) {
	f := newFixture(t, true)
	alice := f.login(t, "alice", true)
	f.route(t, router.ZoneLocal, joinStanza(alice, "Alice"))
	f.route(t, router.ZoneLocal, instantRoom(alice))
	if calls := f.boundary.take(); len(calls) != 0 {
		t.Fatalf("local-only traffic crossed the boundary: %v", calls)
	}

	// A transport user joins: its join crosses once inbound, and each
	// stanza the room sends it crosses once outbound.
	partner := jid.MustParse("partner@irc.example.net/x")
	f.route(t, router.ZoneTransport, joinStanza(partner, "Partner"))
	calls := f.boundary.take()
	sent := f.transport.take()
	if len(calls) != 1+len(sent) || len(sent) < 3 {
		t.Fatalf("join: %d crossings, %d stanzas to the transport: %v", len(calls), len(sent), calls)
	}
	for _, st := range sent {
		if !st.To.Equal(partner) {
			t.Fatalf("stanza to the wrong place: %s", st)
		}
	}

	// The boundary can tell who is behind a room copy.
	if real, ok := f.svc.RealJID(jid.MustParse("room@conference.corp.example/Alice")); !ok || real.String() != "alice@corp.example" {
		t.Fatalf("RealJID: %v %v", real, ok)
	}
	if _, ok := f.svc.RealJID(jid.MustParse("room@conference.corp.example/Nobody")); ok {
		t.Fatal("RealJID of a missing nick")
	}

	// Alice's message: one crossing, for the outside copy only.
	f.conns[alice.String()].take()
	f.route(t, router.ZoneLocal, groupchatStanza(alice, "hello"))
	calls = f.boundary.take()
	if len(calls) != 1 || !calls[0].To.Equal(partner) || calls[0].Body() != "hello" {
		t.Fatalf("fan-out crossings: %v", calls)
	}
	if got := f.conns[alice.String()].take(); len(got) != 1 || got[0].Body() != "hello" {
		t.Fatalf("alice's copy: %v", got)
	}

	// The partner's message crosses inbound once and reaches alice.
	f.route(t, router.ZoneTransport, groupchatStanza(partner, "hi from outside"))
	if calls := f.boundary.take(); len(calls) != 2 { // in, and the echo back out
		t.Fatalf("inbound message crossings: %v", calls)
	}
	if got := f.conns[alice.String()].take(); len(got) != 1 || got[0].From.String() != "room@conference.corp.example/Partner" {
		t.Fatalf("alice got %v", got)
	}

	// A refusal at the boundary bounces back into the room on the same
	// goroutine: it must neither deadlock nor lose the local copy.
	f.transport.take()
	f.boundary.mu.Lock()
	f.boundary.deny = true
	f.boundary.mu.Unlock()
	f.route(t, router.ZoneLocal, groupchatStanza(alice, "internal only"))
	if got := f.conns[alice.String()].take(); len(got) != 1 || got[0].Body() != "internal only" {
		t.Fatalf("alice's copy with the outside copy refused: %v", got)
	}
	if got := f.transport.take(); len(got) != 0 {
		t.Fatalf("a refused copy reached the transport: %v", got)
	}
}

// BenchmarkRoomFanout measures one groupchat message to a room of 50
// local occupants through the real router and bus: the per-message cost of
// the room (copies, ids, history) and of local delivery.
func BenchmarkRoomFanout(b *testing.B) {
	for _, archive := range []bool{false, true} {
		b.Run(fmt.Sprintf("occupants=50/archive=%v", archive), func(b *testing.B) {
			f := newFixture(b, archive)
			var members []jid.JID
			for i := range 50 {
				j := f.login(b, fmt.Sprintf("u%d", i), false)
				members = append(members, j)
				f.route(b, router.ZoneLocal, joinStanza(j, fmt.Sprintf("n%d", i)))
				if i == 0 {
					f.route(b, router.ZoneLocal, instantRoom(j))
				}
			}
			c := f.conns[members[49].String()]
			before := c.n.Load()
			msg := groupchatStanza(members[0], "hello everyone, this is a benchmark message")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				f.route(b, router.ZoneLocal, msg.ShallowCopy())
			}
			b.StopTimer()
			if got := c.n.Load() - before; got != int64(b.N) {
				b.Fatalf("last occupant got %d of %d messages", got, b.N)
			}
		})
	}
}

func TestHistoryLimits(t *testing.T) {
	f := newFixture(t, false)
	alice := f.login(t, "alice", false)
	f.route(t, router.ZoneLocal, joinStanza(alice, "Alice"))
	f.route(t, router.ZoneLocal, instantRoom(alice))
	for _, b := range []string{"one", "two", "three"} {
		f.route(t, router.ZoneLocal, groupchatStanza(alice, b))
	}
	size := len(f.svc.room("room").history[2].msg.AppendXML(nil, stanza.NSClient))
	tests := []struct {
		name    string
		history *stanza.Element
		want    []string
	}{
		{"all", nil, []string{"one", "two", "three"}},
		{"maxstanzas", stanza.NewElement(NS, "history", "maxstanzas", "2"), []string{"two", "three"}},
		{"none", stanza.NewElement(NS, "history", "maxstanzas", "0"), nil},
		{"maxchars one message", stanza.NewElement(NS, "history", "maxchars", fmt.Sprint(size)), []string{"three"}},
		{"maxchars zero", stanza.NewElement(NS, "history", "maxchars", "0"), nil},
		{"seconds", stanza.NewElement(NS, "history", "seconds", "3600"), []string{"one", "two", "three"}},
		{"since future", stanza.NewElement(NS, "history", "since", "2999-01-01T00:00:00Z"), nil},
		{"bad values ignored", stanza.NewElement(NS, "history", "maxstanzas", "-1", "maxchars", "x"), []string{"one", "two", "three"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := f.login(t, fmt.Sprintf("h%d", i), true)
			p := joinStanza(u, fmt.Sprintf("H%d", i))
			if tc.history != nil {
				p.Child(NS, "x").Append(tc.history)
			}
			f.route(t, router.ZoneLocal, p)
			var got []string
			for _, st := range f.conns[u.String()].take() {
				if st.Kind == stanza.KindMessage && st.Child(stanza.NSDelay, "delay") != nil {
					got = append(got, st.Body())
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("history %v, want %v", got, tc.want)
			}
		})
	}
}

func adminIQ(from jid.JID, typ string, items ...*stanza.Element) *stanza.Stanza {
	q := stanza.NewElement(NSAdmin, "query").Append(items...)
	return (&stanza.Stanza{Kind: stanza.KindIQ, Type: typ, ID: "adm", From: from, To: jid.MustParse("room@conference.corp.example")}).Append(q)
}

func configIQ(from jid.JID, fields map[string]string) *stanza.Stanza {
	x := stanza.NewElement(NSData, "x", "type", "submit")
	for k, v := range fields {
		x.Append(stanza.NewElement(NSData, "field", "var", k).Append(stanza.NewElement(NSData, "value").AppendText(v)))
	}
	q := stanza.NewElement(NSOwner, "query").Append(x)
	return (&stanza.Stanza{Kind: stanza.KindIQ, Type: "set", ID: "cfg", From: from, To: jid.MustParse("room@conference.corp.example")}).Append(q)
}

// lastIQ returns the answer to the iq with id among what c got.
func lastIQ(t *testing.T, c *conn, id string) *stanza.Stanza {
	t.Helper()
	var found *stanza.Stanza
	for _, st := range c.take() {
		if st.Kind == stanza.KindIQ && st.ID == id {
			found = st
		}
	}
	if found == nil {
		t.Fatalf("no answer to %s", id)
	}
	return found
}

func TestMembersSeeAffiliationListsInNonAnonymousRooms(t *testing.T) {
	f := newFixture(t, false)
	alice := f.login(t, "alice", true)
	bob := f.login(t, "bob", true)
	f.route(t, router.ZoneLocal, joinStanza(alice, "Alice"))
	f.route(t, router.ZoneLocal, configIQ(alice, map[string]string{"muc#roomconfig_whois": "anyone", "muc#roomconfig_membersonly": "1"}))
	f.route(t, router.ZoneLocal, adminIQ(alice, "set", stanza.NewElement(NSAdmin, "item", "jid", "bob@corp.example", "affiliation", "member")))
	f.route(t, router.ZoneLocal, joinStanza(bob, "Bob"))
	f.conns[bob.String()].take()

	tests := []struct {
		name, whois, list string
		ok                bool
	}{
		{"owners, non-anonymous", "anyone", "owner", true},
		{"members, non-anonymous", "anyone", "member", true},
		{"outcasts", "anyone", "outcast", false},
		{"members, semi-anonymous", "moderators", "member", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.route(t, router.ZoneLocal, configIQ(alice, map[string]string{"muc#roomconfig_whois": tc.whois}))
			f.route(t, router.ZoneLocal, adminIQ(bob, "get", stanza.NewElement(NSAdmin, "item", "affiliation", tc.list)))
			res := lastIQ(t, f.conns[bob.String()], "adm")
			if (res.Type == "result") != tc.ok {
				t.Fatalf("got %s", res)
			}
			if tc.ok && tc.list == "owner" && !strings.Contains(res.String(), "alice@corp.example") {
				t.Fatalf("owner list: %s", res)
			}
		})
	}
}

// TestOutsideCopiesKeepOrder: copies to outside occupants go out in
// parallel, but each occupant gets the room's messages in order.
func TestOutsideCopiesKeepOrder(t *testing.T) {
	f := newFixture(t, false)
	alice := f.login(t, "alice", false)
	f.route(t, router.ZoneLocal, joinStanza(alice, "Alice"))
	f.route(t, router.ZoneLocal, instantRoom(alice))
	for i := range 10 {
		f.route(t, router.ZoneTransport, joinStanza(jid.MustParse(fmt.Sprintf("p%d@irc.example.net/x", i)), fmt.Sprintf("P%d", i)))
	}
	f.transport.take()
	const n = 30
	for i := range n {
		f.route(t, router.ZoneLocal, groupchatStanza(alice, fmt.Sprint(i)))
	}
	got := map[string][]string{}
	for _, st := range f.transport.take() {
		got[st.To.String()] = append(got[st.To.String()], st.Body())
	}
	if len(got) != 10 {
		t.Fatalf("recipients: %d", len(got))
	}
	for to, bodies := range got {
		if len(bodies) != n {
			t.Fatalf("%s got %d messages", to, len(bodies))
		}
		for i, b := range bodies {
			if b != fmt.Sprint(i) {
				t.Fatalf("%s got %v: out of order", to, bodies)
			}
		}
	}
}

// BenchmarkRoomFanoutOutside: one message to a room with 20 occupants
// behind a transport, each crossing waiting 1 ms at the boundary (standing
// for the compliance archive's commit).
func BenchmarkRoomFanoutOutside(b *testing.B) {
	f := newFixture(b, false)
	alice := f.login(b, "alice", false)
	f.route(b, router.ZoneLocal, joinStanza(alice, "Alice"))
	f.route(b, router.ZoneLocal, instantRoom(alice))
	for i := range 20 {
		f.route(b, router.ZoneTransport, joinStanza(jid.MustParse(fmt.Sprintf("p%d@irc.example.net/x", i)), fmt.Sprintf("P%d", i)))
	}
	f.boundary.wait = time.Millisecond
	msg := groupchatStanza(alice, "hello outside")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f.route(b, router.ZoneLocal, msg.ShallowCopy())
		f.transport.take()
		f.boundary.take()
	}
}

// TestUnreachableOccupantRemoved: a user of a server we cannot reach (no
// s2s here, so every stanza to it bounces with remote-server-not-found on
// the same goroutine) is taken out of the room with status 333 instead of
// lingering, and the room keeps working.
func TestUnreachableOccupantRemoved(t *testing.T) {
	f := newFixture(t, false)
	alice := f.login(t, "alice", true)
	f.route(t, router.ZoneLocal, joinStanza(alice, "Alice"))
	f.route(t, router.ZoneLocal, instantRoom(alice))
	f.conns[alice.String()].take()

	ghost := jid.MustParse("ghost@remote.example/r")
	f.route(t, router.ZoneRemote, joinStanza(ghost, "Ghost"))
	var joined, left bool
	for _, st := range f.conns[alice.String()].take() {
		if st.Kind != stanza.KindPresence || st.From.Resourcepart() != "Ghost" {
			continue
		}
		if st.Type == "" {
			joined = true
		}
		if st.Type == "unavailable" && hasCode(st, codeError) {
			left = true
		}
	}
	if !joined || !left {
		t.Fatalf("ghost joined %v, removed with 333 %v", joined, left)
	}
	r := f.svc.room("room")
	r.mu.Lock()
	n := len(r.occ)
	r.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d occupants, want only alice", n)
	}
	f.route(t, router.ZoneLocal, groupchatStanza(alice, "still here"))
	if got := f.conns[alice.String()].take(); len(got) != 1 || got[0].Body() != "still here" {
		t.Fatalf("after removal: %v", got)
	}
}

func hasCode(st *stanza.Stanza, code string) bool {
	x := st.Child(NSUser, "x")
	if x == nil {
		return false
	}
	for _, c := range x.Elements() {
		if c.Name.Local == "status" && c.AttrValue("code") == code {
			return true
		}
	}
	return false
}
