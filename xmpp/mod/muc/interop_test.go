package muc_test

import (
	"context"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/xmpptest"
)

// python is Debian's interpreter: only it sees the python3-slixmpp package.
const python = "/usr/bin/python3"

// TestSlixmppGroupChat drives the server with slixmpp's own XEP-0045 and
// XEP-0313 plugins: create, configure, join, message, history, kick, ban
// and a room archive query.
func TestSlixmppGroupChat(t *testing.T) {
	if err := exec.Command(python, "-c", "import slixmpp").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s cannot import slixmpp (Debian package python3-slixmpp): %v", python, err)
		}
		t.Skipf("%s cannot import slixmpp (Debian package python3-slixmpp): %v", python, err)
	}
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "secret-pw")
	ts.AddUser(t, "bob", "secret-pw")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "muc_slixmpp.py"),
		"--host", host, "--port", port, "--ca-file", ca, "--domain", ts.Domain,
		"--room", "slix@conference."+ts.Domain, "--password", "secret-pw", "--timeout", "20")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("slixmpp:\n%s", out)
	if err != nil {
		t.Fatalf("slixmpp scenario failed: %v", err)
	}
	for _, step := range []string{`"configured"`, `"message"`, `"history"`, `"kicked"`, `"banned"`, `"archive"`, `"done"`} {
		if !strings.Contains(string(out), `"step": `+step) {
			t.Fatalf("step %s missing", step)
		}
	}
}
