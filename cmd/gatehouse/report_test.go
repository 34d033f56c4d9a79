package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/config"
)

func TestReportCommand(t *testing.T) {
	cfgFile, dataDir := userSetup(t) // hosts example.org, example.net
	mustRun(t, "correct horse\n", "-c", cfgFile, "user", "add", "alice")
	mustRun(t, "", "-c", cfgFile, "group", "create", "sales")
	mustRun(t, "", "-c", cfgFile, "group", "add", "sales", "alice")
	if out := mustRun(t, "", "-c", cfgFile, "group", "list", "-o", "json"); out != "{\n  \"sales\": [\n    \"alice\"\n  ]\n}\n" {
		t.Errorf("group list -o json: %q", out)
	}

	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	// The CLI has written the archive already (user.add is audited), so
	// records go in at the real time: the archive's clock never goes back.
	now := time.Now().UTC()
	from, to := now.Add(-72*time.Hour).Format(time.DateOnly), now.Add(48*time.Hour).Format(time.DateOnly)
	path := cfg.Archive.Path(dataDir, cfg.Archive.File)
	a, err := archive.Open(context.Background(), archive.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []archive.Direction{archive.Out, archive.Out, archive.In} {
		if _, err := a.Append(context.Background(), &archive.Stanza{Direction: d, Zone: archive.ZoneRemote, Network: "partner.example",
			Account: "alice@example.org", LocalJID: "alice@example.org/x", Peer: "bob@partner.example", PeerJID: "bob@partner.example",
			Kind: "message", Type: "chat", Body: "hello", Verdict: archive.Allow, Raw: "<message/>"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, "", "-c", cfgFile, "report", "--from", from, "--to", to, "-o", "csv")
	for _, want := range []string{"user,alice@example.org,1,2,1,0,0,0", "group,sales,1,2,1,0,0,0", "network,partner.example,1,2,1", "day," + now.Format(time.DateOnly) + ",1,2"} {
		if !strings.Contains(out, want) {
			t.Errorf("csv lacks %q:\n%s", want, out)
		}
	}
	html := filepath.Join(t.TempDir(), "r.html")
	out = mustRun(t, "", "-c", cfgFile, "report", "--from", from, "--to", to, "-o", "html", "--out", html)
	if !strings.Contains(out, "wrote "+html) {
		t.Errorf("report --out said %q", out)
	}
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "alice@example.org") {
		t.Errorf("html file: %v", err)
	}
	if fi, err := os.Stat(html); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("html file mode: %v %v", fi.Mode(), err)
	}
	if out := mustRun(t, "", "-c", cfgFile, "report", "--period", "week"); !strings.Contains(out, "USER") {
		t.Errorf("table:\n%s", out)
	}
	for _, bad := range [][]string{{"--period", "year"}, {"--from", "yesterday"}, {"--from", to, "--to", from}, {"-o", "pdf"}} {
		if _, err := run(t, "", append([]string{"-c", cfgFile, "report"}, bad...)...); err == nil {
			t.Errorf("report %v accepted", bad)
		}
	}

	// Every report run is in the admin log.
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM admin_actions WHERE action = 'archive.report' AND origin = 'cli' AND actor LIKE 'os:%'`).Scan(&n); err != nil || n != 3 {
		t.Errorf("archive.report rows = %d (%v), want 3", n, err)
	}
	for _, action := range []string{"user.add", "group.create", "group.add"} {
		if err := db.QueryRow(`SELECT count(*) FROM admin_actions WHERE action = ?`, action).Scan(&n); err != nil || n != 1 {
			t.Errorf("%s rows = %d (%v), want 1", action, n, err)
		}
	}
}
