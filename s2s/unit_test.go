package s2s

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mode   string
		allow  []string
		deny   []string
		stored []Entry
		domain string
		want   bool
	}{
		{"open ignores lists", ModeOpen, nil, []string{"x.example"}, nil, "x.example", true},
		{"allowlist empty", ModeAllowlist, nil, nil, nil, "x.example", false},
		{"allowlist listed", ModeAllowlist, []string{"x.example"}, nil, nil, "x.example", true},
		{"allowlist wildcard covers subdomains", ModeAllowlist, []string{"*.example"}, nil, nil, "chat.x.example", true},
		{"wildcard not the domain itself", ModeAllowlist, []string{"*.example"}, nil, nil, "example", false},
		{"nearest wildcard wins", ModeAllowlist, []string{"*.example"}, []string{"*.bad.example"}, nil, "x.bad.example", false},
		{"exact beats wildcard", ModeAllowlist, []string{"x.bad.example"}, []string{"*.bad.example"}, nil, "x.bad.example", true},
		{"denylist unlisted", ModeDenylist, nil, []string{"bad.example"}, nil, "good.example", true},
		{"denylist listed", ModeDenylist, nil, []string{"bad.example"}, nil, "bad.example", false},
		{"stored allow overrides configured deny", ModeDenylist, nil, []string{"bad.example"}, []Entry{{Domain: "bad.example", List: ListAllow}}, "bad.example", true},
		{"stored deny overrides configured allow", ModeAllowlist, []string{"x.example"}, nil, []Entry{{Domain: "x.example", List: ListDeny}}, "x.example", false},
		{"unknown mode is an allowlist", "bogus", nil, nil, nil, "x.example", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPolicy(tc.mode, tc.allow, tc.deny)
			p.SetStored(tc.stored)
			got, why := p.Allowed(tc.domain)
			if got != tc.want {
				t.Fatalf("Allowed(%q) = %v (%s), want %v", tc.domain, got, why, tc.want)
			}
			if !got && !strings.Contains(why, tc.domain) {
				t.Fatalf("reason %q does not name the domain", why)
			}
		})
	}
}

func TestDialbackKey(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cr3tf0rd14lb4ck")
	k := DialbackKey(secret, "example.org", "example.com", "D60000229F")
	if len(k) != 64 || strings.ToLower(k) != k {
		t.Fatalf("key %q: want 64 lowercase hex digits", k)
	}
	for _, other := range []string{
		DialbackKey(secret, "example.net", "example.com", "D60000229F"),
		DialbackKey(secret, "example.org", "example.net", "D60000229F"),
		DialbackKey(secret, "example.org", "example.com", "D60000229G"),
		DialbackKey([]byte("another secret!!"), "example.org", "example.com", "D60000229F"),
		// The separator matters: no shifting of text between the fields.
		DialbackKey(secret, "example.org example.com", "", "D60000229F"),
	} {
		if other == k {
			t.Fatalf("different inputs gave the same key %s", k)
		}
	}
	if !checkDialbackKey(secret, "example.org", "example.com", "D60000229F", " "+k+"\n") {
		t.Fatal("a key with surrounding whitespace is the same key")
	}
	if checkDialbackKey(secret, "example.org", "example.com", "D60000229F", k[:63]) {
		t.Fatal("a truncated key was accepted")
	}
}

