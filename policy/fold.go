package policy

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Text normalisation for keyword matching. Terms and message text go
// through the same function, so what matters is that both sides fold to
// the same bytes, not that the result is pretty:
//
//  1. Unicode NFKC: fullwidth letters, ligatures, mathematical and circled
//     alphanumerics, superscripts become their plain forms.
//  2. Per code point: format characters (zero-width space and joiner, soft
//     hyphen, bidi marks) and combining marks are dropped, because they are
//     invisible or decorative and the classic way to slip a word past a
//     filter ("Pro\u200bject"). Look-alike letters from Cyrillic and Greek
//     and Latin letters with diacritics fold to their ASCII base letter
//     ("Рrојесt" in Cyrillic, "Pröject"), then everything is lowercased.
//  3. Runs of white space become one space, so "Project\n  X" matches the
//     term "Project X".
//
// Punctuation is kept: folding "-" or "." into spaces would make terms such
// as "e-mail" or "v1.2" match text they should not.

// lookalike maps letters that render like an ASCII letter to it. It is the
// subset of Unicode's confusables (UTS #39) that matters for Latin-script
// keywords: Cyrillic and Greek capitals and lower-case letters that look
// like Latin ones, and Latin letters whose diacritics NFKC keeps. Upper-
// and lower-case forms are listed separately because they resemble
// different Latin letters (Greek Η looks like H, η like n).
var lookalike = buildLookalike()

func buildLookalike() map[rune]rune {
	m := map[rune]rune{
		// Cyrillic capitals.
		'А': 'A', 'В': 'B', 'Е': 'E', 'Ѕ': 'S', 'І': 'I', 'Ј': 'J', 'К': 'K',
		'М': 'M', 'Н': 'H', 'О': 'O', 'Р': 'P', 'С': 'C', 'Т': 'T', 'Х': 'X',
		'У': 'Y', 'Ү': 'Y', 'Ԁ': 'D', 'Ԛ': 'Q', 'Ԝ': 'W', 'Ӏ': 'I', 'Һ': 'H',
		// Cyrillic lower case.
		'а': 'a', 'е': 'e', 'ё': 'e', 'о': 'o', 'р': 'p', 'с': 'c', 'у': 'y',
		'х': 'x', 'ѕ': 's', 'і': 'i', 'ї': 'i', 'ј': 'j', 'һ': 'h', 'ԁ': 'd',
		'ԛ': 'q', 'ԝ': 'w', 'ӏ': 'l', 'ү': 'y', 'ɡ': 'g',
		// Greek capitals.
		'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K',
		'Μ': 'M', 'Ν': 'N', 'Ο': 'O', 'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X',
		// Greek lower case.
		'α': 'a', 'ο': 'o', 'ρ': 'p', 'ν': 'v', 'ι': 'i', 'κ': 'k', 'τ': 't',
		'υ': 'u', 'χ': 'x', 'ε': 'e', 'η': 'n', 'ϲ': 'c', 'ϳ': 'j',
		// Latin letters without a canonical decomposition.
		'ı': 'i', 'ł': 'l', 'Ł': 'L', 'ø': 'o', 'Ø': 'O', 'đ': 'd', 'Đ': 'D',
		'ħ': 'h', 'Ħ': 'H', 'ŧ': 't', 'Ŧ': 'T', 'ƀ': 'b', 'ɨ': 'i',
	}
	// Latin-1 Supplement and Latin Extended-A/B letters whose canonical
	// decomposition starts with an ASCII letter: "ö" -> "o".
	for r := rune(0xC0); r <= 0x24F; r++ {
		if _, ok := m[r]; ok {
			continue
		}
		d := norm.NFD.String(string(r))
		if b, size := utf8.DecodeRuneInString(d); size < len(d) && b < utf8.RuneSelf && unicode.IsLetter(b) {
			m[r] = b
		}
	}
	return m
}

// foldRune returns the folded form of r and whether r is kept at all.
func foldRune(r rune) (rune, bool) {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A'), true
		}
		return r, true
	}
	if unicode.In(r, unicode.Cf, unicode.Mn, unicode.Me) {
		return 0, false
	}
	if l, ok := lookalike[r]; ok {
		r = l
	}
	return unicode.ToLower(r), true
}

func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
	}
	return unicode.IsSpace(r)
}

// normalizer holds the scratch buffers of one normalisation; it is pooled
// so matching a message allocates nothing once warm.
type normalizer struct {
	nfkc []byte
	out  []byte
	// pos[i] is the byte offset in the original text of the code point
	// that produced out[i]; filled only by normalizeMap (redaction).
	pos []int
}

// normalize returns the normalised form of s in n's buffer (valid until
// the next call).
func (n *normalizer) normalize(s string) []byte {
	n.out = n.out[:0]
	if isASCII(s) {
		// NFKC is the identity on ASCII: skip it.
		return n.foldASCII(s)
	}
	n.nfkc = norm.NFKC.AppendString(n.nfkc[:0], s)
	return n.foldBytes(n.nfkc)
}

// normalizeMap is normalize with n.pos filled. It normalises code point by
// code point so that every output byte can be traced to its source; this
// differs from normalize only for compatibility sequences that NFKC
// composes across code points (Hangul jamo), and is used only to find what
// to mask.
func (n *normalizer) normalizeMap(s string) []byte {
	n.out = n.out[:0]
	n.pos = n.pos[:0]
	space := true // drop leading space
	var one [utf8.UTFMax]byte
	for i, r := range s {
		k := utf8.EncodeRune(one[:], r)
		n.nfkc = norm.NFKC.Append(n.nfkc[:0], one[:k]...)
		for _, c := range string(n.nfkc) {
			if isSpace(c) {
				if !space {
					n.out = append(n.out, ' ')
					n.pos = append(n.pos, i)
					space = true
				}
				continue
			}
			f, keep := foldRune(c)
			if !keep {
				continue
			}
			before := len(n.out)
			n.out = utf8.AppendRune(n.out, f)
			for range len(n.out) - before {
				n.pos = append(n.pos, i)
			}
			space = false
		}
	}
	if len(n.out) > 0 && n.out[len(n.out)-1] == ' ' {
		n.out = n.out[:len(n.out)-1]
		n.pos = n.pos[:len(n.pos)-1]
	}
	return n.out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// foldASCII is foldBytes for pure ASCII text, without UTF-8 decoding.
func (n *normalizer) foldASCII(s string) []byte {
	space := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			if !space {
				n.out = append(n.out, ' ')
				space = true
			}
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		n.out = append(n.out, c)
		space = false
	}
	if len(n.out) > 0 && n.out[len(n.out)-1] == ' ' {
		n.out = n.out[:len(n.out)-1]
	}
	return n.out
}

func (n *normalizer) foldBytes(b []byte) []byte {
	space := true
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if isSpace(r) {
			if !space {
				n.out = append(n.out, ' ')
				space = true
			}
			continue
		}
		f, keep := foldRune(r)
		if !keep {
			continue
		}
		n.out = utf8.AppendRune(n.out, f)
		space = false
	}
	if len(n.out) > 0 && n.out[len(n.out)-1] == ' ' {
		n.out = n.out[:len(n.out)-1]
	}
	return n.out
}

// Normalize returns the normalised form of s used for keyword matching
// (NFKC, look-alike and case folding, invisible characters dropped, white
// space collapsed). `gatehouse policy test` prints it.
func Normalize(s string) string {
	var n normalizer
	return string(n.normalize(s))
}

// isWordRune reports whether r counts as part of a word for whole-word
// matching.
func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}
