package policy

import (
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Sample is a crossing to evaluate without side effects (`gatehouse
// policy test`, replay).
type Sample struct {
	Dir    Direction
	Zone   router.Zone // the outside zone
	Stanza *stanza.Stanza
	// LocalAccount says the local party (From when outbound, To when
	// inbound) is an account of a hosted domain; Groups are its groups.
	LocalAccount bool
	Groups       []string
	// PeerGroups are the recipient's groups when Dir is Internal (both
	// parties are local accounts; only information barriers apply).
	PeerGroups []string
	Now        time.Time
}

// Step is one rule that acted.
type Step struct {
	Stage  Stage
	Rule   string
	Action Action
	Detail string // what matched
}

// Explanation is what the policy would do with a Sample.
type Explanation struct {
	Decision router.Decision
	Steps    []Step
	Offers   []FileOffer
	// Texts are the texts the content rules read, normalised as the
	// lexicons see them.
	Texts []string
	// Delivered is the stanza as it would be delivered (redacted), nil
	// when denied.
	Delivered *stanza.Stanza
	// Scan: inline file content would be scanned for malware now.
	Scan bool
	// Disclaimer: the pair gets a notice unless it had one within the
	// disclaimer period.
	Disclaimer bool
	// Notify lists who would be told, per rule ("manager", JIDs).
	Notify []string
	// Hold names the hold rule that would keep an outbound message for
	// review ("" when none would).
	Hold string
}

// Explain evaluates s like the Gate does, without scanning, notices or
// disclaimer bookkeeping.
func (p *Policy) Explain(s Sample) Explanation {
	if s.Dir == Internal {
		return p.explainInternal(s)
	}
	st := s.Stanza
	x := crossing{dir: s.Dir, zone: s.Zone, now: s.Now}
	if s.Dir == Outbound {
		x.local, x.remote = st.From, st.To
	} else {
		x.local, x.remote = st.To, st.From
	}
	var groups bitset
	if !s.LocalAccount || x.local.Localpart() == "" {
		x.local = jid.JID{}
		s.Groups = nil
	}
	for _, g := range s.Groups {
		if i, ok := p.groupIdx[g]; ok {
			groups.set(i)
		}
	}
	x.groups = &groups
	sc := &scratch{}
	sc.reset()
	p.prepare(st, &x, sc)
	p.evaluate(st, &x, sc)
	o := &sc.out
	var e Explanation
	e.Decision = p.decide(o, s.Dir)
	e.Offers = append(e.Offers, sc.offers...)
	if hasText(st) {
		for _, c := range st.Children {
			if c.El != nil && textElement(st.Kind, c.El) {
				e.Texts = append(e.Texts, Normalize(c.El.Text()))
			}
		}
	}
	for _, r := range o.acted {
		e.Steps = append(e.Steps, Step{Stage: r.stage, Rule: r.id, Action: r.action, Detail: p.detail(r, st, sc)})
		e.Notify = append(e.Notify, notifyList(p, r)...)
	}
	if o.defaultDeny {
		e.Steps = append(e.Steps, Step{Stage: StageAccess, Rule: DefaultRule, Action: ActDeny, Detail: "default_access: deny"})
	}
	if o.verdict == router.Allow && o.hold && s.Dir == Outbound && st.Kind == stanza.KindMessage {
		for _, r := range o.acted {
			if r.action == ActHold {
				e.Hold = r.id
				break
			}
		}
	}
	if o.verdict == router.Allow {
		e.Delivered = st
		if o.redact {
			if red, ok := p.redact(st, o.acted, sc); ok {
				e.Delivered = red
			}
		}
		e.Scan = o.scan
		e.Disclaimer = o.disclaimer && x.local.Localpart() != ""
		if e.Disclaimer {
			e.Steps = append(e.Steps, Step{Stage: StageDisclaimer, Rule: p.disclaimer.id, Action: ActNotice, Detail: p.disclaimerText})
		}
	}
	acted := o.acted
	if e.Disclaimer {
		acted = append(acted, p.disclaimer)
	}
	e.Decision.Rule = ruleList(acted, o.defaultDeny)
	return e
}

// explainInternal evaluates the information barriers for a stanza between
// two local accounts.
func (p *Policy) explainInternal(s Sample) Explanation {
	st := s.Stanza
	x := crossing{dir: Internal, zone: router.ZoneLocal, now: s.Now, local: st.From, remote: st.To}
	var groups, peer bitset
	p.groupBits(s.Groups, &groups)
	p.groupBits(s.PeerGroups, &peer)
	x.groups, x.peer = &groups, &peer
	x.kinds = classify(st)
	sc := &scratch{}
	sc.reset()
	if s.LocalAccount && st.From.Localpart() != "" && st.To.Localpart() != "" {
		p.evaluateBarriers(&x, sc)
	} else {
		sc.out.verdict = router.Allow
	}
	o := &sc.out
	e := Explanation{Decision: p.decide(o, Internal)}
	for _, r := range o.acted {
		e.Steps = append(e.Steps, Step{Stage: r.stage, Rule: r.id, Action: r.action, Detail: p.detail(r, st, sc)})
		e.Notify = append(e.Notify, notifyList(p, r)...)
	}
	if o.verdict == router.Allow {
		e.Delivered = st
	}
	e.Decision.Rule = ruleList(o.acted, false)
	return e
}

func (p *Policy) groupBits(names []string, b *bitset) {
	for _, g := range names {
		if i, ok := p.groupIdx[g]; ok {
			b.set(i)
		}
	}
}

// sides names the two groups of barrier r.
func (p *Policy) sides(r *rule) (a, b string) {
	for i, g := range p.groups {
		if r.sideA.has(i) {
			a = g
		}
		if r.sideB.has(i) {
			b = g
		}
	}
	return a, b
}

func notifyList(p *Policy, r *rule) []string {
	var out []string
	if r.notifyManager {
		out = append(out, r.id+" → manager")
	}
	if r.notifyCompliance {
		for _, j := range p.compliance {
			out = append(out, r.id+" → "+j.String())
		}
	}
	for _, j := range r.notifyJIDs {
		out = append(out, r.id+" → "+j.String())
	}
	return out
}

// detail says what made r act.
func (p *Policy) detail(r *rule, st *stanza.Stanza, sc *scratch) string {
	switch r.stage {
	case StageContent:
		if r.action == ActAllow {
			return "exempt from the content rules below"
		}
		return "matched " + strings.Join(p.matchedTerms(r, st, sc), ", ")
	case StageFiles:
		if r.action == ActAllow {
			return "exempt from the file rules below"
		}
		for i := range sc.offers {
			if why := r.violation(&sc.offers[i]); why != "" {
				o := &sc.offers[i]
				return fmt.Sprintf("%s via %s: %s", describeType(o), o.Mechanism, why)
			}
		}
	case StageAccess:
		if r.cel != nil {
			return r.sel.describe() + ", " + r.cel.String()
		}
		return r.sel.describe()
	case StageBarrier:
		a, b := p.sides(r)
		return fmt.Sprintf("barrier between groups %s and %s", a, b)
	}
	return ""
}

// describe summarises what a selector looks at, for explanations.
func (s *selector) describe() string {
	var parts []string
	if s.dir != 0 {
		parts = append(parts, s.dir.String())
	}
	if s.hasGroups {
		parts = append(parts, "group")
	}
	if s.users != nil {
		parts = append(parts, "user")
	}
	if len(s.domains) > 0 || len(s.jids) > 0 {
		parts = append(parts, "outside address")
	}
	if s.zones != 0 {
		parts = append(parts, "zone")
	}
	if s.kinds != 0 {
		parts = append(parts, "kind")
	}
	if s.window != nil {
		parts = append(parts, "time window")
	}
	if len(parts) == 0 {
		return "matches every crossing"
	}
	return "matched by " + strings.Join(parts, ", ")
}