func TestDBElement(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                                    string
		el, from, to, id, typ, body, cond, want string
	}{
		{"request", "result", "a.example", "b.example", "", "", "k<&", "",
			`<db:result from='a.example' to='b.example'>k&lt;&amp;</db:result>`},
		{"verdict", "verify", "b.example", "a.example", "i'd", "valid", "", "",
			`<db:verify from='b.example' to='a.example' id='i&#39;d' type='valid'/>`},
		{"error", "result", "b.example", "a.example", "", "error", "", "item-not-found",
			`<db:result from='b.example' to='a.example' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(dbElement(tc.el, tc.from, tc.to, tc.id, tc.typ, tc.body, tc.cond)); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestMergeSRV(t *testing.T) {
	t.Parallel()
	srv := func(target string, port, prio uint16) *net.SRV {
		return &net.SRV{Target: target, Port: port, Priority: prio}
	}
	cases := []struct {
		name             string
		direct, starttls []*net.SRV
		want             []Target
		wantErr          error
	}{
		{"no records: domain on 5269", nil, nil, []Target{{Host: "x.example", Port: 5269}}, nil},
		{"starttls only", nil, []*net.SRV{srv("xmpp.x.example.", 5269, 5)}, []Target{{Host: "xmpp.x.example", Port: 5269}}, nil},
		{"direct first at equal priority",
			[]*net.SRV{srv("tls.x.example.", 5270, 5)}, []*net.SRV{srv("xmpp.x.example.", 5269, 5)},
			[]Target{{Host: "tls.x.example", Port: 5270, DirectTLS: true}, {Host: "xmpp.x.example", Port: 5269}}, nil},
		{"priority wins over direct TLS",
			[]*net.SRV{srv("tls.x.example.", 5270, 10)}, []*net.SRV{srv("xmpp.x.example.", 5269, 5)},
			[]Target{{Host: "xmpp.x.example", Port: 5269}, {Host: "tls.x.example", Port: 5270, DirectTLS: true}}, nil},
		{"service decidedly unavailable", nil, []*net.SRV{srv(".", 0, 0)}, nil, ErrNoService},
		{"dot next to a real record", []*net.SRV{srv(".", 0, 0)}, []*net.SRV{srv("xmpp.x.example.", 5269, 0)},
			[]Target{{Host: "xmpp.x.example", Port: 5269}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mergeSRV("x.example", tc.direct, tc.starttls)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// fakeSRV answers LookupSRV from a table.
type fakeSRV map[string][]*net.SRV

func (f fakeSRV) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	if r, ok := f[key]; ok {
		return key, r, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
}

func TestDNSResolver(t *testing.T) {
	t.Parallel()
	r := NewDNSResolver(fakeSRV{
		"_xmpps-server._tcp.x.example": {{Target: "tls.x.example.", Port: 443, Priority: 1}},
	}, map[string]Target{"static.example": {Host: "10.0.0.1", Port: 5269}})
	ctx := context.Background()
	got, err := r.Resolve(ctx, "x.example")
	if err != nil || len(got) != 1 || got[0] != (Target{Host: "tls.x.example", Port: 443, DirectTLS: true}) {
		t.Fatalf("x.example: %v %v", got, err)
	}
	got, err = r.Resolve(ctx, "static.example")
	if err != nil || len(got) != 1 || got[0].Addr() != "10.0.0.1:5269" {
		t.Fatalf("static.example: %v %v", got, err)
	}
	r.SetRoute("x.example", Target{Host: "127.0.0.1", Port: 1})
	if got, _ := r.Resolve(ctx, "x.example"); got[0].Addr() != "127.0.0.1:1" {
		t.Fatalf("static route not used: %v", got)
	}
	r.SetRoute("x.example", Target{})
	if got, _ := r.Resolve(ctx, "x.example"); got[0].Host != "tls.x.example" {
		t.Fatalf("removed static route still used: %v", got)
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), StoreFile)
	s, err := OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v0, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Another connection (the CLI) writes: the version moves.
	cli, err := OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Set(ctx, "b.example", ListDeny, "spam"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Set(ctx, "a.example", ListAllow, ""); err != nil {
		t.Fatal(err)
	}
	if err := cli.Set(ctx, "b.example", ListAllow, "forgiven"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Set(ctx, "c.example", "maybe", ""); err == nil {
		t.Fatal("an unknown list was accepted")
	}
	cli.Close()
	if v1, _ := s.Version(ctx); v1 == v0 {
		t.Fatal("data_version did not change after another connection wrote")
	}
	got, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Domain != "a.example" || got[1].Domain != "b.example" || got[1].List != ListAllow || got[1].Note != "forgiven" {
		t.Fatalf("entries %+v", got)
	}
	if time.Since(got[0].Added) > time.Minute {
		t.Fatalf("added %v", got[0].Added)
	}
	if ok, err := s.Remove(ctx, "a.example"); !ok || err != nil {
		t.Fatalf("remove: %v %v", ok, err)
	}
	if ok, _ := s.Remove(ctx, "a.example"); ok {
		t.Fatal("removed twice")
	}
}

func TestClientTLSPresentsCertificate(t *testing.T) {
	t.Parallel()
	cert := tls.Certificate{Certificate: [][]byte{{1, 2, 3}}}
	s := &Service{cfg: Config{ServerTLS: func() *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	}}}
	c := s.clientTLS("bücher.example", true)
	if c.ServerName != "xn--bcher-kva.example" || c.MinVersion != tls.VersionTLS13 || len(c.NextProtos) != 1 || c.NextProtos[0] != ALPN {
		t.Fatalf("client config %+v", c)
	}
	got, err := c.GetClientCertificate(nil)
	if err != nil || len(got.Certificate) != 1 {
		t.Fatalf("client certificate %v %v", got, err)
	}
	if sc := s.serverTLS(); sc.ClientAuth != tls.RequestClientCert || sc.NextProtos[0] != ALPN {
		t.Fatalf("server config %+v", sc)
	}
}
