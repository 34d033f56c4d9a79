package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/config"
)

func TestInit(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "gatehouse.yaml")
	msg := mustRun(t, "", "init", "chat.example.com", "-o", out, "--federation", "--data-dir", "/srv/gh")
	if !strings.Contains(msg, "wrote "+out) {
		t.Errorf("init said %q", msg)
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatalf("the written file does not load: %v", err)
	}
	if cfg.Hosts[0] != "chat.example.com" || cfg.DataDir != "/srv/gh" || !cfg.S2S.Enabled ||
		cfg.C2S.Listen[0] != "0.0.0.0:5222" || cfg.S2S.ListenTLS[1] != "[::]:5270" || cfg.Upload.Listen != "0.0.0.0:5443" {
		t.Errorf("init config: %+v", cfg)
	}
	// The reference comments of the default survive.
	for _, c := range []string{"# Domains this server hosts", "# Unknown keys are an error", "# Stream management (XEP-0198)"} {
		if !strings.Contains(string(doc), c) {
			t.Errorf("comment %q lost", c)
		}
	}
	if _, err := run(t, "", "init", "chat.example.com", "-o", out); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwrite without --force: %v", err)
	}
	mustRun(t, "", "init", "other.example.com", "-o", out, "--force")
	if cfg, err := config.Load(out); err != nil || cfg.Hosts[0] != "other.example.com" || cfg.S2S.Enabled {
		t.Errorf("after --force: %v %+v", err, cfg)
	}
	if got := mustRun(t, "", "init", "x.example.org", "-o", "-"); !strings.Contains(got, "- x.example.org") {
		t.Errorf("-o - printed:\n%.300s", got)
	}
	for _, bad := range [][]string{{"init", "localhost"}, {"init", "not a domain"}, {"init", "x.example.org", "--cert", "/c.pem"}} {
		if _, err := run(t, "", append(bad, "-o", "-")...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// writeCert writes a self-signed ECDSA certificate for names, valid from
// notBefore to notAfter, and its key.
func writeCert(t *testing.T, dir, name string, names []string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// startDNS runs Debian's dnsmasq on a loopback port, authoritative for
// example.com with only the client SRV record, and returns its address.
func startDNS(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dnsmasq (Debian dnsmasq-base) is missing; .ci/deps.sh installs it")
		}
		t.Skip("dnsmasq not installed (apt-get install dnsmasq-base)")
	}
	// A free port for both UDP and TCP: take a UDP one and check TCP.
	var port int
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = pc.Close()
		if err == nil {
			_ = ln.Close()
			break
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--user="+currentUser(),
		"--pid-file=", "--local=/example.com/", "--log-facility=-",
		"--srv-host=_xmpp-client._tcp.example.com,xmpp.example.com,5222,5,0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by its PID
		_ = cmd.Wait()
	})
	r := resolverAt(addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, srvs, err := r.LookupSRV(ctx, "xmpp-client", "tcp", "example.com")
		cancel()
		if err == nil && len(srvs) == 1 {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq on %s did not answer: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "nobody"
}

func TestDoctor(t *testing.T) {
	dns := startDNS(t)
	dir := t.TempDir()
	now := time.Now()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil { // too open: a finding
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "gatehouse.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	expCert, expKey := writeCert(t, dir, "expired", []string{"example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	wrongCert, wrongKey := writeCert(t, dir, "wrong", []string{"other.example.net"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	soonCert, soonKey := writeCert(t, dir, "soon", []string{"example.com"}, now.Add(-time.Hour), now.Add(3*24*time.Hour))
	base := "hosts: [example.com]\ndata_dir: " + data + "\nc2s:\n  listen: ['127.0.0.1:0']\n  listen_tls: []\ns2s:\n  enabled: true\n  listen: ['127.0.0.1:0']\n  listen_tls: []\nupload:\n  listen: 127.0.0.1:0\n"

	type want struct{ level, check, text string }
	tests := []struct {
		name  string
		cert  string
		key   string
		wants []want
	}{
		{"expired", expCert, expKey, []want{{levelFail, "certificate", "expired on"}}},
		{"wrong name", wrongCert, wrongKey, []want{{levelFail, "certificate", "does not cover example.com"}}},
		{"expiring soon", soonCert, soonKey, []want{{levelWarn, "certificate", "expires in"}}},
		{"key of another certificate", expCert, wrongKey, []want{{levelFail, "certificate", "private key does not match"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := write("c.yaml", base+"tls:\n  cert_file: "+tc.cert+"\n  key_file: "+tc.key+"\n")
			out, err := run(t, "", "-c", cfg, "doctor", "--dns", dns, "-o", "json")
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 1 {
				t.Fatalf("doctor error = %v, want exit status 1", err)
			}
			var got []finding
			if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &got); err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			all := append(tc.wants,
				want{levelOK, "dns", "_xmpp-client._tcp.example.com → xmpp.example.com:5222"},
				want{levelFail, "dns", "no SRV record _xmpp-server._tcp.example.com"},
				want{levelFail, "permissions", "is mode 0755"},
				want{levelFail, "permissions", "gatehouse.db is mode 0644"},
			)
			for _, w := range all {
				found := false
				for _, f := range got {
					if f.Level == w.level && f.Check == w.check && strings.Contains(f.What, w.text) {
						found = true
						if f.Level != levelOK && f.Fix == "" {
							t.Errorf("finding %q has no fix", f.What)
						}
					}
				}
				if !found {
					t.Errorf("no %s %s finding containing %q in:\n%s", w.level, w.check, w.text, out)
				}
			}
		})
	}

	// Fixed up, the same deployment passes (warnings only).
	if err := os.Chmod(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(data, "gatehouse.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := write("ok.yaml", strings.Replace(base, "enabled: true", "enabled: false", 1)+"tls:\n  cert_file: "+soonCert+"\n  key_file: "+soonKey+"\n")
	out, err := run(t, "", "-c", cfg, "doctor", "--dns", dns)
	if err != nil {
		t.Fatalf("doctor on a sound deployment: %v\n%s", err, out)
	}
	if !strings.Contains(out, "OK    dns          _xmpp-client._tcp.example.com") || !strings.Contains(out, "fix: renew it soon") {
		t.Errorf("table output:\n%s", out)
	}
}

// Against a running server: the admin socket answers and the archive the
// server writes verifies.
func TestDoctorLiveServer(t *testing.T) {
	ts, cfg := liveSetup(t)
	if err := os.Chmod(ts.Config.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", "-c", cfg, "doctor")
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	for _, want := range []string{"OK    ports        the server is running", "OK    ports        " + ts.Addr + " answers", "rows verify, head", "WARN  certificate  the certificate is the generated self-signed one", "WARN  dns          localhost is not a public domain"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
}
