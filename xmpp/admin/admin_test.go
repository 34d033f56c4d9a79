package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

type recorder struct {
	mu      sync.Mutex
	actions []string
	fail    error
}

func (r *recorder) AdminAction(_ context.Context, caller, action, detail string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.actions = append(r.actions, caller+"|"+action+"|"+detail)
	return nil
}

func newTestServer(t *testing.T) (*Server, *recorder) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := New(log)
	rec := &recorder{}
	s.SetAuditor(rec)
	s.Handle("GET /v1/echo/{name}", func(_ context.Context, r *Request) (any, error) {
		return map[string]string{"name": r.PathValue("name"), "q": r.Query("q"), "caller": r.Caller}, nil
	})
	s.Handle("POST /v1/things", func(_ context.Context, r *Request) (any, error) {
		var body struct{ Name string }
		if err := r.Decode(&body); err != nil {
			return nil, err
		}
		switch body.Name {
		case "":
			return nil, errors.New("boom")
		case "missing":
			return nil, ErrNotFound
		case "taken":
			return nil, ErrConflict
		}
		return map[string]string{"made": body.Name}, nil
	})
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s, rec
}

func TestUnixSocket(t *testing.T) {
	s, rec := newTestServer(t)
	// A deep directory whose socket path does not fit sockaddr_un.
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.sock")
	if _, err := s.ListenUnix(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want a 0600 socket", fi.Mode())
	}
	c := NewClient(path)
	ctx := context.Background()
	var echo map[string]string
	if err := c.Do(ctx, http.MethodGet, "/v1/echo/alice?q=1", nil, &echo); err != nil {
		t.Fatal(err)
	}
	if echo["name"] != "alice" || echo["q"] != "1" || !strings.HasPrefix(echo["caller"], "uid ") {
		t.Errorf("echo = %v", echo)
	}
	if len(rec.actions) != 0 {
		t.Errorf("a GET was audited: %v", rec.actions)
	}

	tests := []struct {
		name   string
		status int
		want   error
	}{
		{"widget", 200, nil},
		{"missing", 404, ErrNotFound},
		{"taken", 409, ErrConflict},
		{"", 500, nil},
	}
	for _, tc := range tests {
		err := c.Do(ctx, http.MethodPost, "/v1/things", map[string]string{"Name": tc.name}, nil)
		var ae *APIError
		switch {
		case tc.status == 200 && err != nil:
			t.Errorf("%q: %v", tc.name, err)
		case tc.status != 200 && (!errors.As(err, &ae) || ae.Status != tc.status):
			t.Errorf("%q: error %v, want status %d", tc.name, err, tc.status)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%q: %v is not %v", tc.name, err, tc.want)
		}
	}
	if len(rec.actions) != len(tests) || !strings.Contains(rec.actions[0], `|POST /v1/things|{"Name":"widget"}`) {
		t.Errorf("audit log = %q", rec.actions)
	}
	var ae *APIError
	if err := c.Do(ctx, http.MethodPost, "/v1/things", "not an object", nil); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("bad JSON: %v", err)
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/things", strings.Repeat("x", maxBody+10), nil); !errors.As(err, &ae) || ae.Status != 413 {
		t.Errorf("oversized body: %v", err)
	}

	// An action the audit log cannot take is not carried out.
	rec.fail = errors.New("disk full")
	if err := c.Do(ctx, http.MethodPost, "/v1/things", map[string]string{"Name": "w2"}, nil); !errors.As(err, &ae) || ae.Status != 503 || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("audit failure: %v", err)
	}

	// A second server on the same socket is refused; after shutdown the
	// socket is gone and the client says nobody is running.
	s2, _ := newTestServer(t)
	if _, err := s2.ListenUnix(path); !errors.Is(err, ErrInUse) {
		t.Errorf("second listener: %v, want ErrInUse", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/echo/x", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("after shutdown: %v, want ErrNotRunning", err)
	}
}

// A socket file left by a crashed server is replaced.
func TestStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close() // the file stays, nobody listens: a crash
	s, _ := newTestServer(t)
	if _, err := s.ListenUnix(path); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if err := NewClient(path).Do(context.Background(), http.MethodGet, "/v1/echo/y", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPToken(t *testing.T) {
	s, rec := newTestServer(t)
	if _, err := s.ListenHTTP("127.0.0.1:0", []byte("short")); err == nil {
		t.Fatal("a short token was accepted")
	}
	token := strings.Repeat("k", 40)
	ln, err := s.ListenHTTP("127.0.0.1:0", []byte(token))
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/v1/things"
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer wrong", 401}, {"Basic " + token, 401}, {"Bearer " + token, 200}} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"Name":"x"}`))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("Authorization %q: status %d, want %d", tc.auth, resp.StatusCode, tc.status)
		}
	}
	if len(rec.actions) != 1 || !strings.HasPrefix(rec.actions[0], "token@127.0.0.1:") {
		t.Errorf("audit log = %q", rec.actions)
	}
	if _, err := s.ListenHTTP("0.0.0.0:0", []byte(token)); err == nil {
		t.Error("a non-loopback address was accepted")
	}
}
