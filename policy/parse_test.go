package policy_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"gatehouse/policy"
)

var opts = policy.Options{Hosts: []string{"localhost"}, Scanner: true}

func TestExampleCompiles(t *testing.T) {
	p, err := policy.Load("../testdata/policy/example.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Version(), "2026-11-23.1@") || len(p.Version()) != len("2026-11-23.1@")+12 {
		t.Fatalf("version %q", p.Version())
	}
	for _, want := range []string{"3 access", "5 content", "2 file rules", "3 lexicons (7 terms)", "1 patterns", "virus scanning on", "disclaimer every 24h0m0s"} {
		if !strings.Contains(p.Summary(), want) {
			t.Errorf("summary %q lacks %q", p.Summary(), want)
		}
	}
	// Without a scanner, the same file is refused.
	if _, err := policy.Load("../testdata/policy/example.yaml", policy.Options{}); err == nil || !strings.Contains(err.Error(), "policy.clamd") {
		t.Fatalf("example without a scanner: %v", err)
	}
}

func TestVersionTracksContent(t *testing.T) {
	a, err := policy.Parse([]byte("version: v1\n"), "a.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Parse([]byte("version: v1\n# edited\n"), "b.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Version() == b.Version() {
		t.Fatalf("an edit without a new label kept version %q", a.Version())
	}
}

