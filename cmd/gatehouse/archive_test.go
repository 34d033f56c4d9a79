package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/config"
)

// archiveCLI runs the CLI with args against data dir; it returns stdout
// and stderr separately.
func archiveCLI(t *testing.T, data string, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--data", data}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// archiveFixture writes an archive into a new data directory: old rows of
// alice and carol (2024), new ones of alice (2025), anchored.
func archiveFixture(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	ac := config.Default().Archive
	var now atomic.Int64 // the archive's clock, read by its writer goroutine
	now.Store(time.Date(2024, 1, 10, 9, 0, 0, 0, time.UTC).UnixNano())
	a, err := archive.Open(context.Background(), archive.Options{
		Path: ac.Path(data, ac.File), AnchorPath: ac.Path(data, ac.AnchorFile), Now: func() time.Time { return time.Unix(0, now.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(dir archive.Direction, account, peer, body string) *archive.Stanza {
		from, to := account+"/laptop", peer
		if dir == archive.In {
			from, to = peer, account
		}
		return &archive.Stanza{Direction: dir, Zone: archive.ZoneRemote, Network: strings.SplitN(peer, "@", 2)[1],
			Account: account, LocalJID: account + "/laptop", Peer: peer, PeerJID: peer, Kind: "message", Type: "chat",
			Body: body, Verdict: archive.Allow, Rule: "default", PolicyVersion: "none",
			Raw: fmt.Sprintf(`<message from="%s" to="%s" type="chat"><body>%s</body></message>`, from, to, body)}
	}
	for _, r := range []struct {
		at  time.Time
		rec archive.Record
	}{
		{time.Date(2024, 1, 10, 9, 0, 0, 0, time.UTC), msg(archive.Out, "alice@example.com", "bob@partner.example", "old hello")},
		{time.Date(2024, 1, 11, 9, 0, 0, 0, time.UTC), msg(archive.Out, "carol@example.com", "dan@partner.example", "old contract")},
		{time.Date(2024, 1, 12, 9, 0, 0, 0, time.UTC), msg(archive.In, "carol@example.com", "dan@partner.example", "old reply")},
		{time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC), msg(archive.Out, "alice@example.com", "bob@partner.example", "the merger is on")},
		{time.Date(2025, 6, 1, 9, 1, 0, 0, time.UTC), msg(archive.In, "alice@example.com", "bob@partner.example", "From now on we talk")},
		{time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC), msg(archive.Out, "alice@example.com", "eve@rival.example", "nothing")},
	} {
		now.Store(r.at.UnixNano())
		if _, err := a.Append(context.Background(), r.rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return data
}

func mustCLI(t *testing.T, data string, args ...string) string {
	t.Helper()
	out, errOut, err := archiveCLI(t, data, args...)
	if err != nil {
		t.Fatalf("%v: %v\n%s%s", args, err, out, errOut)
	}
	return out
}

func TestArchiveCLI(t *testing.T) {
	data := archiveFixture(t)
	if out := mustCLI(t, data, "archive", "verify"); !strings.Contains(out, "OK: the chain verifies") || !strings.Contains(out, "rows checked: 6") {
		t.Fatalf("verify: %s", out)
	}

	out := mustCLI(t, data, "archive", "search", "--account", "alice@example.com", "--network", "partner.example")
	if !strings.Contains(out, "old hello") || !strings.Contains(out, "the merger is on") || strings.Contains(out, "nothing") {
		t.Fatalf("search by account and network:\n%s", out)
	}
	out = mustCLI(t, data, "archive", "search", "--text", "merger", "--from", "2025-01-01", "--json")
	if n := strings.Count(out, "\n"); n != 1 || !strings.Contains(out, `"body":"the merger is on"`) || !strings.Contains(out, `"seq":4`) {
		t.Fatalf("full-text search (%d lines):\n%s", n, out)
	}
	out = mustCLI(t, data, "archive", "search", "--peer", "rival.example", "--direction", "out")
	if !strings.Contains(out, "eve@rival.example") || strings.Contains(out, "bob@") {
		t.Fatalf("search by peer domain:\n%s", out)
	}
	if _, _, err := archiveCLI(t, data, "archive", "search", "--from", "last tuesday"); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("bad date: %v", err)
	}

	exp := t.TempDir()
	jsonl := filepath.Join(exp, "all.jsonl")
	mustCLI(t, data, "archive", "export", "--format", "jsonl", "--out", jsonl)
	if b, err := os.ReadFile(jsonl); err != nil || bytes.Count(b, []byte("\n")) != 6 {
		t.Fatalf("jsonl export: %v\n%s", err, b)
	}
	mustCLI(t, data, "archive", "export", "--format", "mbox", "--account", "alice@example.com", "--out", filepath.Join(exp, "mbox"))
	mbox, err := os.ReadFile(filepath.Join(exp, "mbox", "alice@example.com__bob@partner.example.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	// mboxrd: three messages, and the body line starting with "From " is
	// quoted so that it cannot start a fourth.
	if n := bytes.Count(mbox, []byte("\nFrom ")) + 1; !bytes.HasPrefix(mbox, []byte("From ")) || n != 3 {
		t.Fatalf("mbox separators: %d\n%s", n, mbox)
	}
	if !bytes.Contains(mbox, []byte("\n>From now on we talk")) || !bytes.Contains(mbox, []byte("X-Gatehouse-Direction: in")) {
		t.Fatalf("mbox content:\n%s", mbox)
	}
	mustCLI(t, data, "archive", "export", "--format", "eml", "--account", "carol@example.com", "--out", filepath.Join(exp, "eml"))
	emls, _ := filepath.Glob(filepath.Join(exp, "eml", "carol@example.com__dan@partner.example", "*.eml"))
	if len(emls) != 2 {
		t.Fatalf("eml files: %v", emls)
	}

	if out := mustCLI(t, data, "archive", "hold", "add", "--case", "Acme v. Corp", "--account", "carol@example.com", "--reason", "litigation"); !strings.Contains(out, "hold 1 placed") {
		t.Fatalf("hold add: %s", out)
	}
	if out := mustCLI(t, data, "archive", "hold", "list"); !strings.Contains(out, "Acme v. Corp") || !strings.Contains(out, "carol@example.com") {
		t.Fatalf("hold list: %s", out)
	}
	if out := mustCLI(t, data, "archive", "prune", "--before", "2025-01-01", "--dry-run"); !strings.Contains(out, "1 row(s) would be removed, 2 kept under legal hold") {
		t.Fatalf("prune dry run: %s", out)
	}
	if out := mustCLI(t, data, "archive", "prune", "--before", "2025-01-01", "--reason", "retention"); !strings.Contains(out, "removed 1 row(s)") || !strings.Contains(out, "2 kept under legal hold") {
		t.Fatalf("prune: %s", out)
	}
	if out := mustCLI(t, data, "archive", "verify"); !strings.Contains(out, "OK: the chain verifies") || !strings.Contains(out, "pruned: 1 rows in 1 ranges") {
		t.Fatalf("verify after prune: %s", out)
	}
	if out := mustCLI(t, data, "archive", "search", "--from", "2024-01-01", "--to", "2025-01-01"); !strings.Contains(out, "old contract") || strings.Contains(out, "old hello") {
		t.Fatalf("held rows must stay, the others go:\n%s", out)
	}
	mustCLI(t, data, "archive", "hold", "release", "1", "--reason", "settled")
	if out := mustCLI(t, data, "archive", "hold", "list"); strings.Contains(out, "Acme") {
		t.Fatalf("released hold still listed as active: %s", out)
	}
	if out := mustCLI(t, data, "archive", "hold", "list", "--all"); !strings.Contains(out, "released") {
		t.Fatalf("hold list --all: %s", out)
	}
	if _, _, err := archiveCLI(t, data, "archive", "hold", "release", "1"); err == nil || !errors.Is(err, archive.ErrNoHold) {
		t.Fatalf("releasing twice: %v", err)
	}

	// Every review action is on record, with who did it.
	db := openRO(t, data)
	rows, err := db.Query(`SELECT action FROM admin_actions WHERE actor LIKE 'os:%' AND origin = 'cli' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		actions = append(actions, s)
	}
	rows.Close()
	want := "archive.search,archive.search,archive.search,archive.export,archive.export,archive.export,archive.hold.add,archive.prune,archive.search,archive.hold.release"
	if got := strings.Join(actions, ","); got != want {
		t.Fatalf("admin actions:\n got %s\nwant %s", got, want)
	}
	mustCLI(t, data, "archive", "verify")
}

func openRO(t *testing.T, data string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(data, "archive.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// verify reports a modified row, a deleted row and a truncated tail with
// exit status 3, naming the first row affected.
func TestArchiveCLIVerifyDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name string
		sql  []string
		want string
	}{
		{"modified row", []string{`DROP TRIGGER stanzas_no_update`, `UPDATE stanzas SET body = 'nothing to see' WHERE seq = 4`},
			"row 4: altered"},
		{"deleted row", []string{`DROP TRIGGER stanzas_no_delete`, `DROP TRIGGER records_no_delete`,
			`DELETE FROM stanzas WHERE seq = 2`, `DELETE FROM records WHERE seq = 2`}, "row 2: missing"},
		{"truncated tail", []string{`DROP TRIGGER stanzas_no_delete`, `DROP TRIGGER records_no_delete`,
			`DELETE FROM stanzas WHERE seq >= 5`, `DELETE FROM records WHERE seq >= 5`}, "row 6: truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := archiveFixture(t)
			db, err := sql.Open("sqlite3", filepath.Join(data, "archive.db"))
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.sql {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			out, _, err := archiveCLI(t, data, "archive", "verify")
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 3 {
				t.Fatalf("exit %v, want status 3\n%s", err, out)
			}
			if !strings.Contains(out, "FAILED") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q\n%s", err, tc.want, out)
			}
		})
	}
}

func TestArchiveCLIRefusesMissingArchive(t *testing.T) {
	data := t.TempDir()
	if _, _, err := archiveCLI(t, data, "archive", "verify"); err == nil || !strings.Contains(err.Error(), "no compliance archive") {
		t.Fatalf("verify without an archive: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "archive.db")); err == nil {
		t.Fatal("verify created an archive")
	}
}

// Long exports draw a progress bar on standard error; short ones do not.
func TestArchiveCLIExportProgress(t *testing.T) {
	data := t.TempDir()
	ac := config.Default().Archive
	a, err := archive.Open(context.Background(), archive.Options{Path: ac.Path(data, ac.File), SyncNormal: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				body := fmt.Sprintf("message %d of writer %d", i, w)
				rec := &archive.Stanza{Direction: archive.Out, Zone: archive.ZoneRemote, Network: "partner.example",
					Account: "alice@example.com", LocalJID: "alice@example.com/l", Peer: "bob@partner.example", PeerJID: "bob@partner.example",
					Kind: "message", Type: "chat", Body: body, Verdict: archive.Allow, Raw: "<message><body>" + body + "</body></message>"}
				if _, err := a.Append(context.Background(), rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := archiveCLI(t, data, "archive", "export", "--format", "jsonl", "--out", filepath.Join(t.TempDir(), "x.jsonl"))
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "export [") || !strings.Contains(errOut, "100% 1200/1200") || !strings.Contains(errOut, "exported 1200 record(s)") {
		t.Fatalf("no progress bar:\n%s", errOut)
	}
	_, errOut, err = archiveCLI(t, data, "archive", "export", "--quiet", "--format", "jsonl", "--out", filepath.Join(t.TempDir(), "y.jsonl"))
	if err != nil || strings.Contains(errOut, "[") {
		t.Fatalf("--quiet drew a bar (%v):\n%s", err, errOut)
	}
}
