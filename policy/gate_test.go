package policy_test

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/policy"
	"gatehouse/policy/clamdtest"
	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// sink keeps the notices the Gate sends (it stands where the router is:
// the integration tests in xmpp/server use the real one).
type sink struct {
	mu  sync.Mutex
	got []*router.Envelope
}

func (s *sink) Forward(_ context.Context, env *router.Envelope) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, env)
	return nil
}

func (s *sink) take() []*stanza.Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*stanza.Stanza
	for _, e := range s.got {
		out = append(out, e.Stanza)
	}
	s.got = nil
	return out
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func newClock(t time.Time) *clock    { return &clock{now: t} }
func creds() auth.Credentials {
	k := auth.SCRAMKey{Salt: []byte("salt"), Iter: 4096, StoredKey: []byte("k"), ServerKey: []byte("s")}
	return auth.Credentials{SHA1: k, SHA256: k, SHA512: k}
}

// testDB is a real database with alice (manager boss), intern (in group
// interns), boss and compliance.
func testDB(t *testing.T) *storage.DB {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range []string{"alice", "intern", "boss", "compliance"} {
		if err := db.CreateUser(ctx, u, creds()); err != nil {
			t.Fatal(err)
		}
	}
	must(t, db.SetManager(ctx, "alice", "boss"))
	must(t, db.SetManager(ctx, "intern", "boss"))
	must(t, db.CreateGroup(ctx, "interns"))
	must(t, db.AddToGroup(ctx, "interns", "intern"))
	return db
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type gateFixture struct {
	gate  *policy.Gate
	db    *storage.DB
	sink  *sink
	clock *clock
}

func newGate(t *testing.T, p *policy.Policy, mod func(*policy.GateOptions)) *gateFixture {
	t.Helper()
	f := &gateFixture{db: testDB(t), sink: &sink{}, clock: newClock(monday10)}
	o := policy.GateOptions{Hosts: []string{"localhost"}, Directory: f.db, Forwarder: f.sink, Now: f.clock.Now}
	if mod != nil {
		mod(&o)
	}
	g, err := policy.NewGate(context.Background(), p, o)
	if err != nil {
		t.Fatal(err)
	}
	f.gate = g
	return f
}

// cross sends a stanza through the Gate as the router would.
func (f *gateFixture) cross(t *testing.T, xmlText string) (router.Decision, *router.Envelope) {
	t.Helper()
	st := parseStanza(t, xmlText)
	env := &router.Envelope{Stanza: st}
	if st.From.Domainpart() == "localhost" {
		env.Src = router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost", Conn: 1}
		env.Dst = router.Endpoint{Zone: router.ZoneTransport, Domain: st.To.Domainpart()}
	} else {
		env.Src = router.Endpoint{Zone: router.ZoneTransport, Domain: st.From.Domainpart(), Conn: 2}
		env.Dst = router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost"}
	}
	d, err := f.gate.Cross(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	return d, env
}

func TestGateDecisionsAndNotices(t *testing.T) {
	p := example(t)
	f := newGate(t, p, func(o *policy.GateOptions) { o.Scanner = noScanner{} })

	// A first chat: allowed, flagged (watch-irc), and the disclaimer goes
	// to both sides.
	d, _ := f.cross(t, msg("hello"))
	if d.Verdict != router.Allow || d.Rule != "watch-irc,recorded" || d.PolicyVersion != p.Version() {
		t.Fatalf("first chat: %+v", d)
	}
	notes := f.sink.take()
	if len(notes) != 2 || notes[0].To.String() != "alice@localhost" || notes[0].From.String() != "localhost" ||
		!strings.Contains(notes[0].Body(), "recorded by Example Corp") ||
		notes[1].To.String() != "partner@irc.localhost" || notes[1].From.String() != "alice@localhost" ||
		!strings.HasPrefix(notes[1].Body(), "[automatic notice]") {
		t.Fatalf("disclaimers: %v", notes)
	}
	// Within the period: no second notice, in either direction.
	f.clock.Add(23 * time.Hour)
	d, _ = f.cross(t, `<message from='partner@irc.localhost/x' to='alice@localhost' type='chat'><body>hi back</body></message>`)
	if d.Rule != "watch-irc" || len(f.sink.take()) != 0 {
		t.Fatalf("second message: %+v", d)
	}
	// After the period: again.
	f.clock.Add(2 * time.Hour)
	if d, _ = f.cross(t, msg("next day")); d.Rule != "watch-irc,recorded" || len(f.sink.take()) != 2 {
		t.Fatalf("after the period: %+v", d)
	}

	// Project X: denied, and the manager gets a notice with context.
	d, _ = f.cross(t, msg("Launch of Project X moved"))
	if d.Verdict != router.Deny || d.Rule != "watch-irc,project-x" || d.Condition != stanza.PolicyViolation ||
		d.Text != "Project X is confidential. (rule project-x)" {
		t.Fatalf("project x: %+v", d)
	}
	notes = f.sink.take()
	if len(notes) != 1 || notes[0].To.String() != "boss@localhost" || notes[0].Type != "normal" {
		t.Fatalf("manager notice: %v", notes)
	}
	body := notes[0].Body()
	for _, want := range []string{"Rule project-x (content, deny)", "outbound message from alice@localhost/desk to partner@irc.localhost",
		`Matched: "Project X"`, "Launch of Project X moved", p.Version()} {
		if !strings.Contains(body, want) {
			t.Errorf("notice %q lacks %q", body, want)
		}
	}
	if el := notes[0].Child("urn:gatehouse:policy:0", "policy"); el == nil || el.AttrValue("rule") != "project-x" || el.AttrValue("action") != "deny" {
		t.Errorf("notice element: %v", notes[0])
	}

	// A card number is masked on the way out; the envelope's original is
	// kept by the caller (the archive) before Cross.
	d, env := f.cross(t, msg("my card 4111 1111 1111 1111"))
	if d.Verdict != router.Allow || d.Rule != "watch-irc,card-numbers" || env.Stanza.Body() != "my card *******************" {
		t.Fatalf("redaction: %+v %q", d, env.Stanza.Body())
	}
	if notes = f.sink.take(); len(notes) != 1 || notes[0].To.String() != "compliance@localhost" || strings.Contains(notes[0].Body(), "4111") {
		t.Fatalf("compliance notice: %v", notes)
	}

	// The intern is blocked; the outside party learns no rule name.
	d, _ = f.cross(t, `<message from='intern@localhost/d' to='partner@irc.localhost' type='chat'><body>hi</body></message>`)
	if d.Verdict != router.Deny || d.Rule != "interns-internal-only" || d.Condition != stanza.PolicyViolation {
		t.Fatalf("intern out: %+v", d)
	}
	d, _ = f.cross(t, `<message from='partner@irc.localhost/x' to='intern@localhost' type='chat'><body>hi</body></message>`)
	if d.Verdict != router.Deny || strings.Contains(d.Text, "intern") {
		t.Fatalf("intern in: %+v", d)
	}
}

type noScanner struct{}

func (noScanner) Scan(context.Context, []byte) (string, error) { return "", nil }

// TestGateGroupRefresh: memberships are re-read after DirectoryRefresh, so
// `gatehouse group add` works without a reload.
func TestGateGroupRefresh(t *testing.T) {
	p, err := policy.Parse([]byte("version: g1\naccess:\n  - {id: block-sales, groups: [sales], action: deny}\n"), "g.yaml", opts)
	must(t, err)
	f := newGate(t, p, func(o *policy.GateOptions) { o.DirectoryRefresh = time.Minute })
	ctx := context.Background()
	if d, _ := f.cross(t, msg("hi")); d.Verdict != router.Allow {
		t.Fatalf("before: %+v", d)
	}
	must(t, f.db.CreateGroup(ctx, "sales"))
	must(t, f.db.AddToGroup(ctx, "sales", "alice"))
	if d, _ := f.cross(t, msg("hi")); d.Verdict != router.Allow {
		t.Fatalf("within the refresh period the old membership holds: %+v", d)
	}
	f.clock.Add(time.Minute)
	if d, _ := f.cross(t, msg("hi")); d.Verdict != router.Deny || d.Rule != "block-sales" {
		t.Fatalf("after refresh: %+v", d)
	}
}

// TestGateSwapAllOrNothing: a policy that cannot be put in force leaves
// the old one.
func TestGateSwapAllOrNothing(t *testing.T) {
	f := newGate(t, nil, nil)
	if v := f.gate.Policy().Version(); v != "none" {
		t.Fatalf("empty policy version %q", v)
	}
	if d, _ := f.cross(t, msg("Project X")); d.Verdict != router.Allow || d.Rule != "default" || d.PolicyVersion != "none" {
		t.Fatalf("empty policy: %+v", d)
	}
	p := example(t) // enables scanning; this gate has no scanner
	if err := f.gate.Swap(context.Background(), p); err == nil {
		t.Fatal("swapped in a policy that needs a scanner")
	}
	if v := f.gate.Policy().Version(); v != "none" {
		t.Fatalf("after a refused swap the version is %q", v)
	}
}

func ibbData(from, to, sid string, seq int, data []byte) string {
	return `<iq from='` + from + `' to='` + to + `' type='set' id='d` + sid + string(rune('0'+seq)) + `'>` +
		`<data xmlns='http://jabber.org/protocol/ibb' sid='` + sid + `' seq='` + string(rune('0'+seq)) + `'>` +
		base64.StdEncoding.EncodeToString(data) + `</data></iq>`
}

// TestGateIBBSize: the size limit applies to the stream's total.
func TestGateIBBSize(t *testing.T) {
	p, err := policy.Parse([]byte("version: s1\nfiles:\n  - {id: small, max_size: 10, action: deny}\n"), "s.yaml", opts)
	must(t, err)
	f := newGate(t, p, nil)
	const a, b = "alice@localhost/d", "partner@irc.localhost/x"
	f.cross(t, `<iq from='`+a+`' to='`+b+`' type='set' id='o'><open xmlns='http://jabber.org/protocol/ibb' sid='s1' block-size='4096'/></iq>`)
	if d, _ := f.cross(t, ibbData(a, b, "s1", 0, []byte("123456"))); d.Verdict != router.Allow {
		t.Fatalf("first chunk: %+v", d)
	}
	if d, _ := f.cross(t, ibbData(a, b, "s1", 1, []byte("789012"))); d.Verdict != router.Deny || d.Rule != "small" {
		t.Fatalf("second chunk: %+v", d)
	}
	// Another stream starts from zero.
	if d, _ := f.cross(t, ibbData(a, b, "s2", 0, []byte("123456"))); d.Verdict != router.Allow {
		t.Fatalf("other stream: %+v", d)
	}
}

// TestGateScan runs the scan stage against a real clamd.
func TestGateScan(t *testing.T) {
	cd := clamdtest.Start(t)
	scanner := &policy.Clamd{Network: "unix", Addr: cd.Socket, Timeout: 10 * time.Second}
	p := example(t)
	f := newGate(t, p, func(o *policy.GateOptions) { o.Scanner = scanner })
	const a, b = "alice@localhost/d", "partner@irc.localhost/x"

	d, _ := f.cross(t, ibbData(a, b, "s1", 0, []byte("a harmless text file")))
	if d.Verdict != router.Allow || d.Rule != "watch-irc" {
		t.Fatalf("clean IBB: %+v", d)
	}
	f.sink.take()
	d, _ = f.cross(t, ibbData(a, b, "s2", 0, clamdtest.EICAR()))
	if d.Verdict != router.Deny || d.Rule != "watch-irc,virus-scan" || !strings.Contains(d.Text, clamdtest.EICARName) {
		t.Fatalf("EICAR over IBB: %+v", d)
	}
	notes := f.sink.take()
	if len(notes) != 2 || !strings.Contains(notes[0].Body(), "Malware: "+clamdtest.EICARName) {
		t.Fatalf("notices: %v", notes)
	}
	// A signature split across two chunks is caught on the second.
	m := []byte(clamdtest.Marker)
	if d, _ = f.cross(t, ibbData(a, b, "s3", 0, m[:10])); d.Verdict != router.Allow {
		t.Fatalf("first half: %+v", d)
	}
	if d, _ = f.cross(t, ibbData(a, b, "s3", 1, m[10:])); d.Verdict != router.Deny || !strings.Contains(d.Text, clamdtest.MarkerName) {
		t.Fatalf("second half: %+v", d)
	}
	// A data: URI in a body.
	d, _ = f.cross(t, msg("data:application/octet-stream;base64,"+base64.StdEncoding.EncodeToString(clamdtest.EICAR())))
	if d.Verdict != router.Deny || !strings.Contains(d.Rule, "virus-scan") {
		t.Fatalf("data URI: %+v", d)
	}
	// Inbound too: the outside sender learns nothing about the rule.
	d, _ = f.cross(t, ibbData(b, a, "s4", 0, clamdtest.EICAR()))
	if d.Verdict != router.Deny || d.Text != "refused by the recipient organization's policy" {
		t.Fatalf("inbound EICAR: %+v", d)
	}
}

// TestGateScanFailure: clamd down refuses the file unless on_scan_failure
// is allow.
func TestGateScanFailure(t *testing.T) {
	down := &policy.Clamd{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock"), Timeout: time.Second}
	p := example(t)
	for _, tc := range []struct {
		open    bool
		verdict router.Verdict
	}{{false, router.Deny}, {true, router.Allow}} {
		f := newGate(t, p, func(o *policy.GateOptions) { o.Scanner, o.ScanFailOpen = down, tc.open })
		d, _ := f.cross(t, ibbData("alice@localhost/d", "partner@irc.localhost/x", "s", 0, []byte("x")))
		if d.Verdict != tc.verdict {
			t.Fatalf("fail open %v: %+v", tc.open, d)
		}
		if tc.verdict == router.Deny && (d.Condition != stanza.ResourceConstraint || d.Rule != "watch-irc,virus-scan") {
			t.Fatalf("fail closed: %+v", d)
		}
	}
}
