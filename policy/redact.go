package policy

import (
	"slices"
	"strings"
	"unicode/utf8"

	"gatehouse/xmpp/stanza"
)

// Mask is what replaces each character of redacted text.
const Mask = '*'

// span is a byte range of the original text.
type span struct{ start, end int }

// redact returns a copy of st whose texts have the matches of the acted
// redact rules masked, and whether anything was masked. st itself is not
// changed: the archive keeps the original.
func (p *Policy) redact(st *stanza.Stanza, acted []*rule, s *scratch) (*stanza.Stanza, bool) {
	var lex bitset
	var pats []int
	for _, r := range acted {
		if r.action != ActRedact {
			continue
		}
		for i := range lex {
			lex[i] |= r.lex[i]
		}
		pats = append(pats, r.pats...)
	}
	out := st.Copy()
	changed := false
	for i, c := range out.Children {
		if c.El == nil || !textElement(out.Kind, c.El) {
			continue
		}
		text := c.El.Text()
		spans := p.spans(text, &lex, pats, s)
		if len(spans) == 0 {
			continue
		}
		el := *c.El
		el.Children = []stanza.Node{{Text: maskSpans(text, spans)}}
		out.Children[i].El = &el
		changed = true
	}
	return out, changed
}

// spans finds the byte ranges of text that match the lexicons in lex or
// the patterns pats, merged and sorted.
func (p *Policy) spans(text string, lex *bitset, pats []int, s *scratch) []span {
	var out []span
	if lex.any() && p.auto != nil {
		norm := s.norm.normalizeMap(text)
		pos := s.norm.pos
		p.auto.matches(norm, lex, func(start, end int) {
			a := pos[start]
			last := pos[end-1]
			_, size := utf8.DecodeRuneInString(text[last:])
			out = append(out, span{a, last + size})
		})
	}
	for _, j := range pats {
		for _, m := range p.pats[j].FindAllStringIndex(text, -1) {
			out = append(out, span{m[0], m[1]})
		}
	}
	if len(out) < 2 {
		return out
	}
	slices.SortFunc(out, func(a, b span) int { return a.start - b.start })
	merged := out[:1]
	for _, sp := range out[1:] {
		last := &merged[len(merged)-1]
		if sp.start <= last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// maskSpans replaces every character inside spans with Mask.
func maskSpans(text string, spans []span) string {
	var b strings.Builder
	b.Grow(len(text))
	prev := 0
	for _, sp := range spans {
		b.WriteString(text[prev:sp.start])
		for range utf8.RuneCountInString(text[sp.start:sp.end]) {
			b.WriteRune(Mask)
		}
		prev = sp.end
	}
	b.WriteString(text[prev:])
	return b.String()
}
