package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"gatehouse/xmpp/auth/throttle"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/xmpptest"
)

// liveSetup starts a real server and writes a configuration that points the
// CLI at its data directory (and so at its admin socket).
func liveSetup(t *testing.T, opts ...xmpptest.Option) (*xmpptest.TestServer, string) {
	t.Helper()
	ts := xmpptest.RunServer(t, opts...)
	cfg := filepath.Join(t.TempDir(), "gatehouse.yaml")
	doc := "data_dir: " + ts.Config.DataDir + "\nc2s:\n  listen: ['" + ts.Addr + "']\n  listen_tls: ['" + ts.TLSAddr + "']\nupload:\n  listen: 127.0.0.1:0\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return ts, cfg
}

func TestAdminStatusAndSessions(t *testing.T) {
	ts, cfg := liveSetup(t)
	ts.AddUser(t, "alice", "correct horse")
	ts.AddUser(t, "bob", "battery staple")
	a := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "laptop"})
	a.Send(`<presence><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='x'/></presence>`)
	a.Ping() // the presence has been processed once the ping is answered
	b := ts.Dial(t, "bob", "battery staple", xmpptest.ClientOptions{Resource: "phone"})
	b.Ping()

	out := mustRun(t, "", "-c", cfg, "status")
	for _, want := range []string{"version", "2 (2 users)", "localhost"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	var rows []server.SessionInfo
	if err := json.Unmarshal([]byte(mustRun(t, "", "-c", cfg, "session", "list", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].JID != "alice@localhost/laptop" || rows[1].JID != "bob@localhost/phone" {
		t.Fatalf("session list = %+v", rows)
	}
	r := rows[0]
	if r.Client != "https://gajim.org" || !r.Available || r.Priority != 5 || !strings.HasPrefix(r.TLS, "TLS 1.") ||
		!strings.HasPrefix(r.Mechanism, "SCRAM-") || !strings.HasPrefix(r.Address, "127.0.0.1:") {
		t.Errorf("alice's session = %+v", r)
	}
	table := mustRun(t, "", "-c", cfg, "session", "list", "--user", "bob")
	if !strings.Contains(table, "bob@localhost/phone") || strings.Contains(table, "alice") || !strings.Contains(table, "IDLE") {
		t.Errorf("session list --user bob:\n%s", table)
	}
	if _, err := run(t, "", "-c", cfg, "session", "list", "--user", "eve@elsewhere.example"); err == nil || !strings.Contains(err.Error(), "not a user of this server") {
		t.Errorf("foreign user: %v", err)
	}

	out = mustRun(t, "", "-c", cfg, "session", "kick", "alice@localhost/laptop", "--reason", "audit")
	if !strings.Contains(out, "kicked alice@localhost/laptop") {
		t.Fatalf("kick: %s", out)
	}
	if cond := a.WaitClosed(); cond != "policy-violation" {
		t.Errorf("kicked client got stream error %q, want policy-violation", cond)
	}
	b.Ping() // bob carries on

	// The kick is in the compliance archive's admin log, read with plain SQL.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(ts.Config.DataDir, ts.Config.Archive.File)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var actor, detail string
	if err := db.QueryRow(`SELECT actor, detail FROM admin_actions WHERE origin = 'admin-api' AND action = 'POST /v1/sessions/kick'`).Scan(&actor, &detail); err != nil {
		t.Fatalf("kick not in admin_actions: %v", err)
	}
	if !strings.HasPrefix(actor, "uid ") || !strings.Contains(detail, "alice@localhost/laptop") {
		t.Errorf("admin_actions row: actor %q detail %q", actor, detail)
	}
	if _, err := run(t, "", "-c", cfg, "session", "kick", "alice"); err == nil || !strings.Contains(err.Error(), "has no session") {
		t.Errorf("kicking a user without sessions: %v", err)
	}
}

func TestAdminUserDeleteWhileRunning(t *testing.T) {
	ts, cfg := liveSetup(t)
	mustRun(t, "correct horse\n", "-c", cfg, "user", "add", "carol")
	c := ts.Dial(t, "carol", "correct horse", xmpptest.ClientOptions{})
	c.Ping()
	out := mustRun(t, "", "-c", cfg, "user", "delete", "carol")
	if !strings.Contains(out, "deleted carol") || !strings.Contains(out, "kicked carol@localhost/") {
		t.Fatalf("delete through the running server: %s", out)
	}
	if cond := c.WaitClosed(); cond != "not-authorized" {
		t.Errorf("deleted user's session got %q, want not-authorized", cond)
	}
	if _, err := ts.TryDial(t, "carol", "correct horse", xmpptest.ClientOptions{}); err == nil {
		t.Fatal("a deleted account could still log in")
	}
	if _, err := run(t, "", "-c", cfg, "user", "delete", "carol"); err == nil || !strings.Contains(err.Error(), `no user "carol"`) {
		t.Errorf("deleting twice: %v", err)
	}
}

func TestAdminReload(t *testing.T) {
	_, cfg := liveSetup(t)
	// xmpptest's server has no config loader, as when embedded: the
	// error says what to do instead.
	if _, err := run(t, "", "-c", cfg, "reload"); err == nil || !strings.Contains(err.Error(), "SIGHUP") {
		t.Errorf("reload without a loader: %v", err)
	}
}

func TestAdminNotRunning(t *testing.T) {
	cfg, _ := userSetup(t)
	for _, args := range [][]string{{"status"}, {"session", "list"}, {"reload"}} {
		_, err := run(t, "", append([]string{"-c", cfg}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "no running server") || !strings.Contains(err.Error(), "gatehouse serve") {
			t.Errorf("%v with no server: %v", args, err)
		}
	}
}

func TestUserLockAndShow(t *testing.T) {
	// Server stopped: the data directory is changed directly.
	cfgFile, _ := userSetup(t)
	mustRun(t, "correct horse\n", "-c", cfgFile, "user", "add", "erin")
	if out := mustRun(t, "", "-c", cfgFile, "user", "lock", "erin"); !strings.Contains(out, "locked erin@example.org") {
		t.Errorf("lock: %s", out)
	}
	out := mustRun(t, "", "-c", cfgFile, "user", "show", "erin")
	for _, want := range []string{"erin@example.org", "locked    true", "(server not running)"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	mustRun(t, "", "-c", cfgFile, "user", "unlock", "erin")
	if _, err := run(t, "", "-c", cfgFile, "user", "lock", "nobody"); err == nil || !strings.Contains(err.Error(), `no user "nobody"`) {
		t.Errorf("lock unknown: %v", err)
	}

	// Server running: locking ends the sessions and refuses logins.
	ts, cfg := liveSetup(t)
	mustRun(t, "correct horse\n", "-c", cfg, "user", "add", "frank")
	c := ts.Dial(t, "frank", "correct horse", xmpptest.ClientOptions{Resource: "desk"})
	c.Ping()
	var d userDetails
	if err := json.Unmarshal([]byte(mustRun(t, "", "-c", cfg, "user", "show", "frank", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if !d.Running || len(d.Sessions) != 1 || d.Sessions[0].JID != "frank@localhost/desk" || d.Locked {
		t.Errorf("show frank = %+v", d)
	}
	out = mustRun(t, "", "-c", cfg, "user", "lock", "frank")
	if !strings.Contains(out, "locked frank@localhost") || !strings.Contains(out, "kicked frank@localhost/desk") {
		t.Errorf("lock through the server: %s", out)
	}
	if cond := c.WaitClosed(); cond != "not-authorized" {
		t.Errorf("locked user's stream error %q", cond)
	}
	_, err := ts.TryDial(t, "frank", "correct horse", xmpptest.ClientOptions{})
	var ae *xmpptest.AuthError
	if !errors.As(err, &ae) || ae.Condition != "account-disabled" {
		t.Errorf("login of a locked account: %v, want account-disabled", err)
	}
	mustRun(t, "", "-c", cfg, "user", "unlock", "frank")
	ts.Dial(t, "frank", "correct horse", xmpptest.ClientOptions{}).Ping()
}

// Password guessing backs off per address and per account; admins see it
// and can lift it.
func TestAuthThrottle(t *testing.T) {
	ts, cfg := liveSetup(t, func(c *config.Config) {
		c.Auth.Throttle = config.AuthThrottle{Free: 2, Base: config.Duration(time.Hour), Max: config.Duration(time.Hour), Forget: config.Duration(time.Hour)}
	})
	ts.AddUser(t, "alice", "correct horse")
	for range 3 {
		if _, err := ts.TryDial(t, "alice", "wrong", xmpptest.ClientOptions{}); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	_, err := ts.TryDial(t, "alice", "correct horse", xmpptest.ClientOptions{})
	var ae *xmpptest.AuthError
	if !errors.As(err, &ae) || ae.Condition != "temporary-auth-failure" {
		t.Fatalf("right password while backing off: %v, want temporary-auth-failure", err)
	}
	var rows []throttle.Entry
	if err := json.Unmarshal([]byte(mustRun(t, "", "-c", cfg, "auth", "blocked", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	keys := map[string]throttle.Entry{}
	for _, r := range rows {
		keys[r.Key] = r
	}
	if ip := keys["ip:127.0.0.1"]; ip.Failures != 3 || ip.Until.IsZero() {
		t.Errorf("ip entry %+v", ip)
	}
	if acct := keys["account:alice"]; acct.Failures != 3 || acct.Until.IsZero() {
		t.Errorf("account entry %+v", acct)
	}
	if out := mustRun(t, "", "-c", cfg, "auth", "blocked"); !strings.Contains(out, "ip:127.0.0.1") || !strings.Contains(out, "WAITS FOR") {
		t.Errorf("table:\n%s", out)
	}
	mustRun(t, "", "-c", cfg, "auth", "unblock", "ip:127.0.0.1")
	// The account still waits.
	if _, err := ts.TryDial(t, "alice", "correct horse", xmpptest.ClientOptions{}); !errors.As(err, &ae) || ae.Condition != "temporary-auth-failure" {
		t.Fatalf("account still backing off: %v", err)
	}
	mustRun(t, "", "-c", cfg, "auth", "unblock", "account:alice")
	mustRun(t, "", "-c", cfg, "auth", "unblock", "ip:127.0.0.1")
	ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{}).Ping()
	if _, err := run(t, "", "-c", cfg, "auth", "unblock", "ip:203.0.113.9"); err == nil {
		t.Error("unblocking an unknown key succeeded")
	}
}

// gatehouse reload against `gatehouse serve` run in-process: the server
// re-reads the file it was started with; a broken file changes nothing.
func TestAdminReloadLive(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gatehouse.yaml")
	example, err := os.ReadFile("../../testdata/policy/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, example, 0o600); err != nil {
		t.Fatal(err)
	}
	doc := "data_dir: " + filepath.Join(dir, "data") + "\nc2s:\n  listen: ['127.0.0.1:0']\n  listen_tls: ['127.0.0.1:0']\nupload:\n  listen: 127.0.0.1:0\nlog:\n  level: warn\n" +
		"policy:\n  file: " + policyFile + "\n  clamd: unix:" + filepath.Join(dir, "no-clamd.sock") + "\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetArgs([]string{"-c", cfg, "serve"})
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := run(t, "", "-c", cfg, "status"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := mustRun(t, "", "-c", cfg, "reload"); !strings.Contains(out, "reloaded: [log level policy TLS certificate]") {
		t.Errorf("reload: %s", out)
	}
	// A policy file that does not compile: the rest reloads, the policy
	// in force stays, and the CLI says so and fails.
	if err := os.WriteFile(policyFile, []byte("rules: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", "-c", cfg, "reload")
	if err == nil || !strings.Contains(out, "not reloaded: policy") || !strings.Contains(out, "reloaded: [log level TLS certificate]") {
		t.Errorf("reload with a broken policy: %v\n%s", err, out)
	}
	if err := os.WriteFile(policyFile, example, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(doc+"no_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The CLI reads the same file, so ask through a config that is valid
	// for the CLI but point the server at the broken one.
	good := filepath.Join(dir, "cli.yaml")
	if err := os.WriteFile(good, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "", "-c", good, "reload")
	if err == nil || !strings.Contains(err.Error(), "nothing was reloaded") || !strings.Contains(err.Error(), "no_such_key") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if _, err := run(t, "", "-c", good, "status"); err != nil {
		t.Errorf("server after a refused reload: %v", err)
	}
}
