package irc_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the transports in their place (docs/architecture.md):
// the component host reaches the server only through the router, and the
// IRC transport only through XEP-0114, as a third-party gateway would, so
// that every stanza it sends crosses the boundary. (It links the router
// package through transports/component, whose host shares the package.)
func TestImports(t *testing.T) {
	bad := map[string][]string{
		"gatehouse/transports/component": {"gatehouse/xmpp/c2s", "gatehouse/s2s", "gatehouse/xmpp/hook", "gatehouse/xmpp/mod",
			"gatehouse/xmpp/server", "gatehouse/policy", "gatehouse/logging/archive", "gatehouse/transports/irc", "gatehouse/transports/privilege"},
		"gatehouse/transports/irc": {"gatehouse/xmpp/c2s", "gatehouse/s2s", "gatehouse/xmpp/hook", "gatehouse/xmpp/mod",
			"gatehouse/xmpp/server", "gatehouse/xmpp/storage", "gatehouse/xmpp/sessions", "gatehouse/policy",
			"gatehouse/logging/archive", "gatehouse/transports/privilege"},
		"gatehouse/transports/privilege": {"gatehouse/xmpp/c2s", "gatehouse/s2s", "gatehouse/xmpp/server", "gatehouse/policy",
			"gatehouse/transports/component", "gatehouse/transports/irc"},
	}
	for pkg, forbidden := range bad {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range forbidden {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
