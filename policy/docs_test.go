package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gatehouse/policy"
)

// The reference (docs/policy.md) and the example files must stay true:
// every example compiles, every bad example fails as documented.

// TestTestdataPolicies loads every policy file in testdata/policy: the
// bad-*.yaml files must be refused, all others must compile.
func TestTestdataPolicies(t *testing.T) {
	files, err := filepath.Glob("../testdata/policy/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := policy.Load(f, opts)
			if strings.HasPrefix(filepath.Base(f), "bad-") {
				if !errors.Is(err, policy.ErrInvalid) && !errors.Is(err, policy.ErrSyntax) {
					t.Fatalf("a bad example was not refused as invalid: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// docBlocks returns the fenced code blocks of docs/policy.md whose info
// string is exactly lang.
func docBlocks(t *testing.T, lang string) []string {
	t.Helper()
	doc, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	inside := false
	for _, line := range strings.SplitAfter(string(doc), "\n") {
		fence, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "```")
		switch {
		case ok && !inside:
			inside = true
			if fence == lang {
				cur = &strings.Builder{}
			}
		case ok:
			inside = false
			if cur != nil {
				blocks = append(blocks, cur.String())
				cur = nil
			}
		case cur != nil:
			cur.WriteString(line)
		}
	}
	return blocks
}

// docOpts are the options the examples are written for: a server for
// example.com (the examples' compliance and notice addresses).
var docOpts = policy.Options{Hosts: []string{"example.com", "localhost"}, Scanner: true}

// TestDocExamples compiles every ```yaml block of docs/policy.md (blocks
// marked ```yaml skeleton are outlines, not files). A block without a
// version label gets one, so that examples can show one section.
func TestDocExamples(t *testing.T) {
	blocks := docBlocks(t, "yaml")
	if len(blocks) < 6 {
		t.Fatalf("only %d yaml examples found in docs/policy.md", len(blocks))
	}
	for i, b := range blocks {
		doc := b
		if !regexp.MustCompile(`(?m)^version:`).MatchString(doc) {
			doc = "version: doc-example\n" + doc
		}
		if _, err := policy.Parse([]byte(doc), "docs/policy.md example", docOpts); err != nil {
			t.Errorf("example %d of docs/policy.md does not compile:\n%s\n%v", i+1, b, err)
		}
	}
}

// TestDocErrors: the error listing in docs/policy.md is what
// testdata/policy/bad-rules.yaml really produces.
func TestDocErrors(t *testing.T) {
	data, err := os.ReadFile("../testdata/policy/bad-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = policy.Parse(data, "bad-rules.yaml", opts)
	if err == nil {
		t.Fatal("bad-rules.yaml compiled")
	}
	for _, b := range docBlocks(t, "") {
		if strings.HasPrefix(b, "policy: bad-rules.yaml:") {
			if got := err.Error() + "\n"; got != b {
				t.Fatalf("docs/policy.md shows\n%s\nbut the error is\n%s", b, got)
			}
			return
		}
	}
	t.Fatal("docs/policy.md shows no error listing for bad-rules.yaml")
}
