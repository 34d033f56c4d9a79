package policy

import (
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"strings"
)

// scratch is the per-evaluation state. It is pooled (see Gate) so that a
// stanza that matches nothing is evaluated without allocating.
type scratch struct {
	norm    normalizer
	x       crossing
	groups  bitset // the local party's groups
	peer    bitset // the recipient's groups, for Internal crossings
	offers  []FileOffer
	hits    bitset // lexicons found in the text
	patDone bitset
	patHit  bitset
	out     outcome
}

// outcome is what evaluation decided. acted lists the rules that matched
// and acted, in evaluation order; a deny rule, if any, is last.
type outcome struct {
	verdict     router.Verdict
	deny        *rule // the deciding rule of a deny; nil with defaultDeny
	defaultDeny bool
	acted       []*rule
	redact      bool
	hold        bool // a hold rule acted (and nothing denied)
	scan        bool // inline file content must be scanned
	disclaimer  bool
	denyOffer   int // index into offers of the offer a file rule denied, or -1
}

func (s *scratch) reset() {
	s.x = crossing{}
	s.groups = bitset{}
	s.peer = bitset{}
	clear(s.offers) // drop references to the last stanza's data
	s.offers = s.offers[:0]
	s.hits = bitset{}
	s.patDone = bitset{}
	s.patHit = bitset{}
	s.out = outcome{acted: s.out.acted[:0], denyOffer: -1}
}

// prepare classifies st and collects its file offers into s.
func (p *Policy) prepare(st *stanza.Stanza, x *crossing, s *scratch) {
	x.kinds = classify(st)
	if p.needFiles {
		s.offers = appendOffers(s.offers, st)
		if len(s.offers) > 0 {
			x.kinds |= kindFile
		}
	}
}

// evaluate runs the stages in their fixed order: access, content, files,
// scan, disclaimer. The first deny ends evaluation.
func (p *Policy) evaluate(st *stanza.Stanza, x *crossing, s *scratch) {
	o := &s.out
	o.verdict = router.Allow

	// 1. Access: the first allow or deny decides; flags accumulate.
	decided := false
	for _, r := range p.access {
		if !r.sel.match(x) || r.cel != nil && !r.cel.match(p, st, x, s) {
			continue
		}
		o.acted = append(o.acted, r)
		switch r.action {
		case ActDeny:
			o.verdict, o.deny = router.Deny, r
			return
		case ActAllow:
			decided = true
		case ActHold:
			o.hold = true
		}
		if decided {
			break
		}
	}
	if !decided && p.defaultDeny {
		o.verdict, o.defaultDeny = router.Deny, true
		return
	}

	// 2. Content: every matching rule acts; an allow exempts from the rest.
	if p.needText && len(p.content) > 0 && hasText(st) {
		p.scanText(st, s)
		for _, r := range p.content {
			if !r.sel.match(x) {
				continue
			}
			if r.action == ActAllow {
				if r.cel != nil && !r.cel.match(p, st, x, s) {
					continue
				}
				o.acted = append(o.acted, r)
				break
			}
			if !p.contentMatch(r, st, s) || r.cel != nil && !r.cel.match(p, st, x, s) {
				continue
			}
			o.acted = append(o.acted, r)
			switch r.action {
			case ActDeny:
				o.verdict, o.deny = router.Deny, r
				return
			case ActRedact:
				o.redact = true
			case ActHold:
				o.hold = true
			}
		}
	}

	// 3. Files: every offer against every rule; an allow exempts.
	if p.evaluateFiles(st, x, s) {
		return
	}

	// 4. Scan: inline content is scanned by the Gate (it needs I/O).
	if p.scan != nil && len(s.offers) > 0 && p.scan.sel.match(x) {
		for i := range s.offers {
			if len(s.offers[i].Data) > 0 || p.scanLinks && fetchable(&s.offers[i]) {
				o.scan = true
				break
			}
		}
	}

	// 5. Disclaimer: chat and normal messages with a body.
	if p.disclaimer != nil && x.kinds&(kindChat|kindNormal) != 0 && p.disclaimer.sel.match(x) && st.Body() != "" {
		o.disclaimer = true
	}
}

