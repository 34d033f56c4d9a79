package muc_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the group chat service in its place
// (docs/architecture.md): it reaches connections only through the router,
// and of the other modules it uses only mod/mam.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "gatehouse/xmpp/mod/muc").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "gatehouse/xmpp/mod/") && dep != "gatehouse/xmpp/mod/mam" && dep != "gatehouse/xmpp/mod/muc" {
			t.Errorf("muc depends on module %s", dep)
		}
		for _, bad := range []string{"gatehouse/xmpp/c2s", "gatehouse/s2s", "gatehouse/xmpp/server",
			"gatehouse/policy", "gatehouse/transports", "gatehouse/logging/archive"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("muc depends on %s", dep)
			}
		}
	}
}
