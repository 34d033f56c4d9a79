package tlsconf

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func genOpts(t *testing.T, hosts ...string) Options {
	t.Helper()
	return Options{DataDir: filepath.Join(t.TempDir(), "data"), Hosts: hosts}
}

func TestGenerate(t *testing.T) {
	o := genOpts(t, "example.com", "chat.example.org")
	cfg, leaf, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(o.DataDir, "tls")
	for _, c := range []struct {
		path string
		mode fs.FileMode
	}{
		{dir, 0o700 | fs.ModeDir},
		{filepath.Join(dir, "key.pem"), 0o600},
		{filepath.Join(dir, "cert.pem"), 0o644},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("tls dir holds %d entries, want 2 (temporary files left?)", len(entries))
	}

	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", cfg.MinVersion)
	}
	if !slices.Equal(cfg.NextProtos, []string{"xmpp-client"}) {
		t.Errorf("NextProtos %v", cfg.NextProtos)
	}
	if len(cfg.Certificates) != 1 || !bytes.Equal(cfg.Certificates[0].Leaf.Raw, leaf.Raw) {
		t.Fatal("config does not hold the returned leaf")
	}

	wantDNS := []string{"example.com", "*.example.com", "chat.example.org", "*.chat.example.org", "localhost"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNSNames %v, want %v", leaf.DNSNames, wantDNS)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses %v", leaf.IPAddresses)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.IsCA {
		t.Error("generated certificate is a CA")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 3650*24*time.Hour || life > 3654*24*time.Hour {
		t.Errorf("validity %v, want 10 years", life)
	}
	if leaf.Subject.CommonName != "example.com" {
		t.Errorf("CN %q", leaf.Subject.CommonName)
	}
}

func TestGenerateNames(t *testing.T) {
	tests := []struct {
		hosts []string
		dns   []string
		ips   int
	}{
		{nil, []string{"localhost"}, 2},
		{[]string{"localhost"}, []string{"localhost", "*.localhost"}, 2},
		{[]string{"bücher.de"}, []string{"xn--bcher-kva.de", "*.xn--bcher-kva.de", "localhost"}, 2},
		{[]string{"127.0.0.1", "[::1]", "192.0.2.7"}, []string{"localhost"}, 3},
	}
	for _, tc := range tests {
		_, leaf, err := Load(genOpts(t, tc.hosts...))
		if err != nil {
			t.Errorf("%v: %v", tc.hosts, err)
			continue
		}
		if !slices.Equal(leaf.DNSNames, tc.dns) || len(leaf.IPAddresses) != tc.ips {
			t.Errorf("%v: DNS %v IPs %v; want DNS %v and %d IPs", tc.hosts, leaf.DNSNames, leaf.IPAddresses, tc.dns, tc.ips)
		}
	}
}

func TestReuseGenerated(t *testing.T) {
	o := genOpts(t, "example.com")
	_, first, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	keyBefore, err := os.ReadFile(filepath.Join(o.DataDir, "tls", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, second, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Raw, second.Raw) {
		t.Fatal("second Load generated a new certificate")
	}
	keyAfter, _ := os.ReadFile(filepath.Join(o.DataDir, "tls", "key.pem"))
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("key file rewritten")
	}

	// A host the certificate does not name forces a new one.
	o.Hosts = append(o.Hosts, "new.example")
	_, third, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first.Raw, third.Raw) || third.VerifyHostname("new.example") != nil {
		t.Fatal("certificate not regenerated for a new host")
	}
	// Dropping a host keeps the wider certificate.
	o.Hosts = o.Hosts[:1]
	if _, fourth, err := Load(o); err != nil || !bytes.Equal(fourth.Raw, third.Raw) {
		t.Fatalf("certificate replaced after dropping a host (err %v)", err)
	}
}

func TestRegenerateHalfWritten(t *testing.T) {
	o := genOpts(t, "example.com")
	_, first, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(o.DataDir, "tls", "cert.pem")); err != nil {
		t.Fatal(err)
	}
	_, second, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first.Raw, second.Raw) {
		t.Fatal("same certificate without its file")
	}
}