// evaluateFiles runs the file rules over s.offers and reports whether one
// denied. st is nil for an upload.
func (p *Policy) evaluateFiles(st *stanza.Stanza, x *crossing, s *scratch) bool {
	o := &s.out
	if len(s.offers) == 0 || len(p.files) == 0 {
		return false
	}
files:
	for _, r := range p.files {
		if !r.sel.match(x) || r.cel != nil && !r.cel.match(p, st, x, s) {
			continue
		}
		if r.action == ActAllow {
			o.acted = append(o.acted, r)
			return false
		}
		for i := range s.offers {
			if r.violation(&s.offers[i]) == "" {
				continue
			}
			o.acted = append(o.acted, r)
			if r.action == ActDeny {
				o.verdict, o.deny, o.denyOffer = router.Deny, r, i
				return true
			}
			continue files
		}
	}
	return false
}

// evaluateBarriers runs the information barriers for traffic between two
// local accounts: in file order, flags accumulate and the first deny wins.
func (p *Policy) evaluateBarriers(x *crossing, s *scratch) {
	o := &s.out
	o.verdict = router.Allow
	for _, r := range p.barriers {
		if !r.sel.match(x) || !r.separates(x.groups, x.peer) {
			continue
		}
		o.acted = append(o.acted, r)
		if r.action == ActDeny {
			o.verdict, o.deny = router.Deny, r
			return
		}
	}
}

// separates reports whether barrier r stands between a sender in groups
// a and a recipient in groups b, either way round.
func (r *rule) separates(a, b *bitset) bool {
	return r.sideA.intersects(a) && r.sideB.intersects(b) || r.sideB.intersects(a) && r.sideA.intersects(b)
}

// hasText reports whether st has text the content rules look at.
func hasText(st *stanza.Stanza) bool {
	return st.Kind == stanza.KindMessage || st.Kind == stanza.KindPresence
}

// textElement reports whether e is a child whose text the content rules
// read: message body and subject, presence status.
func textElement(kind stanza.Kind, e *stanza.Element) bool {
	if e.Name.Space != "" && !stanza.IsContentNS(e.Name.Space) {
		return false
	}
	switch kind {
	case stanza.KindMessage:
		return e.Name.Local == "body" || e.Name.Local == "subject"
	case stanza.KindPresence:
		return e.Name.Local == "status"
	}
	return false
}

// scanText runs the lexicon automaton over every text of st.
func (p *Policy) scanText(st *stanza.Stanza, s *scratch) {
	if p.auto == nil || len(p.auto.terms) == 0 {
		return
	}
	for _, c := range st.Children {
		if c.El == nil || !textElement(st.Kind, c.El) {
			continue
		}
		p.auto.scan(s.norm.normalize(c.El.Text()), &s.hits)
	}
	for i := range s.offers {
		if s.offers[i].Name != "" {
			p.auto.scan(s.norm.normalize(s.offers[i].Name), &s.hits)
		}
	}
}

// contentMatch reports whether content rule r matches st's text.
func (p *Policy) contentMatch(r *rule, st *stanza.Stanza, s *scratch) bool {
	if r.hasLex && r.lex.intersects(&s.hits) {
		return true
	}
	for _, j := range r.pats {
		if !s.patDone.has(j) {
			s.patDone.set(j)
			if p.patternMatches(j, st, s) {
				s.patHit.set(j)
			}
		}
		if s.patHit.has(j) {
			return true
		}
	}
	return false
}

func (p *Policy) patternMatches(j int, st *stanza.Stanza, s *scratch) bool {
	re := p.pats[j]
	for _, c := range st.Children {
		if c.El != nil && textElement(st.Kind, c.El) && re.MatchString(c.El.Text()) {
			return true
		}
	}
	for i := range s.offers {
		if s.offers[i].Name != "" && re.MatchString(s.offers[i].Name) {
			return true
		}
	}
	return false
}

// fetchable reports whether o is a link whose file the Gate fetches to
// scan (scan.links): http(s), and not an upload scanned when stored.
func fetchable(o *FileOffer) bool {
	return len(o.Data) == 0 && !o.ScannedAtUpload &&
		(strings.HasPrefix(o.URL, "https://") || strings.HasPrefix(o.URL, "http://"))
}
