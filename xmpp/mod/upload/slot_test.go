package upload

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/config"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// refuseEICAR is a Checker like the policy engine's: it refuses slots
// for .exe names and files that contain a marker.
type refuseEICAR struct{ files int }

func (r *refuseEICAR) CheckSlot(_ context.Context, s Slot) error {
	if len(s.Filename) > 4 && s.Filename[len(s.Filename)-4:] == ".exe" {
		return &Refusal{Reason: "executables may not be shared"}
	}
	return nil
}

func (r *refuseEICAR) CheckFile(_ context.Context, _ Slot, path string) error {
	r.files++
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if bytes.Contains(b, []byte("EICAR")) {
		return &Refusal{Reason: "malware found"}
	}
	return nil
}

func newTestModule(t *testing.T) (*Module, *clock, *httptest.Server) {
	t.Helper()
	cfg := config.Default().Upload
	cfg.Enabled = true
	cfg.SlotLifetime = config.Duration(time.Minute)
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	dir := t.TempDir()
	m, err := Open(context.Background(), Options{Config: cfg, Hosts: []string{"localhost"}, DataDir: dir, Log: log, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(m.Handler())
	t.Cleanup(srv.Close)
	m.SetBaseURL(srv.URL + "/files")
	return m, clk, srv
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func put(t *testing.T, srv *httptest.Server, url string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSlotExpiry(t *testing.T) {
	m, clk, srv := newTestModule(t)
	owner := jid.MustParse("alice@localhost")
	s, err := m.reserve(context.Background(), owner, "a.txt", 3, "")
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute + time.Second)
	if code := put(t, srv, s.URL, []byte("abc")); code != http.StatusForbidden {
		t.Fatalf("PUT after expiry: %d", code)
	}
	s, err = m.reserve(context.Background(), owner, "a.txt", 3, "")
	if err != nil {
		t.Fatal(err)
	}
	clk.add(59 * time.Second)
	if code := put(t, srv, s.URL, []byte("abc")); code != http.StatusCreated {
		t.Fatalf("PUT in time: %d", code)
	}
}

func TestChecker(t *testing.T) {
	m, _, srv := newTestModule(t)
	chk := &refuseEICAR{}
	m.SetChecker(chk)
	owner := jid.MustParse("alice@localhost")
	ctx := context.Background()
	var ref *Refusal
	if _, err := m.reserve(ctx, owner, "setup.exe", 3, ""); !errors.As(err, &ref) || ref.Reason != "executables may not be shared" {
		t.Fatalf("slot for .exe: %v", err)
	}
	s, err := m.reserve(ctx, owner, "doc.txt", 5, "")
	if err != nil {
		t.Fatal(err)
	}
	if code := put(t, srv, s.URL, []byte("EICAR")); code != http.StatusForbidden {
		t.Fatalf("PUT of a refused file: %d", code)
	}
	resp, err := srv.Client().Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || m.Usage("alice@localhost") != 0 || chk.files != 1 {
		t.Fatalf("refused file: GET %d, usage %d, checked %d", resp.StatusCode, m.Usage("alice@localhost"), chk.files)
	}
}

// TestRestartCountsUsage: stored files count against the quota after a
// restart; unfinished uploads are removed.
func TestRestartCountsUsage(t *testing.T) {
	m, _, srv := newTestModule(t)
	owner := jid.MustParse("alice@localhost")
	s, err := m.reserve(context.Background(), owner, "a.txt", 4, "")
	if err != nil {
		t.Fatal(err)
	}
	if code := put(t, srv, s.URL, []byte("abcd")); code != http.StatusCreated {
		t.Fatal(code)
	}
	unfinished := filepath.Join(m.dir, "unfinished")
	if err := os.MkdirAll(unfinished, 0o700); err != nil {
		t.Fatal(err)
	}
	m2, err := Open(context.Background(), Options{Config: m.cfg, DataDir: filepath.Dir(m.dir), Log: m.log})
	if err != nil {
		t.Fatal(err)
	}
	if u := m2.Usage("alice@localhost"); u != 4 {
		t.Fatalf("usage after restart %d", u)
	}
	if _, err := os.Stat(unfinished); !os.IsNotExist(err) {
		t.Fatalf("unfinished upload kept: %v", err)
	}
}

func TestSanitize(t *testing.T) {
	tests := map[string]string{
		"photo.jpg":        "photo.jpg",
		"../../etc/passwd": "passwd",
		`C:\Users\x\a.doc`: "a.doc",
		".htaccess":        "filehtaccess",
		"meta.json":        "filemeta.json",
		"a\x00b\nc":        "a_b_c",
		"":                 "file",
		"..":               "file",
		"Grüße 2026.txt":   "Grüße 2026.txt",
		"invalid\xffutf8":  "invalid_utf8",
	}
	for in, want := range tests {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"a.txt", "../x", "\x00", ".", "Grüße"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := sanitize(s)
		if n == "" || n == "." || n == ".." || n == metaFile || len(n) > 210 || bytes.ContainsAny([]byte(n), "/\\\x00") || n[0] == '.' {
			t.Fatalf("sanitize(%q) = %q", s, n)
		}
	})
}
