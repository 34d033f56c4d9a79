package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestPolicyDocTranscript runs the `gatehouse policy test` example of
// docs/policy.md against the example policy and compares the whole output
// with the one printed there (only the policy file's path differs).
func TestPolicyDocTranscript(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	const prompt = "$ gatehouse -c gatehouse.yaml policy test "
	_, after, ok := strings.Cut(string(doc), "```\n"+prompt)
	if !ok {
		t.Fatal("docs/policy.md has no `policy test` transcript")
	}
	block, _, _ := strings.Cut(after, "```\n")
	cmdLine, want, _ := strings.Cut(block, "\n")
	args, err := splitArgs(cmdLine)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cliSetup(t)
	mustRun(t, "", "-c", cfg, "user", "set-manager", "alice", "boss")
	got := mustRun(t, "", append([]string{"-c", cfg, "policy", "test"}, args...)...)
	path := regexp.MustCompile(`(?m)^(policy: .*) \(.*\)$`)
	got, want = path.ReplaceAllString(got, "$1 (FILE)"), path.ReplaceAllString(want, "$1 (FILE)")
	if got != want {
		t.Fatalf("docs/policy.md shows\n%s\nthe command prints\n%s", want, got)
	}
}

// splitArgs splits a command line at spaces outside double quotes.
func splitArgs(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case r == ' ' && !quoted:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if quoted {
		return nil, os.ErrInvalid
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}