// TestParseErrors: every problem names the file, the line and the rule.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		kind error
		want []string // substrings of the error
	}{
		{"empty", "", policy.ErrSyntax, []string{"x.yaml: the policy file is empty"}},
		{"syntax", "version: v1\naccess: [\n", policy.ErrSyntax, []string{"x.yaml:"}},
		{"two documents", "version: v1\n---\nversion: v2\n", policy.ErrSyntax, []string{"x.yaml:2: more than one YAML document"}},
		{"not a mapping", "- a\n- b\n", policy.ErrSyntax, []string{"must be a YAML mapping"}},
		{"no version", "access: []\n", policy.ErrInvalid, []string{"version: a version label is required"}},
		{"unknown key", "version: v1\naccess:\n  - id: a\n    action: deny\n    grups: [x]\n", policy.ErrInvalid,
			[]string{"x.yaml:5: access[0].grups (rule a):", `field grups not found`}},
		{"bad type", "version: v1\nfiles:\n  - id: big\n    max_size: huge\n    action: deny\n", policy.ErrInvalid,
			[]string{"x.yaml:4: files[0].max_size (rule big):"}},
		{"missing id", "version: v1\naccess:\n  - action: deny\n", policy.ErrInvalid, []string{"x.yaml:3: access[0].id: every rule needs an id"}},
		{"duplicate id", "version: v1\naccess:\n  - id: a\n    action: deny\ncontent:\n  - id: a\n    action: allow\n", policy.ErrInvalid,
			[]string{"x.yaml:6: content[0].id (rule a): \"a\" is already the id of access[0]"}},
		{"reserved id", "version: v1\naccess:\n  - id: default\n    action: deny\n", policy.ErrInvalid, []string{"reserved"}},
		{"bad action", "version: v1\naccess:\n  - id: a\n    action: block\n", policy.ErrInvalid,
			[]string{"x.yaml:4: access[0].action (rule a): \"block\" is not allow, deny, flag"}},
		{"redact outside content", "version: v1\naccess:\n  - id: a\n    action: redact\n", policy.ErrInvalid, []string{"redact is only for content rules"}},
		{"unknown lexicon", "version: v1\nlexicons:\n  px: {terms: [Project X]}\ncontent:\n  - id: c\n    lexicons: [projx]\n    action: deny\n", policy.ErrInvalid,
			[]string{"x.yaml:6: content[0].lexicons[0] (rule c): no lexicon \"projx\" (defined: px)"}},
		{"content without match", "version: v1\ncontent:\n  - id: c\n    action: deny\n", policy.ErrInvalid, []string{"needs lexicons or patterns"}},
		{"lexicon in access", "version: v1\nlexicons:\n  px: {terms: [a]}\naccess:\n  - id: a\n    lexicons: [px]\n    action: deny\n", policy.ErrInvalid,
			[]string{"only for content rules"}},
		{"bad regexp", "version: v1\npatterns:\n  p: 'a(b'\n", policy.ErrInvalid, []string{"x.yaml:3: patterns.p: not an RE2 regular expression"}},
		{"regexp matching empty", "version: v1\npatterns:\n  p: 'a*'\n", policy.ErrInvalid, []string{"matches empty text"}},
		{"empty term", "version: v1\nlexicons:\n  px: {terms: [\"\\u200b\"]}\n", policy.ErrInvalid, []string{"empty after normalisation"}},
		{"bad match", "version: v1\nlexicons:\n  px: {match: fuzzy, terms: [a]}\n", policy.ErrInvalid, []string{"lexicons.px.match: \"fuzzy\" is not word or substring"}},
		{"bad direction", "version: v1\naccess:\n  - id: a\n    direction: sideways\n    action: deny\n", policy.ErrInvalid, []string{"x.yaml:4: access[0].direction (rule a)"}},
		{"bad zone", "version: v1\naccess:\n  - id: a\n    zones: [local]\n    action: deny\n", policy.ErrInvalid, []string{"\"local\" is not remote or transport"}},
		{"bad kind", "version: v1\naccess:\n  - id: a\n    kinds: [email]\n    action: deny\n", policy.ErrInvalid, []string{"\"email\" is not one of chat"}},
		{"bad condition", "version: v1\naccess:\n  - id: a\n    condition: nope\n    action: deny\n", policy.ErrInvalid, []string{"\"nope\" is not one of forbidden"}},
		{"notify outside", "version: v1\naccess:\n  - id: a\n    notify: [boss@elsewhere.example]\n    action: deny\n", policy.ErrInvalid,
			[]string{"notices never leave the company"}},
		{"notify compliance without list", "version: v1\naccess:\n  - id: a\n    notify: [compliance]\n    action: deny\n", policy.ErrInvalid,
			[]string{"the policy lists no compliance JIDs"}},
		{"bad jid pattern", "version: v1\naccess:\n  - id: a\n    jids: [\"@x\"]\n    action: deny\n", policy.ErrInvalid, []string{"empty localpart"}},
		{"bad type pattern", "version: v1\nfiles:\n  - id: f\n    types: [pdf]\n    action: deny\n", policy.ErrInvalid, []string{"\"pdf\" is not a media type"}},
		{"limits outside files", "version: v1\naccess:\n  - id: a\n    max_size: 5\n    action: deny\n", policy.ErrInvalid, []string{"only for file rules"}},
		{"bad day", "version: v1\naccess:\n  - id: a\n    time: {days: [someday]}\n    action: deny\n", policy.ErrInvalid, []string{"is not a day"}},
		{"bad time", "version: v1\naccess:\n  - id: a\n    time: {from: '9am'}\n    action: deny\n", policy.ErrInvalid, []string{"is not a time such as"}},
		{"bad zone name", "version: v1\naccess:\n  - id: a\n    time: {location: Mars/Olympus}\n    action: deny\n", policy.ErrInvalid, []string{"is not a time zone"}},
		{"bad period", "version: v1\ndisclaimer: {enabled: true, period: 5s}\n", policy.ErrInvalid, []string{"disclaimer.period: must be at least 1m"}},
		{"bad default", "version: v1\ndefault_access: maybe\n", policy.ErrInvalid, []string{"default_access: \"maybe\""}},
		{"several problems", "version: v1\naccess:\n  - id: A\n    action: deny\n  - id: b\n    action: nope\n", policy.ErrInvalid,
			[]string{"x.yaml:3: access[0].id", "x.yaml:6: access[1].action (rule b)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Parse([]byte(tc.doc), "x.yaml", opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %v does not wrap %v", err, tc.kind)
			}
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not a *policy.Error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := policy.Load(t.TempDir()+"/missing.yaml", opts); !errors.Is(err, policy.ErrRead) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	for _, f := range []string{"bad-syntax.yaml", "bad-rules.yaml"} {
		if _, err := policy.Load("../testdata/policy/"+f, opts); err == nil {
			t.Errorf("%s loaded", f)
		}
	}
}
