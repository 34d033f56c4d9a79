package main

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/server"
)

// userSetup writes a configuration with two hosts into a fresh directory.
func userSetup(t *testing.T) (cfgFile, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "data")
	cfgFile = filepath.Join(dir, "gatehouse.yaml")
	doc := "hosts: [example.org, example.net]\ndata_dir: " + dataDir + "\n"
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile, dataDir
}

func TestUserCommands(t *testing.T) {
	cfg, dataDir := userSetup(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-a-file-123\nignored second line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		stdin   string
		args    []string
		want    string
		wantErr bool
	}{
		{"add from stdin", "correct horse\n", []string{"user", "add", "Alice"}, "created alice@example.org", false},
		{"add with password file", "", []string{"user", "add", "bob@example.org", "--password-file", pwFile}, "created bob@example.org", false},
		{"add twice", "correct horse\n", []string{"user", "add", "alice"}, `user "alice" already exists`, true},
		{"add short password", "short\n", []string{"user", "add", "carol"}, "at least", true},
		{"add foreign domain", "correct horse\n", []string{"user", "add", "dave@elsewhere.example"}, "not a hosted domain", true},
		{"add invalid name", "correct horse\n", []string{"user", "add", "a b@example.org"}, "not a valid user name", true},
		{"list", "", []string{"user", "list"}, "alice@example.org\nbob@example.org\n", false},
		{"passwd", "battery staple\n", []string{"user", "passwd", "alice"}, "password changed for alice", false},
		{"passwd unknown", "battery staple\n", []string{"user", "passwd", "nobody"}, `no user "nobody"`, true},
		{"delete", "", []string{"user", "delete", "bob"}, "deleted bob", false},
		{"delete unknown", "", []string{"user", "delete", "bob"}, `no user "bob"`, true},
		{"list after delete", "", []string{"user", "list"}, "alice@example.org\n", false},
		{"list as json", "", []string{"user", "list", "-o", "json"}, "[\n  \"alice@example.org\"\n]\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.stdin, append([]string{"-c", cfg}, tc.args...)...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v; output:\n%s", err, tc.wantErr, out)
			}
			got := out
			if err != nil {
				got += err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("output %q does not contain %q", got, tc.want)
			}
		})
	}

	// The new password is what the database verifies; nothing on disk holds
	// the password itself.
	db, err := server.OpenDB(context.Background(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := db.Credentials(context.Background(), "alice")
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !auth.VerifyPassword(creds, "battery staple") || auth.VerifyPassword(creds, "correct horse") {
		t.Fatal("passwd did not replace the credentials")
	}
	// Each change is in the compliance archive's admin log, with who did it.
	adb, err := sql.Open("sqlite3", "file:"+filepath.Join(dataDir, "archive.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer adb.Close()
	for action, want := range map[string]int{"user.add": 2, "user.passwd": 1, "user.delete": 1} {
		var n int
		if err := adb.QueryRow(`SELECT count(*) FROM admin_actions WHERE action = ? AND origin = 'cli' AND actor LIKE 'os:%'`, action).Scan(&n); err != nil || n != want {
			t.Errorf("%s rows in admin_actions = %d (%v), want %d", action, n, err, want)
		}
	}
	for _, pw := range []string{"battery staple", "correct horse", "from-a-file-123"} {
		files, _ := filepath.Glob(filepath.Join(dataDir, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && bytes.Contains(b, []byte(pw)) {
				t.Errorf("%s contains the password %q in plain text", f, pw)
			}
		}
	}
}

// Deleting an account also deletes its message history, which lives in a
// database of its own.
func TestUserDeleteRemovesHistory(t *testing.T) {
	cfgFile, dataDir := userSetup(t)
	mustRun(t, "correct horse\n", "-c", cfgFile, "user", "add", "alice")
	mustRun(t, "correct horse\n", "-c", cfgFile, "user", "add", "bob")

	ctx := context.Background()
	mamCfg := config.Default().MAM
	open := func() *mam.Module {
		m, err := mam.Open(ctx, mam.Options{Config: mamCfg, DataDir: dataDir, Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	for _, u := range []string{"alice", "bob"} {
		_, err := m.Store().Append(ctx, mam.Entry{User: u, Time: time.Now(), Peer: "carol@example.org",
			XML: []byte(`<message xmlns="jabber:client" type="chat"><body>hi</body></message>`)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	mustRun(t, "", "-c", cfgFile, "user", "delete", "alice")

	m = open()
	defer m.Close()
	for u, want := range map[string]int{"alice": 0, "bob": 1} {
		res, err := m.Store().Query(ctx, u, mam.Filter{}, mam.Page{Max: 10})
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != want {
			t.Errorf("%s has %d archived messages after deleting alice, want %d", u, res.Count, want)
		}
	}
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
