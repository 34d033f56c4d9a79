package policy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPFetcher(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			_, _ = w.Write([]byte("hello"))
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("x", 5000)))
		case "/redirect":
			http.Redirect(w, r, "/small", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	f := NewHTTPFetcher(4096, 5*time.Second, true)
	if b, err := f.Fetch(ctx, srv.URL+"/small"); err != nil || string(b) != "hello" {
		t.Errorf("small: %q %v", b, err)
	}
	if b, err := f.Fetch(ctx, srv.URL+"/redirect"); err != nil || string(b) != "hello" {
		t.Errorf("redirect: %q %v", b, err)
	}
	if _, err := f.Fetch(ctx, srv.URL+"/big"); err == nil || !strings.Contains(err.Error(), "than can be scanned") {
		t.Errorf("big: %v", err)
	}
	if _, err := f.Fetch(ctx, srv.URL+"/missing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing: %v", err)
	}
	// By default the LAN and the server itself are off limits.
	guarded := NewHTTPFetcher(4096, 5*time.Second, false)
	if _, err := guarded.Fetch(ctx, srv.URL+"/small"); !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("loopback link fetched: %v", err)
	}
}

// scan.links needs the server's fetcher; with it, links are scanned.
func TestScanLinksNeedsFetcher(t *testing.T) {
	doc := []byte("version: 1\nscan:\n  enabled: true\n  links: true\n")
	if _, err := Parse(doc, "p.yaml", Options{Scanner: true}); err == nil || !strings.Contains(err.Error(), "policy.scan_links") {
		t.Fatalf("scan.links without a fetcher: %v", err)
	}
	if _, err := Parse(doc, "p.yaml", Options{Scanner: true, LinkFetcher: true}); err != nil {
		t.Fatalf("scan.links with a fetcher: %v", err)
	}
}
