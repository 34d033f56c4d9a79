package server_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/policy/clamdtest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
)

// With scan.links, a file behind an outside link is fetched and scanned by
// the real clamd before the link crosses: EICAR is refused, a clean file
// goes through and its archive row says so.
func TestPolicyScansLinks(t *testing.T) {
	cd := clamdtest.Start(t)
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/eicar.com":
			_, _ = w.Write(clamdtest.EICAR())
		case "/report.txt":
			_, _ = w.Write([]byte("quarterly report, nothing to see\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer files.Close()
	src, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	withLinks := strings.Replace(string(src), "scan:\n  enabled: true\n", "scan:\n  enabled: true\n  links: true\n", 1)
	if withLinks == string(src) {
		t.Fatal("example policy has no scan section to extend")
	}
	file := filepath.Join(t.TempDir(), "links.yaml")
	if err := os.WriteFile(file, []byte(withLinks), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startPolicyServer(t, file, cd.Addr, func(c *config.Config) {
		c.Policy.ScanLinks = true
		c.Policy.ScanLinksPrivate = true // the test's file server is on loopback
	})
	alice := online(t, e.ts, "alice")
	link := func(id, url string) string {
		return fmt.Sprintf(`<message to='partner@irc.localhost' type='chat' id='%s'><body>%s</body><x xmlns='jabber:x:oob'><url>%s</url></x></message>`, id, url, url)
	}
	alice.Send(link("bad", files.URL+"/eicar.com"))
	b := alice.Expect(isError("bad"))
	if !strings.Contains(errText(b), clamdtest.EICARName) || !strings.Contains(errText(b), "rule virus-scan") {
		t.Fatalf("EICAR link: %v", b)
	}
	alice.Send(link("good", files.URL+"/report.txt"))
	e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "good" })
	alice.Send(link("gone", files.URL+"/missing"))
	if b := alice.Expect(isError("gone")); !strings.Contains(errText(b), "could not be checked") {
		t.Fatalf("unfetchable link (fail closed): %v", b)
	}
	e.peer.none(func(s *stanza.Stanza) bool { return s.ID == "bad" || s.ID == "gone" })

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.ts.Config.DataDir, e.ts.Config.Archive.File)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for path, want := range map[string]string{"/report.txt": "allow clean", "/eicar.com": "deny infected: " + clamdtest.EICARName} {
		var got string
		if err := db.QueryRow(`SELECT verdict || ' ' || coalesce(scan_result, '') FROM file_transfers WHERE url = ?`, files.URL+path).Scan(&got); err != nil || got != want {
			t.Errorf("file_transfers row for %s: %q (%v), want %q", path, got, err, want)
		}
	}
}
