package policy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse/policy"
	"gatehouse/xmpp/router"
)

// benchPolicy is the size the issue sets: 1,000 keywords in 10 lexicons
// and 50 rules (20 access, 25 content, 5 file rules), plus the disclaimer.
func benchPolicy(tb testing.TB) *policy.Policy {
	tb.Helper()
	var b strings.Builder
	b.WriteString("version: bench-1\ncompliance: [compliance@localhost]\nlexicons:\n")
	for l := range 10 {
		fmt.Fprintf(&b, "  lex%d:\n    match: %s\n    terms:\n", l, map[bool]string{true: "word", false: "substring"}[l%3 != 0])
		for k := range 100 {
			fmt.Fprintf(&b, "      - \"codename %s%d-%d\"\n", string(rune('a'+l)), k, l*7+k)
		}
	}
	b.WriteString("patterns:\n  card: '\\b\\d(?:[ -]?\\d){12,18}\\b'\n  iban: '\\b[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4}){3,7}\\b'\n")
	b.WriteString("access:\n")
	for i := range 20 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - {id: a%d, groups: [g%d], action: deny}\n", i, i)
		case 1:
			fmt.Fprintf(&b, "  - {id: a%d, domains: [\"*.rival%d.example\"], action: deny}\n", i, i)
		case 2:
			fmt.Fprintf(&b, "  - {id: a%d, jids: [\"ceo%d@*\"], action: flag}\n", i, i)
		default:
			fmt.Fprintf(&b, "  - {id: a%d, users: [u%d], kinds: [subscription], action: deny}\n", i, i)
		}
	}
	b.WriteString("content:\n")
	for i := range 25 {
		if i%5 == 4 {
			fmt.Fprintf(&b, "  - {id: c%d, patterns: [%s], action: redact}\n", i, map[bool]string{true: "card", false: "iban"}[i%2 == 0])
			continue
		}
		fmt.Fprintf(&b, "  - {id: c%d, lexicons: [lex%d], action: deny, notify: [manager]}\n", i, i%10)
	}
	b.WriteString("files:\n")
	for i := range 5 {
		fmt.Fprintf(&b, "  - {id: f%d, max_size: %d, block_types: [.exe], action: deny}\n", i, 1<<20*(i+1))
	}
	b.WriteString("disclaimer: {enabled: true}\n")
	p, err := policy.Parse([]byte(b.String()), "bench.yaml", opts)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

const benchBody = "Hi Bob, thanks for the call this morning. Let's meet next Tuesday at ten to go through the quarterly numbers."

func benchCross(tb testing.TB) (func() router.Decision, *policy.Policy) {
	p := benchPolicy(tb)
	g, err := policy.NewGate(context.Background(), p, policy.GateOptions{Hosts: []string{"localhost"}, Forwarder: &sink{}, DirectoryRefresh: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	st := parseStanza(tb, `<message from='alice@localhost/desk' to='bob@partner.example' type='chat' id='m1'><body>`+benchBody+`</body></message>`)
	env := &router.Envelope{Stanza: st, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost", Conn: 1},
		Dst: router.Endpoint{Zone: router.ZoneRemote, Domain: "partner.example"}}
	ctx := context.Background()
	cross := func() router.Decision {
		env.Stanza = st
		d, err := g.Cross(ctx, env)
		if err != nil {
			tb.Fatal(err)
		}
		return d
	}
	cross() // the disclaimer goes out once
	return cross, p
}

// BenchmarkGateCrossMiss is the decision cost of a chat message that
// matches no rule. docs/policy.md quotes the figures.
func BenchmarkGateCrossMiss(b *testing.B) {
	cross, _ := benchCross(b)
	lat := make([]time.Duration, 0, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if len(lat) < cap(lat) {
			t0 := time.Now()
			cross()
			lat = append(lat, time.Since(t0))
			continue
		}
		cross()
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

// BenchmarkGateCrossHit: a message that a content rule denies (no manager
// is set, so no notice is sent).
func BenchmarkGateCrossHit(b *testing.B) {
	p := benchPolicy(b)
	g, err := policy.NewGate(context.Background(), p, policy.GateOptions{Hosts: []string{"localhost"}, Forwarder: &sink{}, DirectoryRefresh: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	st := parseStanza(b, `<message from='alice@localhost/desk' to='bob@partner.example' type='chat'><body>about codename c42-56 tomorrow</body></message>`)
	env := &router.Envelope{Stanza: st, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost", Conn: 1},
		Dst: router.Endpoint{Zone: router.ZoneRemote, Domain: "partner.example"}}
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := g.Cross(context.Background(), env); d.Verdict != router.Deny {
			b.Fatalf("not denied: %+v", d)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		benchPolicy(b)
	}
}

// TestMissAllocatesNothing pins the no-allocation property of the common
// case: a message that matches no rule.
func TestMissAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	cross, p := benchCross(t)
	if d := cross(); d.Verdict != router.Allow || d.Rule != "default" || d.PolicyVersion != p.Version() {
		t.Fatalf("decision %+v", d)
	}
	if n := testing.AllocsPerRun(1000, func() { cross() }); n != 0 {
		t.Fatalf("%v allocations per crossing, want 0", n)
	}
}

// BenchmarkGateCrossCEL: the miss path of BenchmarkGateCrossMiss with one
// more access rule whose CEL expression is evaluated (and false) for
// every message: the cost of an expression.
func BenchmarkGateCrossCEL(b *testing.B) {
	p, err := policy.Parse([]byte("version: cel\naccess:\n  - {id: long-to-partners, cel: \"size(body) > 4000 && peer_domain.endsWith('.example')\", action: deny}\n"), "cel.yaml", opts)
	if err != nil {
		b.Fatal(err)
	}
	g, err := policy.NewGate(context.Background(), p, policy.GateOptions{Hosts: []string{"localhost"}, Forwarder: &sink{}, DirectoryRefresh: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	st := parseStanza(b, `<message from='alice@localhost/desk' to='bob@partner.example' type='chat' id='m1'><body>`+benchBody+`</body></message>`)
	env := &router.Envelope{Stanza: st, Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "localhost", Conn: 1},
		Dst: router.Endpoint{Zone: router.ZoneRemote, Domain: "partner.example"}}
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := g.Cross(context.Background(), env); d.Verdict != router.Allow {
			b.Fatalf("denied: %+v", d)
		}
	}
}
