package s2s_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps federation in its place (docs/architecture.md): it
// reaches the rest of the server only through the router, so no ingress,
// module, policy or storage package may be among its dependencies.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "gatehouse/s2s").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"gatehouse/xmpp/c2s", "gatehouse/xmpp/hook", "gatehouse/xmpp/mod", "gatehouse/xmpp/server",
			"gatehouse/xmpp/storage", "gatehouse/xmpp/sessions", "gatehouse/policy", "gatehouse/transports", "gatehouse/logging/archive"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("s2s depends on %s", dep)
			}
		}
	}
}
