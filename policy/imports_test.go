package policy_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package's place in the architecture: the policy
// sees the router's interfaces and stanzas, never storage, the server or
// any ingress (docs/architecture.md).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "gatehouse/policy").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"gatehouse/xmpp/storage", "gatehouse/xmpp/server", "gatehouse/xmpp/c2s",
			"gatehouse/xmpp/hook", "gatehouse/s2s", "gatehouse/transports", "gatehouse/logging/archive"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("policy depends on %s", dep)
			}
		}
	}
}
