package interop

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// requirePython ends the test when Debian's python3 cannot import the
// modules (the Debian packages named in pkgs are missing).
func requirePython(t *testing.T, pkgs string, modules ...string) {
	t.Helper()
	code := "import " + strings.Join(modules, ", ")
	if out, err := exec.Command(python, "-c", code).CombinedOutput(); err != nil {
		missingPeer(t, "%s cannot %q (Debian packages %s): %v %s", python, code, pkgs, err, out)
	}
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}

// TestAioxmppMAMPagingAndUpload: python3-aioxmpp reads alice's archive of
// twelve messages from bob in pages of five, forwards (RSM after) and
// backwards (RSM before, starting from the last page), and gets every
// message once, in order, with fin complete only on the final page; then
// it requests an upload slot with aioxmpp.httpupload, PUTs and GETs the
// file with aiohttp, and is refused a slot over the size limit with
// not-acceptable.
func TestAioxmppMAMPagingAndUpload(t *testing.T) {
	interopTest(t)
	requirePython(t, "python3-aioxmpp python3-aiohttp", "aioxmpp", "aiohttp")
	e := newEnv(t)
	bob := e.dial(t, "bob", "desk")
	var all []string
	for i := 1; i <= 12; i++ {
		b := fmt.Sprintf("m%02d", i)
		all = append(all, b)
		bob.Sendf(`<message to='%s' type='chat' id='%s'><body>%s</body></message>`, e.bare("alice"), b, b)
	}
	bob.Ping() // all twelve are stored (offline and in alice's archive)

	p := xmpptest.StartProc(t, "aioxmpp", []string{"HOME=" + t.TempDir()},
		python, xmpptest.InteropScript("aioxmpp_client.py"), "--jid", e.bare("alice")+"/aio",
		"--password", users["alice"], "--port", e.port, "--ca-file", e.ca, "--with", e.bare("bob"),
		"--page", "5", "--upload-service", e.ts.Config.Upload.ServiceDomain(e.ts.Config.Hosts),
		"--too-large", fmt.Sprint(e.ts.Config.Upload.MaxFileSize+1))
	p.Expect("ready", xmpptest.IsEvent("ready"))

	want := map[string][][]string{
		"forward":  {all[0:5], all[5:10], all[10:12]},
		"backward": {all[7:12], all[2:7], all[0:2]},
	}
	for _, dir := range []string{"forward", "backward"} {
		for i, page := range want[dir] {
			ev := p.Expect(dir+" page", xmpptest.IsEvent("page"))
			if ev.Str("dir") != dir {
				t.Fatalf("page %d: direction %q, want %s", i, ev.Str("dir"), dir)
			}
			got := strs(ev["bodies"])
			last := i == len(want[dir])-1
			if strings.Join(got, ",") != strings.Join(page, ",") || ev.Bool("complete") != last {
				t.Fatalf("%s page %d: bodies %v complete=%v, want %v complete=%v", dir, i, got, ev.Bool("complete"), page, last)
			}
			if c, _ := ev["count"].(float64); c != 12 {
				t.Errorf("%s page %d: RSM count %v, want 12", dir, i, ev["count"])
			}
		}
	}
	up := p.Expect("upload", xmpptest.IsEvent("upload"))
	if !strings.HasPrefix(up.Str("get"), "https://localhost:") {
		t.Errorf("GET URL %q", up.Str("get"))
	}
	big := p.Expect("refused slot", xmpptest.IsEvent("too-large"))
	if big.Str("condition") != "not-acceptable" || !strings.Contains(big.Str("text"), fmt.Sprint(e.ts.Config.Upload.MaxFileSize)) {
		t.Errorf("oversized slot refused with %v", big)
	}
	p.Expect("exit", func(ev xmpptest.Event) bool { return ev.Str("result") == "ok" })
}

// TestSlixmppUpload: python3-slixmpp's xep_0363 plugin (with
// python3-aiohttp) finds the upload service by disco, uploads a file and
// sends its URL to bob with an XEP-0066 out-of-band element, the way
// Conversations and Dino share files; bob's client gets the message and
// the URL serves the same bytes.
func TestSlixmppUpload(t *testing.T) {
	interopTest(t)
	requirePython(t, "python3-slixmpp python3-aiohttp", "slixmpp", "aiohttp")
	e := newEnv(t)
	bob := e.online(t, "bob", "desk")
	file := filepath.Join(e.dir, "report 2026.pdf")
	data := bytes.Repeat([]byte("%PDF-1.4 gatehouse upload test\n"), 400)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := xmpptest.StartProc(t, "slixmpp-upload", []string{"HOME=" + t.TempDir(), "SSL_CERT_FILE=" + e.ca},
		python, xmpptest.InteropScript("slixmpp_upload.py"), "--jid", e.bare("alice")+"/up",
		"--password", users["alice"], "--port", e.port, "--ca-file", e.ca, "--file", file, "--to", e.bare("bob"))
	up := p.Expect("uploaded", xmpptest.IsEvent("uploaded"))
	if up.Str("service") != e.ts.Config.Upload.ServiceDomain(e.ts.Config.Hosts) {
		t.Errorf("service found by disco: %q", up.Str("service"))
	}
	if m, _ := up["max"].(float64); int64(m) != e.ts.Config.Upload.MaxFileSize {
		t.Errorf("max-file-size read by the plugin: %v", up["max"])
	}
	m := bob.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() == up.Str("url") })
	if oob := m.Child("jabber:x:oob", "x"); oob == nil || oob.ChildText("jabber:x:oob", "url") != up.Str("url") {
		t.Errorf("message without the out-of-band URL: %s", m)
	}
	p.Expect("exit", func(ev xmpptest.Event) bool { return ev.Str("result") == "ok" })
	hc := &http.Client{Timeout: xmpptest.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ts.Roots}}}
	defer hc.CloseIdleConnections()
	res, err := hc.Get(up.Str("url"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Equal(got, data) || res.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("GET %s: %s %s, %d bytes (want %d)", up.Str("url"), res.Status, res.Header.Get("Content-Type"), len(got), len(data))
	}
}