// writePair generates a certificate for names and writes it to dir.
func writePair(t *testing.T, dir, prefix string, names ...string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := generate(names, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, prefix+"cert.pem")
	keyFile = filepath.Join(dir, prefix+"key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c.Leaf
}

func TestConfiguredFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, want := writePair(t, dir, "", "xmpp.example.net")
	dataDir := filepath.Join(dir, "data")
	cfg, leaf, err := Load(Options{CertFile: certFile, KeyFile: keyFile, DataDir: dataDir, Hosts: []string{"example.net"}, MinVersion: "1.3"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf.Raw, want.Raw) {
		t.Fatal("wrong leaf")
	}
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion %x", cfg.MinVersion)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "tls")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a certificate was generated although files are configured")
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writePair(t, dir, "a-", "a.example")
	_, otherKey, _ := writePair(t, dir, "b-", "b.example")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	corrupt := t.TempDir()
	if err := os.MkdirAll(filepath.Join(corrupt, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		if err := os.WriteFile(filepath.Join(corrupt, "tls", f), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		o    Options
		is   []error
		msg  string
	}{
		{"cert only", Options{CertFile: certFile, DataDir: dir}, []error{ErrOptions}, "must be set together"},
		{"key only", Options{KeyFile: keyFile}, []error{ErrOptions}, "must be set together"},
		{"no data dir", Options{}, []error{ErrOptions}, "no data directory"},
		{"min version", Options{CertFile: certFile, KeyFile: keyFile, MinVersion: "1.1"}, []error{ErrOptions}, `"1.1"`},
		{"bad host", Options{DataDir: dir, Hosts: []string{"bad host"}}, []error{ErrOptions}, `"bad host"`},
		{"missing cert", Options{CertFile: missing, KeyFile: keyFile}, []error{ErrLoad, fs.ErrNotExist}, "missing.pem"},
		{"missing key", Options{CertFile: certFile, KeyFile: missing}, []error{ErrLoad, fs.ErrNotExist}, "missing.pem"},
		{"garbage cert", Options{CertFile: garbage, KeyFile: keyFile}, []error{ErrLoad}, "garbage.pem"},
		{"garbage key", Options{CertFile: certFile, KeyFile: garbage}, []error{ErrLoad}, "garbage.pem"},
		{"key mismatch", Options{CertFile: certFile, KeyFile: otherKey}, []error{ErrLoad}, "does not match"},
		{"corrupt generated", Options{DataDir: corrupt}, []error{ErrLoad}, "to have a new one generated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, leaf, err := Load(tc.o)
			if err == nil || cfg != nil || leaf != nil {
				t.Fatalf("got %v, %v, %v", cfg, leaf, err)
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("%v does not wrap %v", err, target)
				}
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%q does not mention %q", err, tc.msg)
			}
			if _, err := NewReloader(tc.o); err == nil {
				t.Error("NewReloader accepted the same options")
			}
		})
	}
}

// serve runs a TLS server on 127.0.0.1:0 that completes handshakes until
// the test ends. Handshake results are sent on the returned channel.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 16)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, cfg)
			results <- tc.HandshakeContext(context.Background())
			tc.Close()
		}
	}()
	return ln.Addr().String(), results
}

// dial handshakes with addr, trusting only root, and returns the state.
func dial(addr, serverName string, root *x509.Certificate, maxVersion uint16, alpn ...string) (tls.ConnectionState, error) {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: serverName, NextProtos: alpn, MaxVersion: maxVersion}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

func TestHandshakeWithGeneratedCert(t *testing.T) {
	cfg, leaf, err := Load(genOpts(t, "example.com"))
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serve(t, cfg)
	tests := []struct {
		serverName string
		alpn       []string
		ok         bool
	}{
		{"localhost", nil, true},
		{"example.com", []string{"xmpp-client"}, true},
		{"conference.example.com", nil, true},
		{"upload.example.com", []string{"xmpp-client"}, true},
		{"127.0.0.1", nil, true},
		{"::1", nil, true},
		{"example.org", nil, false},
		{"a.b.example.com", nil, false},
	}
	for _, tc := range tests {
		st, err := dial(addr, tc.serverName, leaf, 0, tc.alpn...)
		serverErr := <-results
		if !tc.ok {
			if err == nil {
				t.Errorf("%s: handshake verified, want failure", tc.serverName)
			}
			continue
		}
		if err != nil || serverErr != nil {
			t.Errorf("%s: client %v, server %v", tc.serverName, err, serverErr)
			continue
		}
		if !bytes.Equal(st.PeerCertificates[0].Raw, leaf.Raw) {
			t.Errorf("%s: server presented another certificate", tc.serverName)
		}
		if len(tc.alpn) > 0 && st.NegotiatedProtocol != "xmpp-client" {
			t.Errorf("%s: ALPN %q", tc.serverName, st.NegotiatedProtocol)
		}
	}
}

