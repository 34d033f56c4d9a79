package router_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/mod/message"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// countingBoundary records every crossing and answers with a fixed verdict.
type countingBoundary struct {
	mu      sync.Mutex
	calls   []*router.Envelope
	verdict router.Verdict
	err     error
}

func (b *countingBoundary) Cross(_ context.Context, env *router.Envelope) (router.Decision, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, env)
	return router.Decision{Verdict: b.verdict, Text: "blocked by test rule"}, b.err
}

// queue is a deliverer standing for an outside zone: it keeps what it got.
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

// recorder is a session's connection end that keeps what it was sent.
type recorder struct {
	mu  sync.Mutex
	got []*stanza.Stanza
}

func (r *recorder) Send(st *stanza.Stanza) error {
	r.mu.Lock()
	r.got = append(r.got, st)
	r.mu.Unlock()
	return nil
}
func (r *recorder) Close(string, string) {}

type resolver struct{ bus *hook.Bus }

func (r resolver) ZoneOf(d string) router.Zone {
	switch {
	case r.bus.IsHost(d):
		return router.ZoneLocal
	case d == "irc.example.net":
		return router.ZoneTransport
	}
	return router.ZoneRemote
}

type fixture struct {
	r         *router.Router
	bus       *hook.Bus
	boundary  *countingBoundary
	remote    *queue
	transport *queue
	alice     [2]*recorder
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, t.TempDir()+"/test.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.CreateUser(ctx, "alice", authCreds()); err != nil {
		t.Fatal(err)
	}
	table := sessions.NewTable()
	bus := hook.New([]string{"corp.example"}, db, table)
	f := &fixture{bus: bus, boundary: &countingBoundary{}, remote: &queue{}, transport: &queue{}}
	f.r = router.New(router.Config{Resolver: resolver{bus}, Local: bus, Remote: f.remote, Transport: f.transport, Boundary: f.boundary})
	bus.SetRouter(f.r)
	message.New(db, 100, logrus.New(), nil).Register(bus)
	for i, res := range []string{"desk", "phone"} {
		f.alice[i] = &recorder{}
		s := sessions.New(jid.MustParse("alice@corp.example/"+res), uint64(i+1), f.alice[i], sessions.Info{})
		s.SetPresence(&stanza.Stanza{Kind: stanza.KindPresence}, 0)
		table.Add(s)
	}
	return f
}

func msg(from, to string) *stanza.Stanza {
	m := &stanza.Stanza{Kind: stanza.KindMessage, Type: "chat", From: jid.MustParse(from), To: jid.MustParse(to), ID: "m1"}
	return m.Append(stanza.NewElement("", "body").AppendText("hello"))
}

func TestCrossingCallsBoundaryOnceThenFansOut(t *testing.T) {
	f := newFixture(t)
	env := &router.Envelope{Stanza: msg("partner@irc.example.net", "alice@corp.example"),
		Src: router.Endpoint{Zone: router.ZoneTransport, Domain: "irc.example.net", Conn: 99}}
	if err := f.r.Route(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if len(f.boundary.calls) != 1 {
		t.Fatalf("boundary called %d times, want 1", len(f.boundary.calls))
	}
	if env.Seq == 0 || f.boundary.calls[0].Dst.Zone != router.ZoneLocal {
		t.Fatalf("envelope not stamped: %+v", f.boundary.calls[0])
	}
	for i, r := range f.alice {
		if len(r.got) != 1 || r.got[0].Body() != "hello" {
			t.Fatalf("resource %d got %v", i, r.got)
		}
	}
}

func TestOutboundCrossing(t *testing.T) {
	tests := []struct {
		name string
		to   string
		zone router.Zone
		q    func(*fixture) *queue
	}{
		{"transport", "partner@irc.example.net", router.ZoneTransport, func(f *fixture) *queue { return f.transport }},
		{"remote", "bob@partner.example", router.ZoneRemote, func(f *fixture) *queue { return f.remote }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			env := &router.Envelope{Stanza: msg("alice@corp.example/desk", tc.to),
				Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "corp.example", Conn: 1}}
			if err := f.r.Route(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if len(f.boundary.calls) != 1 || f.boundary.calls[0].Dst.Zone != tc.zone {
				t.Fatalf("boundary calls: %d", len(f.boundary.calls))
			}
			if got := tc.q(f).got; len(got) != 1 {
				t.Fatalf("delivered %d", len(got))
			}
		})
	}
}

