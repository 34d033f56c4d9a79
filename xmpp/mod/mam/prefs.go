package mam

import (
	"slices"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// Default archiving preferences (XEP-0441 §2.1.1).
const (
	DefaultAlways = "always"
	DefaultRoster = "roster"
	DefaultNever  = "never"
)

// MaxPrefsJIDs bounds the always and never lists together: they are read
// for every archived message and sent whole in every prefs reply.
const MaxPrefsJIDs = 1000

// Prefs are a user's archiving preferences (XEP-0441). JIDs are stored in
// their normalized string form.
type Prefs struct {
	Default string
	Always  []string
	Never   []string
}

// Rule is what the preferences say about one peer.
type Rule uint8

// Rules: an explicit list entry decides; otherwise the default does, and
// RuleRoster asks the caller to look the peer up in the roster.
const (
	RuleNever Rule = iota
	RuleAlways
	RuleRoster
)

// Decide applies XEP-0441 §2.3 to target (the 'to' of an outgoing message,
// the 'from' of an incoming one): list entries with a resource match only
// that full JID and are checked first; bare entries match any resource.
// When a JID is on both lists, never wins: not archiving is the safe
// mistake for a private conversation.
func (p *Prefs) Decide(target jid.JID) Rule {
	full, bare := target.String(), target.Bare().String()
	if target.Resourcepart() != "" {
		if slices.Contains(p.Never, full) {
			return RuleNever
		}
		if slices.Contains(p.Always, full) {
			return RuleAlways
		}
	}
	if slices.Contains(p.Never, bare) {
		return RuleNever
	}
	if slices.Contains(p.Always, bare) {
		return RuleAlways
	}
	switch p.Default {
	case DefaultAlways:
		return RuleAlways
	case DefaultRoster:
		return RuleRoster
	}
	return RuleNever
}

// parsePrefs reads a prefs set (XEP-0441 §2.1). The default attribute is
// required; missing always/never lists are empty. JIDs are normalized and
// deduplicated; one listed in both ends up in never only.
func parsePrefs(el *stanza.Element) (Prefs, *queryError) {
	p := Prefs{Default: el.AttrValue("default")}
	switch p.Default {
	case DefaultAlways, DefaultRoster, DefaultNever:
	case "":
		return p, badRequest("prefs need a default of always, roster or never")
	default:
		return p, badRequest("default must be always, roster or never")
	}
	lists := map[string]*[]string{"always": &p.Always, "never": &p.Never}
	seen := map[string]bool{}
	n := 0
	for _, c := range el.Elements() {
		dst, ok := lists[c.Name.Local]
		if !ok || c.Name.Space != NS {
			continue // unknown children are ignored, like unknown extensions
		}
		if seen[c.Name.Local] {
			return p, badRequest("prefs carry one " + c.Name.Local + " list")
		}
		seen[c.Name.Local] = true
		for _, j := range c.Elements() {
			if j.Name.Local != "jid" || j.Name.Space != NS {
				continue
			}
			if n++; n > MaxPrefsJIDs {
				return p, &queryError{cond: stanza.NotAcceptable, text: "too many JIDs in the preferences"}
			}
			parsed, err := jid.Parse(j.Text())
			if err != nil {
				return p, &queryError{cond: stanza.JIDMalformed, text: "malformed JID in the preferences"}
			}
			*dst = append(*dst, parsed.String())
		}
	}
	p.Always = dedupe(p.Always)
	p.Never = dedupe(p.Never)
	p.Always = slices.DeleteFunc(p.Always, func(j string) bool { return slices.Contains(p.Never, j) })
	return p, nil
}

func dedupe(list []string) []string {
	slices.Sort(list)
	return slices.Compact(list)
}

// prefsElement serializes p (XEP-0441 §2.1: always and never are present
// even when empty).
func prefsElement(p Prefs) *stanza.Element {
	el := stanza.NewElement(NS, "prefs", "default", p.Default)
	for _, l := range []struct {
		name string
		jids []string
	}{{"always", p.Always}, {"never", p.Never}} {
		list := stanza.NewElement(NS, l.name)
		for _, j := range l.jids {
			list.Append(stanza.NewElement(NS, "jid").AppendText(j))
		}
		el.Append(list)
	}
	return el
}
