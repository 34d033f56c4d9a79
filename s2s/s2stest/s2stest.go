// Package s2stest helps federation tests: a test certificate authority
// that issues server certificates for domains, and the start of Gatehouse
// servers with federation on loopback.
//
// Only tests import it.
package s2stest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/xmpptest"
)

// CA is a test certificate authority kept in a directory.
type CA struct {
	Dir    string
	File   string // PEM of the CA certificate
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64
}

// NewCA creates a CA in a temporary directory of t.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Gatehouse test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	ca := &CA{Dir: dir, File: filepath.Join(dir, "ca.pem"), cert: cert, key: key, serial: 1}
	writePEM(t, ca.File, "CERTIFICATE", der, 0o644)
	return ca
}

// Cert is an issued certificate and its key, as files.
type Cert struct {
	CertFile, KeyFile string
	Leaf              *x509.Certificate
}

// Options of an issued certificate.
type Options struct {
	// XmppAddr puts the domain in an id-on-xmppAddr otherName instead of
	// a DNS name.
	XmppAddr bool
	// RSA would need another key type; ECDSA P-256 works with Prosody,
	// ejabberd and Go.
}

// Issue creates a certificate for domain (DNS names domain and *.domain,
// both server and client auth).
func (ca *CA) Issue(t testing.TB, domain string, o ...Options) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: domain},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(o) > 0 && o[0].XmppAddr {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: xmppAddrSAN(t, domain)}}
	} else {
		tmpl.DNSNames = []string{domain, "*." + domain}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := Cert{CertFile: filepath.Join(ca.Dir, domain+".crt"), KeyFile: filepath.Join(ca.Dir, domain+".key"), Leaf: leaf}
	writePEM(t, c.CertFile, "CERTIFICATE", der, 0o644)
	writePEM(t, c.KeyFile, "PRIVATE KEY", keyDER, 0o600)
	return c
}

// xmppAddrSAN encodes a subjectAltName holding one id-on-xmppAddr.
func xmppAddrSAN(t testing.TB, domain string) []byte {
	utf8, err := asn1.MarshalWithParams(domain, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: utf8})
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5})
	other, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, value...)})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: other})
	if err != nil {
		t.Fatal(err)
	}
	return san
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

// Federated returns a server option that serves domain with federation on
// (open mode, listeners on 127.0.0.1:0, short timeouts for tests).
func Federated(domain string) xmpptest.Option {
	return func(c *config.Config) {
		c.Hosts = []string{domain}
		c.S2S.Enabled = true
		c.S2S.Listen = []string{"127.0.0.1:0"}
		c.S2S.ListenTLS = []string{"127.0.0.1:0"}
		c.S2S.Mode = config.FederationOpen
		c.S2S.ConnectTimeout = config.Duration(5 * time.Second)
		c.S2S.HandshakeTimeout = config.Duration(5 * time.Second)
		c.S2S.QueueTimeout = config.Duration(10 * time.Second)
	}
}

// WithCert makes the server use cert and trust ca for peers.
func WithCert(ca *CA, cert Cert) xmpptest.Option {
	return func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = cert.CertFile, cert.KeyFile
		c.S2S.CAFile = ca.File
	}
}

// Route points ts's federation at peer's s2s listener for domain; direct
// selects the direct TLS listener.
func Route(t testing.TB, ts, peer *xmpptest.TestServer, direct bool) {
	t.Helper()
	st, dt := peer.S2SAddrs()
	target := st[0]
	if direct {
		target = "tls://" + dt[0]
	}
	if err := ts.SetS2SRoute(peer.Domain, target); err != nil {
		t.Fatal(err)
	}
}
