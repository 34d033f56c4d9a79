package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/policy/clamdtest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// uploadClient talks HTTPS to the server's upload listener, whatever host
// the slot URLs name, trusting the test CA.
func uploadClient(ts *xmpptest.TestServer) *http.Client {
	addr := ts.UploadAddr()
	return &http.Client{Timeout: xmpptest.Timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.Roots, ServerName: ts.Domain},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// requestSlot asks upload.localhost for a slot (XEP-0363) and returns the
// PUT URL, or the error stanza.
func requestSlot(c *xmpptest.Client, id, name string, size int) (string, *stanza.Stanza) {
	c.Sendf(`<iq to='upload.localhost' type='get' id='%s'><request xmlns='urn:xmpp:http:upload:0' filename='%s' size='%d' content-type='application/octet-stream'/></iq>`, id, name, size)
	r := c.Expect(func(s *stanza.Stanza) bool { return s.ID == id })
	if r.Type == "error" {
		return "", r
	}
	slot := r.Child("urn:xmpp:http:upload:0", "slot")
	if slot == nil {
		return "", r
	}
	return slot.Child("urn:xmpp:http:upload:0", "put").AttrValue("url"), nil
}

func put(t *testing.T, hc *http.Client, url string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestPolicyUploads: uploads to the built-in XEP-0363 service over real
// sockets. A slot for an executable is refused by the file rules; an
// EICAR upload is refused by the real clamd (the manager is told) and
// cannot be fetched; a clean upload passes, and its link, when shared
// outside, is judged by the file's real size (max-1mb).
func TestPolicyUploads(t *testing.T) {
	cd := clamdtest.Start(t)
	e := startPolicyServer(t, examplePolicy, cd.Addr, func(c *config.Config) {
		c.Upload.Enabled = true
		c.Upload.Listen = "127.0.0.1:0"
	})
	alice := online(t, e.ts, "alice")
	boss := online(t, e.ts, "boss")
	hc := uploadClient(e.ts)

	if _, errSt := requestSlot(alice, "exe", "setup.exe", 1000); errSt == nil || errSt.ErrorCondition() != stanza.PolicyViolation ||
		errText(errSt) != "Executable files are not allowed. (rule no-executables)" {
		t.Fatalf("slot for an executable: %v", errSt)
	}

	url, errSt := requestSlot(alice, "eicar", "eicar.bin", len(clamdtest.EICAR()))
	if errSt != nil {
		t.Fatalf("slot: %v", errSt)
	}
	code, body := put(t, hc, url, clamdtest.EICAR())
	if code != http.StatusForbidden || !strings.Contains(body, clamdtest.EICARName) || !strings.Contains(body, "rule virus-scan") {
		t.Fatalf("EICAR upload: %d %q", code, body)
	}
	if res, err := hc.Get(url); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET of the refused upload: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	n := boss.Expect(bodyHas("acted on an upload by alice@localhost"))
	if !strings.Contains(n.Body(), "Malware: "+clamdtest.EICARName) {
		t.Fatalf("manager notice: %q", n.Body())
	}

	clean := bytes.Repeat([]byte("quarterly figures\n"), 100_000) // 1.8 MB
	url, errSt = requestSlot(alice, "clean", "figures.txt", len(clean))
	if errSt != nil {
		t.Fatalf("slot: %v", errSt)
	}
	if code, body := put(t, hc, url, clean); code != http.StatusCreated {
		t.Fatalf("clean upload: %d %q", code, body)
	}
	res, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Equal(got, clean) {
		t.Fatalf("GET of the clean upload: %d, %d bytes", res.StatusCode, len(got))
	}

	// Shared inside: fine. Shared outside: 1.8 MB is over max-1mb.
	alice.Send(fmt.Sprintf(`<message to='boss@localhost' type='chat' id='in'><body>%s</body><x xmlns='jabber:x:oob'><url>%s</url></x></message>`, url, url))
	boss.Expect(func(s *stanza.Stanza) bool { return s.ID == "in" })
	alice.Send(fmt.Sprintf(`<message to='partner@irc.localhost' type='chat' id='out'><body>%s</body><x xmlns='jabber:x:oob'><url>%s</url></x></message>`, url, url))
	if b := alice.Expect(isError("out")); errText(b) != "Files larger than 1 MB may not leave the company. (rule max-1mb)" {
		t.Fatalf("link to the 1.8 MB upload sent outside: %v", b)
	}
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='after'><body>done</body></message>`)
	e.peer.expect(bodyIs("done"))
	e.peer.none(func(s *stanza.Stanza) bool { return s.ID == "out" })

	// A small clean upload shared outside goes through; the archive's
	// file_transfers rows carry what the scanner said about both links.
	small := []byte("minutes of the meeting\n")
	smallURL, errSt := requestSlot(alice, "small", "minutes.txt", len(small))
	if errSt != nil {
		t.Fatalf("slot: %v", errSt)
	}
	if code, body := put(t, hc, smallURL, small); code != http.StatusCreated {
		t.Fatalf("small upload: %d %q", code, body)
	}
	alice.Send(fmt.Sprintf(`<message to='partner@irc.localhost' type='chat' id='out2'><body>%s</body><x xmlns='jabber:x:oob'><url>%s</url></x></message>`, smallURL, smallURL))
	e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "out2" })
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.ts.Config.DataDir, e.ts.Config.Archive.File)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for u, want := range map[string]string{
		url:      "deny max-1mb 1800000 clean (scanned at upload)",
		smallURL: "allow  23 clean (scanned at upload)",
	} {
		var got string
		err := db.QueryRow(`SELECT verdict || ' ' || coalesce(rule, '') || ' ' || coalesce(size_bytes, '') || ' ' || coalesce(scan_result, '')
			FROM file_transfers WHERE url = ? AND direction = 'out'`, u).Scan(&got)
		if err != nil || !strings.HasPrefix(got, strings.Fields(want)[0]) || !strings.HasSuffix(got, "clean (scanned at upload)") {
			t.Errorf("file_transfers row for %s: %q (%v), want like %q", u, got, err, want)
		}
	}
}
