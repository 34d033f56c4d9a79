package upload_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/upload"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func setup(t *testing.T) (*xmpptest.TestServer, *xmpptest.Client, *http.Client) {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Upload.Enabled = true
		c.Upload.Listen = "127.0.0.1:0"
		c.Upload.MaxFileSize = 1000
		c.Upload.Quota = 2500
	})
	ts.AddUser(t, "alice", "alice pw")
	alice := ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
	addr := ts.UploadAddr()
	if addr == "" {
		t.Fatal("upload listener not bound")
	}
	// URLs name localhost; only the bound loopback port is dialled.
	hc := &http.Client{Timeout: xmpptest.Timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.Roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	t.Cleanup(hc.CloseIdleConnections)
	return ts, alice, hc
}

func request(t *testing.T, c *xmpptest.Client, id, name string, size int) *stanza.Stanza {
	t.Helper()
	c.Sendf(`<iq type='get' id='%s' to='upload.localhost'><request xmlns='%s' filename='%s' size='%d' content-type='text/plain'/></iq>`, id, upload.NS, name, size)
	return c.Expect(xmpptest.IsIQ(id))
}

func slotURLs(t *testing.T, r *stanza.Stanza) (put, get string) {
	t.Helper()
	s := r.Child(upload.NS, "slot")
	if r.Type != "result" || s == nil {
		t.Fatalf("slot request: %s", r)
	}
	return s.Child(upload.NS, "put").AttrValue("url"), s.Child(upload.NS, "get").AttrValue("url")
}

func do(t *testing.T, hc *http.Client, method, url string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// TestUploadPutGet: a slot, the PUT over HTTPS, the GET of the same
// bytes; the slot cannot be used twice.
func TestUploadPutGet(t *testing.T) {
	ts, alice, hc := setup(t)
	alice.Sendf(`<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("items")); !strings.Contains(r.String(), "upload.localhost") {
		t.Fatalf("server items %s", r)
	}
	alice.Sendf(`<iq type='get' id='info' to='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := alice.Expect(xmpptest.IsIQ("info")).String()
	if !strings.Contains(info, upload.NS) || !strings.Contains(info, "max-file-size") || !strings.Contains(info, ">1000<") {
		t.Fatalf("service info %s", info)
	}

	body := bytes.Repeat([]byte("gatehouse "), 60) // 600 bytes
	put, get := slotURLs(t, request(t, alice, "s1", "notes 1.txt", len(body)))
	if put != get || !strings.HasPrefix(put, "https://localhost:") || !strings.HasSuffix(put, "/notes%201.txt") {
		t.Fatalf("urls %s %s", put, get)
	}
	if code, _, _ := do(t, hc, http.MethodGet, get, nil); code != http.StatusNotFound {
		t.Fatalf("GET before PUT: %d", code)
	}
	if code, msg, _ := do(t, hc, http.MethodPut, put, body[:10]); code != http.StatusBadRequest {
		t.Fatalf("short PUT: %d %s", code, msg)
	}
	if code, msg, _ := do(t, hc, http.MethodPut, put, body); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, msg)
	}
	code, got, h := do(t, hc, http.MethodGet, get, nil)
	if code != http.StatusOK || !bytes.Equal(got, body) || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("GET: %d %q %v", code, got, h)
	}
	if code, _, _ := do(t, hc, http.MethodPut, put, body); code != http.StatusConflict {
		t.Fatalf("second PUT: %d", code)
	}
	if u := ts.Upload().Usage("alice@localhost"); u != int64(len(body)) {
		t.Fatalf("usage %d", u)
	}
	// An unknown token.
	bad := get[:strings.LastIndex(get[:strings.LastIndex(get, "/")], "/")+1] + strings.Repeat("A", 43) + "/notes%201.txt"
	if code, _, _ := do(t, hc, http.MethodGet, bad, nil); code != http.StatusNotFound {
		t.Fatalf("GET of an unknown token: %d", code)
	}
}

// TestUploadLimits: a file over max_file_size is refused with the limit
// in the error; the quota counts stored and reserved bytes.
func TestUploadLimits(t *testing.T) {
	_, alice, hc := setup(t)
	r := request(t, alice, "big", "big.bin", 1001)
	if r.Type != "error" || r.ErrorCondition() != stanza.NotAcceptable {
		t.Fatalf("oversized: %s", r)
	}
	tl := r.Child("", "error").Child(upload.NS, "file-too-large")
	if tl == nil || tl.ChildText(upload.NS, "max-file-size") != "1000" || !strings.Contains(r.String(), "at most 1000 bytes") {
		t.Fatalf("oversized error lacks the limit: %s", r)
	}
	body := bytes.Repeat([]byte("x"), 1000)
	for i := range 2 {
		put, _ := slotURLs(t, request(t, alice, fmt.Sprint("q", i), "f.txt", 1000))
		if code, msg, _ := do(t, hc, http.MethodPut, put, body); code != http.StatusCreated {
			t.Fatalf("PUT %d: %d %s", i, code, msg)
		}
	}
	slotURLs(t, request(t, alice, "q2", "f.txt", 400)) // reserved, not uploaded: 2400 of 2500
	r = request(t, alice, "q3", "f.txt", 101)
	if r.Type != "error" || r.ErrorCondition() != stanza.ResourceConstraint || !strings.Contains(r.String(), "2400 of 2500 bytes") {
		t.Fatalf("over quota: %s", r)
	}
	if r := request(t, alice, "q4", "f.txt", 100); r.Type != "result" {
		t.Fatalf("within quota: %s", r)
	}
}
