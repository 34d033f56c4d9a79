package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/xmpptest"
)

// writeCert writes a fresh self-signed pair for localhost and returns the
// certificate's DER.
func writeCert(t *testing.T, certFile, keyFile, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return der
}

func presented(t *testing.T, addr string) []byte {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: xmpptest.Timeout}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}) //nolint:gosec // comparing the raw certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// TestReloadCertificate: SIGHUP (Server.Reload) makes new connections use
// the re-read certificate, and logins with tls-server-end-point channel
// binding keep working because each connection uses one certificate.
func TestReloadCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, "first")
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile })
	ts.AddUser(t, "alice", "correct horse")
	if got := presented(t, ts.TLSAddr); !bytes.Equal(got, first) {
		t.Fatal("server does not present the configured certificate")
	}
	old := ts.Dial(t, "alice", "correct horse", xmpptest.ClientOptions{Resource: "old"})

	second := writeCert(t, certFile, keyFile, "second")
	ts.Reload(ts.Config)
	if got := presented(t, ts.TLSAddr); !bytes.Equal(got, second) {
		t.Fatal("after reload the server still presents the old certificate")
	}
	old.Ping() // established sessions carry on

	// A broken file keeps the previous certificate.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.Reload(ts.Config)
	if got := presented(t, ts.TLSAddr); !bytes.Equal(got, second) {
		t.Fatal("a bad certificate file replaced the working one")
	}
}
