// Package escape implements XEP-0106 JID escaping (version 1.1): how a
// transport turns a name from another network (an IRC nick with a
// backslash, a mail address with '@') into a JID localpart and back.
package escape

import "strings"

// sequences maps each escaped character to its escape.
var sequences = map[rune]string{
	' ': `\20`, '"': `\22`, '&': `\26`, '\'': `\27`, '/': `\2f`,
	':': `\3a`, '<': `\3c`, '>': `\3e`, '@': `\40`, '\\': `\5c`,
}

// unescapes maps each escape (lowercase hex) to its character.
var unescapes = func() map[string]byte {
	m := make(map[string]byte, len(sequences))
	for r, s := range sequences {
		m[s[1:]] = byte(r)
	}
	return m
}()

// isEscape reports whether s starts with one of the ten escape sequences
// (after the backslash).
func isEscape(s string) bool {
	if len(s) < 2 {
		return false
	}
	_, ok := unescapes[strings.ToLower(s[:2])]
	return ok
}

// Local escapes s for use as a JID localpart (XEP-0106 §4.2). A backslash
// is escaped only where it would otherwise read as an escape sequence, so
// names without the ten special characters are unchanged.
func Local(s string) string {
	var b strings.Builder
	for i, r := range s {
		seq, special := sequences[r]
		switch {
		case r == '\\' && !isEscape(s[i+1:]):
			b.WriteRune(r)
		case special:
			b.WriteString(seq)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Unlocal reverses Local (XEP-0106 §4.3): every escape sequence becomes
// its character; other backslashes stay.
func Unlocal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && isEscape(s[i+1:]) {
			b.WriteByte(unescapes[strings.ToLower(s[i+1:i+3])])
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