func TestMinVersionEnforced(t *testing.T) {
	o := genOpts(t, "example.com")
	o.MinVersion = "1.3"
	cfg, leaf, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serve(t, cfg)
	if _, err := dial(addr, "example.com", leaf, tls.VersionTLS12); err == nil {
		t.Error("TLS 1.2 client accepted by a 1.3-only server")
	}
	if err := <-results; err == nil {
		t.Error("server completed a TLS 1.2 handshake")
	}
	st, err := dial(addr, "example.com", leaf, 0)
	if err != nil || <-results != nil || st.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3 handshake: %v, version %x", err, st.Version)
	}
}

func TestReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := writePair(t, dir, "", "example.com")
	r, err := NewReloader(Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if r.Config() != r.Config() || r.Config().GetCertificate == nil || r.Config().MinVersion != tls.VersionTLS12 {
		t.Fatal("Config is not one stable GetCertificate config")
	}
	addrResults := func(addr string, results <-chan error) func(*x509.Certificate) *x509.Certificate {
		return func(root *x509.Certificate) *x509.Certificate {
			t.Helper()
			st, err := dial(addr, "example.com", root, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-results; err != nil {
				t.Fatal(err)
			}
			return st.PeerCertificates[0]
		}
	}
	addr, results := serve(t, r.Config())
	presented := addrResults(addr, results)
	if got := presented(first); !bytes.Equal(got.Raw, first.Raw) {
		t.Fatal("first certificate not presented")
	}
	cfg1, leaf1 := r.Current()
	if !bytes.Equal(leaf1.Raw, first.Raw) || !bytes.Equal(r.Leaf().Raw, first.Raw) || len(cfg1.Certificates) != 1 {
		t.Fatal("Current/Leaf disagree with the first certificate")
	}

	// Replace the files and reload: new connections get the new one.
	_, _, second := writePair(t, dir, "", "example.com")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := presented(second); !bytes.Equal(got.Raw, second.Raw) {
		t.Fatal("reloaded certificate not presented")
	}
	cfg2, leaf2 := r.Current()
	if !bytes.Equal(leaf2.Raw, second.Raw) || cfg2 == cfg1 {
		t.Fatal("Current not updated")
	}
	// A config taken from Current keeps presenting its own certificate.
	oldAddr, oldResults := serve(t, cfg1)
	if got := addrResults(oldAddr, oldResults)(first); !bytes.Equal(got.Raw, first.Raw) {
		t.Fatal("Current config changed its certificate")
	}

	// A broken file keeps the last good certificate.
	if err := os.WriteFile(certFile, []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); !errors.Is(err, ErrLoad) {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if got := presented(second); !bytes.Equal(got.Raw, second.Raw) {
		t.Fatal("failed reload dropped the certificate")
	}
}

func TestReloaderGenerated(t *testing.T) {
	o := genOpts(t, "example.com")
	r, err := NewReloader(o)
	if err != nil {
		t.Fatal(err)
	}
	_, leaf, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf.Raw, r.Leaf().Raw) {
		t.Fatal("Load and NewReloader disagree on the generated certificate")
	}
	if err := r.Reload(); err != nil || !bytes.Equal(r.Leaf().Raw, leaf.Raw) {
		t.Fatalf("Reload changed the generated certificate (err %v)", err)
	}
}

func TestReloaderConcurrent(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writePair(t, dir, "", "example.com")
	r, err := NewReloader(Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			if err := r.Reload(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		c, err := r.GetCertificate(nil)
		if err != nil || c == nil || c.Leaf == nil {
			t.Fatal("no certificate")
		}
		if _, leaf := r.Current(); leaf == nil {
			t.Fatal("no leaf")
		}
	}
	<-done
}
