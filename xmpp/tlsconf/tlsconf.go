// Package tlsconf builds the server's *tls.Config: it loads the configured
// certificate and key, or generates (once) and reuses a self-signed
// certificate under <data_dir>/tls/, and offers a Reloader that swaps the
// certificate for new connections (on SIGHUP).
//
// The tls.Config it returns enforces the configured minimum version (TLS 1.2
// by default) and announces the ALPN protocol "xmpp-client" (XEP-0368).
//
// This package must not import other gatehouse packages; it knows nothing of
// XMPP beyond the ALPN name.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// Sentinel errors; returned errors wrap one of them.
var (
	// ErrOptions: the Options are inconsistent (only one of CertFile and
	// KeyFile, an unknown MinVersion, no DataDir to generate into, a host
	// that cannot appear in a certificate).
	ErrOptions = errors.New("tlsconf: bad options")
	// ErrLoad: the certificate or key file cannot be read or parsed, or the
	// two do not belong together.
	ErrLoad = errors.New("tlsconf: cannot load certificate")
	// ErrGenerate: the self-signed certificate could not be created.
	ErrGenerate = errors.New("tlsconf: cannot generate certificate")
)

// ALPN is the protocol name announced for direct TLS (XEP-0368).
const ALPN = "xmpp-client"

// Names of the generated files inside <DataDir>/tls/.
const (
	GeneratedDir  = "tls"
	GeneratedCert = "cert.pem"
	GeneratedKey  = "key.pem"
)

// Validity of a generated certificate.
const generatedValidity = 10 // years

// Options says where the certificate comes from.
type Options struct {
	// CertFile (PEM, leaf first, then intermediates) and KeyFile (PEM).
	// Both empty: use a self-signed certificate in <DataDir>/tls/.
	CertFile, KeyFile string
	// DataDir holds the generated certificate; needed only when no files
	// are configured.
	DataDir string
	// Hosts are the served domains the generated certificate must cover.
	Hosts []string
	// MinVersion is "1.2" (also when empty) or "1.3".
	MinVersion string
}

// Load returns a server tls.Config holding the certificate, and the leaf
// certificate (needed for tls-server-end-point channel binding).
//
// With no files configured it generates, on first use, a self-signed ECDSA
// P-256 certificate valid for ten years for every host, "*.host" for each
// host (so conference. and upload. subdomains work), "localhost", 127.0.0.1
// and ::1, stored in <DataDir>/tls/cert.pem and key.pem (directory 0700,
// key 0600). Later calls reuse those files as long as the certificate still
// covers every host and is not about to expire; otherwise a new one is
// generated in their place.
func Load(o Options) (*tls.Config, *x509.Certificate, error) {
	v, err := minVersion(o.MinVersion)
	if err != nil {
		return nil, nil, err
	}
	cert, err := loadCertificate(o)
	if err != nil {
		return nil, nil, err
	}
	cfg := baseConfig(v)
	cfg.Certificates = []tls.Certificate{*cert}
	return cfg, cert.Leaf, nil
}

func minVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%w: min_version %q is not \"1.2\" or \"1.3\"", ErrOptions, s)
}

func baseConfig(v uint16) *tls.Config {
	return &tls.Config{
		MinVersion: v,
		NextProtos: []string{ALPN},
	}
}

// loadCertificate returns the certificate described by o with Leaf set.
func loadCertificate(o Options) (*tls.Certificate, error) {
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		return loadFiles(o.CertFile, o.KeyFile)
	case o.CertFile != "" || o.KeyFile != "":
		return nil, fmt.Errorf("%w: cert_file and key_file must be set together", ErrOptions)
	case o.DataDir == "":
		return nil, fmt.Errorf("%w: no certificate files and no data directory to generate one in", ErrOptions)
	}
	return loadOrGenerate(o.DataDir, o.Hosts)
}

func loadFiles(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The tls error texts never include key material.
		return nil, fmt.Errorf("%w: %s with %s: %w", ErrLoad, certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrLoad, certFile, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// certNames returns the DNS names and IP addresses a generated certificate
// carries for hosts.
func certNames(hosts []string) ([]string, []net.IP, error) {
	var dns []string
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	addDNS := func(n string) {
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		a, err := idna.Lookup.ToASCII(strings.TrimSuffix(h, "."))
		if err != nil || a == "" {
			return nil, nil, fmt.Errorf("%w: host %q cannot be put in a certificate: %v", ErrOptions, h, err)
		}
		addDNS(a)
		addDNS("*." + a)
	}
	addDNS("localhost")
	return dns, ips, nil
}

// covers reports whether leaf is a usable generated certificate for hosts:
// it names all of them and stays valid for at least another day.
func covers(leaf *x509.Certificate, dns []string, ips []net.IP, now time.Time) bool {
	if now.Before(leaf.NotBefore) || now.Add(24*time.Hour).After(leaf.NotAfter) {
		return false
	}
	for _, n := range dns {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func loadOrGenerate(dataDir string, hosts []string) (*tls.Certificate, error) {
	dns, ips, err := certNames(hosts)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, GeneratedDir)
	certFile := filepath.Join(dir, GeneratedCert)
	keyFile := filepath.Join(dir, GeneratedKey)

	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	if certErr == nil && keyErr == nil {
		cert, err := loadFiles(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w (remove %s to have a new one generated)", err, dir)
		}
		if covers(cert.Leaf, dns, ips, time.Now()) {
			return cert, nil
		}
		// Hosts were added or the certificate is expiring: replace it.
	} else if !errors.Is(certErr, fs.ErrNotExist) && certErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, certErr)
	} else if !errors.Is(keyErr, fs.ErrNotExist) && keyErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, keyErr)
	}
	// Neither file, or only one (an interrupted generation), or a stale
	// certificate: generate both.
	certPEM, keyPEM, err := generate(dns, ips, time.Now())
	if err != nil {
		return nil, err
	}
	if err := writeGenerated(dir, certFile, keyFile, certPEM, keyPEM); err != nil {
		return nil, err
	}
	return loadFiles(certFile, keyFile)
}

// generate creates a self-signed ECDSA P-256 server certificate.
func generate(dns []string, ips []net.IP, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	cn := "localhost"
	if len(dns) > 0 {
		cn = dns[0]
	}
	notBefore := now.Add(-time.Hour).UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Gatehouse self-signed"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(generatedValidity, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// writeGenerated stores the pair atomically (temporary file and rename),
// key first, so that a crash leaves either the old pair or a missing cert.
func writeGenerated(dir, certFile, keyFile string, certPEM, keyPEM []byte) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("%w: %w", ErrGenerate, err)
		}
		// MkdirAll is subject to the umask; make the mode exact.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("%w: %w", ErrGenerate, err)
		}
	}
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certFile, certPEM, 0o644)
}

func writeFile(name string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	return nil
}
