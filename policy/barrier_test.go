package policy_test

import (
	"context"
	"strings"
	"testing"

	"gatehouse/policy"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// crossInternal sends a stanza between two local accounts through the
// Gate, as the router does for internal traffic.
func (f *gateFixture) crossInternal(t *testing.T, xmlText string) router.Decision {
	t.Helper()
	env := &router.Envelope{Stanza: parseStanza(t, xmlText),
		Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost", Conn: 1},
		Dst: router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost"}}
	d, err := f.gate.Cross(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGateBarriers: traffic between local accounts meets only the
// information barriers, in both directions, with notices.
func TestGateBarriers(t *testing.T) {
	p, err := policy.Load("../testdata/policy/barriers.yaml", opts)
	must(t, err)
	if !p.HasBarriers() || !strings.Contains(p.Summary(), "2 information barriers") {
		t.Fatalf("summary %q", p.Summary())
	}
	f := newGate(t, p, nil)
	ctx := context.Background()
	for _, u := range []string{"rita", "tom", "lena"} {
		must(t, f.db.CreateUser(ctx, u, creds()))
	}
	for g, u := range map[string]string{"research": "rita", "trading": "tom", "legal": "lena"} {
		must(t, f.db.CreateGroup(ctx, g))
		must(t, f.db.AddToGroup(ctx, g, u))
	}
	must(t, f.gate.Swap(ctx, p)) // load the memberships made above

	m := func(from, to, body string) string {
		return `<message from='` + from + `@localhost/desk' to='` + to + `@localhost' type='chat'><body>` + body + `</body></message>`
	}
	for _, tc := range []struct {
		name, stanza string
		verdict      router.Verdict
		rule         string
	}{
		{"research to trading", m("rita", "tom", "the upgrade is out tomorrow"), router.Deny, "research-trading"},
		{"trading to research", m("tom", "rita", "any news?"), router.Deny, "research-trading"},
		{"presence too", `<presence from='tom@localhost/desk' to='rita@localhost' type='subscribe'/>`, router.Deny, "research-trading"},
		{"legal to trading: flagged", m("lena", "tom", "please keep records"), router.Allow, "legal-trading-review"},
		{"legal presence to trading: not a message", `<presence from='lena@localhost/desk' to='tom@localhost'/>`, router.Allow, "default"},
		{"research to legal", m("rita", "lena", "hi"), router.Allow, "default"},
		{"outside groups", m("alice", "boss", "hi"), router.Allow, "default"},
		{"the server itself", `<message from='localhost' to='tom@localhost'><body>x</body></message>`, router.Allow, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := f.crossInternal(t, tc.stanza)
			if d.Verdict != tc.verdict || d.Rule != tc.rule || d.PolicyVersion != p.Version() {
				t.Fatalf("decision %+v, want %v %s", d, tc.verdict, tc.rule)
			}
			if d.Verdict == router.Deny && (d.Condition != stanza.NotAllowed ||
				d.Text != "An information barrier separates Research and Trading. (rule research-trading)") {
				t.Fatalf("deny %+v", d)
			}
		})
	}
	// Each deny told the compliance officer; the flag notifies nobody.
	notices := f.sink.take()
	if len(notices) != 3 {
		t.Fatalf("%d notices, want 3: %v", len(notices), notices)
	}
	for _, n := range notices {
		if n.To.String() != "compliance@localhost" || !strings.Contains(n.Body(), "Information barrier between groups research and trading.") ||
			!strings.Contains(n.Body(), "Rule research-trading (barrier, deny) acted on a internal") {
			t.Fatalf("notice %q to %s", n.Body(), n.To)
		}
	}

	// Border traffic does not meet the barriers, and a policy without
	// barriers allows internal traffic at once.
	if d, _ := f.cross(t, `<message from='rita@localhost/desk' to='tom@irc.localhost' type='chat'><body>hi</body></message>`); d.Verdict != router.Allow {
		t.Fatalf("border crossing: %+v", d)
	}
	ex := example(t)
	g2 := newGate(t, ex, func(o *policy.GateOptions) { o.Scanner = noScanner{} })
	if d := g2.crossInternal(t, m("intern", "alice", "Project X")); d.Verdict != router.Allow || d.Rule != "default" || d.PolicyVersion != ex.Version() {
		t.Fatalf("internal traffic under a policy without barriers: %+v", d)
	}

	// Explain (gatehouse policy test) agrees.
	st := parseStanza(t, m("rita", "tom", "hi"))
	e := p.Explain(policy.Sample{Dir: policy.Internal, Stanza: st, LocalAccount: true, Groups: []string{"research"}, PeerGroups: []string{"trading"}, Now: monday10})
	if e.Decision.Verdict != router.Deny || e.Decision.Rule != "research-trading" || len(e.Steps) != 1 ||
		e.Steps[0].Detail != "barrier between groups research and trading" || e.Steps[0].Stage != policy.StageBarrier {
		t.Fatalf("explain %+v", e)
	}
}

func TestBarrierErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"barriers:\n  - {id: b, between: [research]}\n", "x.yaml:3: barriers[0].between (rule b): name exactly two groups"},
		{"barriers:\n  - {id: b, between: [a, a]}\n", "barriers[0].between (rule b): the two groups are the same"},
		{"barriers:\n  - {id: b, between: [a, b], action: redact}\n", `barriers[0].action (rule b): "redact" is not deny or flag`},
		{"barriers:\n  - {between: [a, b]}\n", "barriers[0].id: every rule needs an id"},
		{"barriers:\n  - {id: b, between: [a, b], zones: [remote]}\n", "zones"},
	} {
		_, err := policy.Parse([]byte("version: v1\n"+tc.doc), "x.yaml", opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}
