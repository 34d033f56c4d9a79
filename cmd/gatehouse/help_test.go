package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every runnable command says what it does and shows an example in its
// --help (the admin CLI's contract, docs/cli.md).
func TestEveryCommandHasHelpAndExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if !c.Runnable() || c.Hidden || c.Name() == "help" || strings.HasPrefix(c.CommandPath(), "gatehouse completion") {
			return
		}
		if c.Short == "" {
			t.Errorf("%s has no short description", c.CommandPath())
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s has no example", c.CommandPath())
		}
	}
	walk(newRoot())
}

func TestCompletion(t *testing.T) {
	out := mustRun(t, "", "completion", "bash")
	if !strings.Contains(out, "__start_gatehouse") {
		t.Errorf("bash completion script:\n%.300s", out)
	}
}
