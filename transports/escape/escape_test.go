package escape

import (
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

// The examples of XEP-0106 §5 (table 3).
func TestExamples(t *testing.T) {
	cases := []struct{ in, out string }{
		{"space cadet", `space\20cadet`},
		{`call me "ishmael"`, `call\20me\20\22ishmael\22`},
		{"at&t guy", `at\26t\20guy`},
		{"d'artagnan", `d\27artagnan`},
		{"/.fanboy", `\2f.fanboy`},
		{"::foo::", `\3a\3afoo\3a\3a`},
		{"<foo>", `\3cfoo\3e`},
		{"user@host", `user\40host`},
		{`c:\net`, `c\3a\net`},
		{`c:\\net`, `c\3a\\net`},
		{`c:\cool stuff`, `c\3a\cool\20stuff`},
		{`c:\5commas`, `c\3a\5c5commas`},
		{"[nick]^", "[nick]^"},
	}
	for _, tc := range cases {
		if got := Local(tc.in); got != tc.out {
			t.Errorf("Local(%q) = %q, want %q", tc.in, got, tc.out)
		}
		if got := Unlocal(tc.out); got != tc.in {
			t.Errorf("Unlocal(%q) = %q, want %q", tc.out, got, tc.in)
		}
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"space cadet", `c:\5commas`, `a\20b`, `\`, "nick|away", "@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip("names are valid UTF-8 before they are escaped")
		}
		e := Local(s)
		if got := Unlocal(e); got != s {
			t.Fatalf("Unlocal(Local(%q)) = %q via %q", s, got, e)
		}
		// An escaped name never carries a character a localpart forbids.
		for _, r := range `"&'/:<>@ ` {
			for _, c := range e {
				if c == r {
					t.Fatalf("Local(%q) = %q keeps %q", s, e, r)
				}
			}
		}
		if s != "" && len(s) < 200 {
			if _, err := jid.New(e, "example.com", ""); err != nil && isPlainRunes(s) {
				t.Fatalf("Local(%q) = %q is not a localpart: %v", s, e, err)
			}
		}
	})
}

// isPlainRunes: printable ASCII, which PRECIS accepts once escaped.
func isPlainRunes(s string) bool {
	for _, r := range s {
		if r < 0x21 && r != ' ' || r > 0x7e {
			return false
		}
	}
	return true
}