func TestInternalTrafficSkipsBoundary(t *testing.T) {
	f := newFixture(t)
	env := &router.Envelope{Stanza: msg("alice@corp.example/desk", "alice@corp.example/phone"),
		Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "corp.example", Conn: 1}}
	if err := f.r.Route(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if len(f.boundary.calls) != 0 {
		t.Fatal("internal stanza crossed the boundary")
	}
	if len(f.alice[1].got) != 1 {
		t.Fatal("not delivered")
	}
}

func TestNoOpenRelay(t *testing.T) {
	f := newFixture(t)
	env := &router.Envelope{Stanza: msg("mallory@evil.example", "partner@irc.example.net"),
		Src: router.Endpoint{Zone: router.ZoneRemote, Domain: "evil.example", Conn: 7}}
	err := f.r.Route(context.Background(), env)
	if !errors.Is(err, router.ErrRelay) {
		t.Fatalf("err = %v, want ErrRelay", err)
	}
	if len(f.transport.got) != 0 || len(f.boundary.calls) != 0 {
		t.Fatal("relayed")
	}
	// The sender is told, with not-allowed, through its own zone.
	if len(f.remote.got) != 1 || f.remote.got[0].ErrorCondition() != stanza.NotAllowed {
		t.Fatalf("bounce: %v", f.remote.got)
	}
}

func TestDenyBouncesToSender(t *testing.T) {
	f := newFixture(t)
	f.boundary.verdict = router.Deny
	env := &router.Envelope{Stanza: msg("alice@corp.example/desk", "partner@irc.example.net"),
		Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "corp.example", Conn: 1}}
	if err := f.r.Route(context.Background(), env); !errors.Is(err, router.ErrDenied) {
		t.Fatalf("err = %v", err)
	}
	if len(f.transport.got) != 0 {
		t.Fatal("denied stanza delivered")
	}
	got := f.alice[0].got
	if len(got) != 1 || got[0].ErrorCondition() != stanza.PolicyViolation {
		t.Fatalf("sender got %v", got)
	}
	if len(f.boundary.calls) != 1 {
		t.Fatalf("boundary called %d times (the bounce must not cross again)", len(f.boundary.calls))
	}
}

func TestBoundaryFailureRefusesCrossing(t *testing.T) {
	f := newFixture(t)
	f.boundary.err = errors.New("archive unavailable")
	env := &router.Envelope{Stanza: msg("alice@corp.example/desk", "partner@irc.example.net"),
		Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "corp.example", Conn: 1}}
	if err := f.r.Route(context.Background(), env); !errors.Is(err, router.ErrBoundary) {
		t.Fatalf("err = %v", err)
	}
	if len(f.transport.got) != 0 {
		t.Fatal("delivered despite boundary failure")
	}
	if got := f.alice[0].got; len(got) != 1 || got[0].ErrorCondition() != stanza.ResourceConstraint {
		t.Fatalf("sender got %v", got)
	}
}

func TestServerGeneratedStanzaCrosses(t *testing.T) {
	f := newFixture(t)
	// A presence probe the server sends on a user's behalf is routed, and
	// crosses the boundary like anything else.
	probe := &stanza.Stanza{Kind: stanza.KindPresence, Type: "probe", From: jid.MustParse("alice@corp.example"), To: jid.MustParse("bob@partner.example")}
	f.bus.Send(context.Background(), probe)
	if len(f.boundary.calls) != 1 || f.boundary.calls[0].Src.Conn != 0 {
		t.Fatalf("boundary calls %d", len(f.boundary.calls))
	}
	if len(f.remote.got) != 1 {
		t.Fatal("not delivered")
	}
}
