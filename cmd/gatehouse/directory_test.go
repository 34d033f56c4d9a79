package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/directory/slapdtest"
	"gatehouse/xmpp/xmpptest"
)

// directoryConfig writes a config file for data dir with the directory.
func directoryConfig(t *testing.T, sl *slapdtest.Server, dataDir string) string {
	t.Helper()
	dc := sl.Config()
	doc := map[string]any{"data_dir": dataDir, "directory": dc}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDirectoryCommands(t *testing.T) {
	sl := slapdtest.Start(t)
	cfg := directoryConfig(t, sl, filepath.Join(t.TempDir(), "data"))

	out := mustRun(t, "", "-c", cfg, "directory", "test", "dave")
	for _, want := range []string{"dave@localhost", "uid=dave,ou=people,dc=example,dc=com", "[engineering staff]", "manager     alice", "Dave Developer"} {
		if !strings.Contains(out, want) {
			t.Errorf("directory test lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, "", "-c", cfg, "directory", "test", "nobody"); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Errorf("unknown user: %v", err)
	}

	// Offline sync fills the data directory.
	out = mustRun(t, "", "-c", cfg, "directory", "sync")
	if !strings.Contains(out, "synced 5 users (5 new, 1 locked), 5 groups") {
		t.Errorf("sync: %s", out)
	}
	if out := mustRun(t, "", "-c", cfg, "user", "list"); !strings.Contains(out, "alice@localhost") || !strings.Contains(out, "erin@localhost") {
		t.Errorf("user list after sync:\n%s", out)
	}
	var d userDetails
	if err := json.Unmarshal([]byte(mustRun(t, "", "-c", cfg, "user", "show", "alice", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.Manager != "bob" || len(d.Groups) != 1 || d.Groups[0] != "staff" || d.Contacts != 2 {
		t.Errorf("alice after sync: %+v", d)
	}
	// A second sync changes nothing.
	if out := mustRun(t, "", "-c", cfg, "directory", "sync"); !strings.Contains(out, "(0 new, 1 locked)") || !strings.Contains(out, "0 membership changes), shared roster +0 -0") {
		t.Errorf("second sync: %s", out)
	}

	// With a running server the sync goes through it.
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.Directory = sl.Config() })
	live := directoryConfig(t, sl, ts.Config.DataDir)
	if out := mustRun(t, "", "-c", live, "directory", "sync", "-o", "json"); !strings.Contains(out, `"users": 5`) {
		t.Errorf("sync through the server: %s", out)
	}

	sl.Stop()
	if _, err := run(t, "", "-c", cfg, "directory", "sync"); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("sync with slapd down: %v", err)
	}
}
