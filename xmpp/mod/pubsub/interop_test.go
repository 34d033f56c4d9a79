package pubsub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// python is Debian's interpreter: only it sees python3-slixmpp.
const python = "/usr/bin/python3"

// TestSlixmppPEP runs two real slixmpp clients: bob's caps ask for tune
// and avatar notifications and he gets alice's; alice's avatar lands in
// her vCard; her XEP-0048 bookmarks show up as XEP-0402 items.
func TestSlixmppPEP(t *testing.T) {
	ci := os.Getenv("CI") == "true"
	if testing.Short() && !ci {
		t.Skip("starts real clients; skipped in -short mode")
	}
	if err := exec.Command(python, "-c", "import slixmpp").Run(); err != nil {
		if ci {
			t.Fatalf("python3-slixmpp missing on CI: %v (install with: bash .ci/deps.sh)", err)
		}
		t.Skipf("python3-slixmpp missing: %v (install with: bash .ci/deps.sh)", err)
	}
	e := newEnv(t)
	e.friends(t, "alice", "bob")
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(e.ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"testdata/slixmpp_pep.py",
		"--alice", "alice@localhost", "--alice-password", "alice pw",
		"--bob", "bob@localhost", "--bob-password", "bob pw",
		"--server-host", host, "--port", port, "--ca-file", ca, "--timeout", "60"}
	if testing.Verbose() {
		args = append(args, "--debug")
	}
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LANG=C.UTF-8"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run() // ends by itself, or is killed by PID when ctx ends
	var result map[string]any
	var events []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(l), &ev) != nil {
			continue
		}
		if _, ok := ev["result"]; ok {
			result = ev
		} else if name, ok := ev["event"].(string); ok {
			events = append(events, name)
		}
	}
	if runErr != nil || result == nil || result["result"] != "ok" {
		t.Fatalf("slixmpp driver: %v, result %v\nstdout:\n%s\nstderr:\n%s", runErr, result, stdout.String(), stderr.String())
	}
	t.Logf("slixmpp events: %v", events)
	for _, want := range []string{"bob_got_tune", "bob_got_avatar", "vcard_photo", "bookmarks_items"} {
		if !strings.Contains(strings.Join(events, " "), want) {
			t.Fatalf("event %s missing; events %v", want, events)
		}
	}
}
