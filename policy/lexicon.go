package policy

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxSets is the number of lexicons (and of groups) a policy may name: the
// bit sets that record them are fixed-size arrays so that evaluating a
// stanza allocates nothing.
const maxSets = 256

// bitset is a set of lexicon or group indices.
type bitset [maxSets / 64]uint64

func (b *bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b *bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b *bitset) any() bool      { return b[0]|b[1]|b[2]|b[3] != 0 }
func (b *bitset) intersects(o *bitset) bool {
	return b[0]&o[0]|b[1]&o[1]|b[2]&o[2]|b[3]&o[3] != 0
}

// maxAutomaton bounds the transition table (states × byte classes), about
// 64 MiB of int32: a policy whose lexicons need more is refused at load.
const maxAutomaton = 16 << 20

var errAutomatonTooLarge = errors.New("the lexicons are too large (more than 16M automaton transitions); split them or use fewer, shorter terms")

// term is one keyword of a lexicon, already normalised.
type term struct {
	text    []byte
	lexicon int
	whole   bool // whole-word match
}

// automaton is an Aho-Corasick automaton over normalised bytes holding the
// terms of every lexicon of a policy. It is built once when the policy
// loads and is read-only afterwards, so any number of goroutines may scan
// with it. The goto and failure functions are folded into one DFA table
// over byte classes (bytes that occur in no term share class 0), so
// scanning costs one table load per byte.
type automaton struct {
	class  [256]uint16
	nclass int
	delta  []int32 // delta[state*nclass+class] = next state
	outAt  []int32 // outputs of state s are outs[outAt[s]:outAt[s+1]]
	outs   []int32 // term indices
	terms  []term
}

func buildAutomaton(terms []term) (*automaton, error) {
	a := &automaton{terms: terms}
	// Byte classes: every byte used by a term gets its own class.
	var used [256]bool
	for _, t := range terms {
		for _, c := range t.text {
			used[c] = true
		}
	}
	a.nclass = 1
	for c := range 256 {
		if used[c] {
			a.class[c] = uint16(a.nclass)
			a.nclass++
		}
	}
	// Trie.
	type node struct {
		next map[uint16]int32
		out  []int32
	}
	nodes := []node{{next: map[uint16]int32{}}}
	for i, t := range terms {
		s := int32(0)
		for _, c := range t.text {
			cl := a.class[c]
			n, ok := nodes[s].next[cl]
			if !ok {
				n = int32(len(nodes))
				nodes = append(nodes, node{next: map[uint16]int32{}})
				nodes[s].next[cl] = n
			}
			s = n
		}
		nodes[s].out = append(nodes[s].out, int32(i))
	}
	if len(nodes)*a.nclass > maxAutomaton {
		return nil, errAutomatonTooLarge
	}
	// Breadth-first: failure links and the full transition table.
	nc := a.nclass
	a.delta = make([]int32, len(nodes)*nc)
	fail := make([]int32, len(nodes))
	queue := make([]int32, 0, len(nodes))
	for cl := range nc {
		if n, ok := nodes[0].next[uint16(cl)]; ok {
			a.delta[cl] = n
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		f := fail[u]
		nodes[u].out = append(nodes[u].out, nodes[f].out...)
		for cl := range nc {
			if n, ok := nodes[u].next[uint16(cl)]; ok {
				fail[n] = a.delta[int(f)*nc+cl]
				a.delta[int(u)*nc+cl] = n
				queue = append(queue, n)
			} else {
				a.delta[int(u)*nc+cl] = a.delta[int(f)*nc+cl]
			}
		}
	}
	a.outAt = make([]int32, len(nodes)+1)
	for i, n := range nodes {
		a.outAt[i] = int32(len(a.outs))
		a.outs = append(a.outs, n.out...)
	}
	a.outAt[len(nodes)] = int32(len(a.outs))
	return a, nil
}

// scan records in hit the lexicons with a term in text (normalised).
func (a *automaton) scan(text []byte, hit *bitset) {
	if a == nil || len(a.terms) == 0 {
		return
	}
	nc := int32(a.nclass)
	s := int32(0)
	for i := 0; i < len(text); i++ {
		s = a.delta[s*nc+int32(a.class[text[i]])]
		if o, e := a.outAt[s], a.outAt[s+1]; o != e {
			for _, ti := range a.outs[o:e] {
				t := &a.terms[ti]
				if t.whole && !wordBounded(text, i+1-len(t.text), i+1) {
					continue
				}
				hit.set(t.lexicon)
			}
		}
	}
}

// matches calls fn with the byte range of every match of a lexicon in
// want (for redaction).
func (a *automaton) matches(text []byte, want *bitset, fn func(start, end int)) {
	if a == nil || len(a.terms) == 0 {
		return
	}
	nc := int32(a.nclass)
	s := int32(0)
	for i := 0; i < len(text); i++ {
		s = a.delta[s*nc+int32(a.class[text[i]])]
		for _, ti := range a.outs[a.outAt[s]:a.outAt[s+1]] {
			t := &a.terms[ti]
			if !want.has(t.lexicon) {
				continue
			}
			start := i + 1 - len(t.text)
			if t.whole && !wordBounded(text, start, i+1) {
				continue
			}
			fn(start, i+1)
		}
	}
}

// wordBounded reports whether text[start:end] is not preceded or followed
// by a word character.
func wordBounded(text []byte, start, end int) bool {
	if start > 0 {
		r, _ := utf8.DecodeLastRune(text[:start])
		if isWordRune(r) {
			return false
		}
	}
	if end < len(text) {
		r, _ := utf8.DecodeRune(text[end:])
		if isWordRune(r) {
			return false
		}
	}
	return true
}

// Lexicon is a named keyword list as written in the policy file.
type Lexicon struct {
	// Match is "word" (default: a term matches only as a whole word or
	// phrase) or "substring".
	Match string   `yaml:"match"`
	Terms []string `yaml:"terms"`
}

// compileTerms normalises the terms of lexicon li.
func compileTerms(li int, lx Lexicon, n *normalizer) ([]term, error) {
	whole := lx.Match != "substring"
	out := make([]term, 0, len(lx.Terms))
	for i, t := range lx.Terms {
		norm := n.normalize(t)
		if len(norm) == 0 {
			return nil, fmt.Errorf("terms[%d] %q is empty after normalisation", i, t)
		}
		out = append(out, term{text: append([]byte(nil), norm...), lexicon: li, whole: whole})
	}
	return out, nil
}
