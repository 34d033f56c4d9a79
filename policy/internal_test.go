package policy

import (
	"bytes"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Project X", "project x"},
		{"  Project \t\n X  ", "project x"},
		{"ＰＲＯＪＥＣＴ　Ｘ", "project x"},           // fullwidth letters and space (NFKC)
		{"𝐏𝐫𝐨𝐣𝐞𝐜𝐭 𝐗", "project x"},           // mathematical bold (NFKC)
		{"Рrојесt Х", "project x"},           // Cyrillic Р о ј е с Х
		{"ΡΡΟJΕCΤ", "ppoject"},               // Greek capitals
		{"Pro\u200bject\u00adX", "projectx"}, // zero-width space, soft hyphen
		{"Pröjéct", "project"},               // diacritics
		{"Proje\u0301ct", "project"},         // combining accent
		{"ﬁle", "file"},                      // ligature
		{"Łódź", "lodz"},
		{"", ""},
		{"   ", ""},
		{"日本語 テキスト", "日本語 テキスト"},
	} {
		var n normalizer
		if got := string(n.normalize(tc.in)); got != tc.want {
			t.Errorf("normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// The mapped form (used to find what to redact) agrees.
		if got := string(n.normalizeMap(tc.in)); got != tc.want {
			t.Errorf("normalizeMap(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if len(n.pos) != len(n.out) {
			t.Errorf("normalizeMap(%q): %d positions for %d bytes", tc.in, len(n.pos), len(n.out))
		}
	}
}

func lexAutomaton(t testing.TB, lexicons ...Lexicon) *automaton {
	t.Helper()
	var terms []term
	var n normalizer
	for i, lx := range lexicons {
		ts, err := compileTerms(i, lx, &n)
		if err != nil {
			t.Fatal(err)
		}
		terms = append(terms, ts...)
	}
	a, err := buildAutomaton(terms)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLexiconMatch(t *testing.T) {
	a := lexAutomaton(t,
		Lexicon{Match: "word", Terms: []string{"Project X", "secret", "he"}},
		Lexicon{Match: "substring", Terms: []string{"conf", "she"}},
	)
	for _, tc := range []struct {
		text string
		want []int // lexicons
	}{
		{"nothing to see", nil},
		{"Project X", []int{0}},
		{"about project x.", []int{0}},
		{"(PROJECT X)", []int{0}},
		{"projectx", nil},
		{"subproject x", nil},
		{"project xy", nil},
		{"secrets", nil},
		{"top-secret", []int{0}},
		{"confidential", []int{1}},
		{"ushers", []int{1}},        // "she" inside a word, and "he" only inside it
		{"he said", []int{0}},       // whole word
		{"she said", []int{1}},      // "he" is inside "she": not a whole word
		{"секрет secret", []int{0}}, // next to non-Latin words
		{"日本secret", nil},           // a letter before it
		{"secret日本", nil},
	} {
		var n normalizer
		var hit bitset
		a.scan(n.normalize(tc.text), &hit)
		var want bitset
		for _, w := range tc.want {
			want.set(w)
		}
		if hit != want {
			t.Errorf("scan(%q) = %v, want %v", tc.text, hit[0], want[0])
		}
	}
}

// naiveScan is the reference the automaton is checked against.
func naiveScan(terms []term, text []byte) bitset {
	var hit bitset
	for _, t := range terms {
		for i := 0; i+len(t.text) <= len(text); i++ {
			if bytes.Equal(text[i:i+len(t.text)], t.text) && (!t.whole || wordBounded(text, i, i+len(t.text))) {
				hit.set(t.lexicon)
			}
		}
	}
	return hit
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"partner.example", "partner.example", true},
		{"partner.example", "Partner.Example", true},
		{"partner.example", "xpartner.example", false},
		{"*.partner.example", "a.partner.example", true},
		{"*.partner.example", "a.b.partner.example", true},
		{"*.partner.example", "partner.example", false},
		{"*", "anything", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"*irc*", "irc.example", true},
	} {
		g, err := newGlob(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.match(tc.s); got != tc.want {
			t.Errorf("%q.match(%q) = %v", tc.pattern, tc.s, got)
		}
	}
	j, _ := newJIDGlob("*@irc.example")
	if !j.match(jid.MustParse("nick@irc.example")) || j.match(jid.MustParse("nick@irc.example.org")) {
		t.Error("jid glob")
	}
	d, _ := newJIDGlob("competitor.example")
	if !d.match(jid.MustParse("ceo@competitor.example")) {
		t.Error("domain-only jid glob")
	}
}

func TestWindow(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone data")
	}
	workdays := &window{days: 0b0111110, from: 9 * 60, to: 18 * 60, loc: berlin}
	night := &window{days: 0b0111110, from: 22 * 60, to: 6 * 60, loc: time.UTC}
	for _, tc := range []struct {
		w    *window
		at   string
		want bool
	}{
		{workdays, "2026-11-23T08:00:00Z", true},  // Monday 09:00 Berlin
		{workdays, "2026-11-23T07:59:00Z", false}, // 08:59
		{workdays, "2026-11-23T17:00:00Z", false}, // 18:00 is outside (exclusive)
		{workdays, "2026-11-22T10:00:00Z", false}, // Sunday
		{night, "2026-11-23T23:00:00Z", true},     // Monday night
		{night, "2026-11-24T05:00:00Z", true},     // early Tuesday: Monday's window
		{night, "2026-11-23T05:00:00Z", false},    // early Monday: Sunday has no window
		{night, "2026-11-28T23:00:00Z", false},    // Saturday
	} {
		at, _ := time.Parse(time.RFC3339, tc.at)
		if got := tc.w.contains(at); got != tc.want {
			t.Errorf("window %+v contains %s = %v", tc.w, tc.at, got)
		}
	}
}
