// Package slapdtest runs Debian's slapd (OpenLDAP) for tests: a private
// instance on loopback ports with its own CA-signed certificate (ldap://
// with StartTLS and ldaps://), loaded with testdata/directory/example.ldif.
// It is stopped by its PID when the test ends.
package slapdtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"gatehouse/xmpp/config"
)

// Names in the test directory.
const (
	BaseDN    = "dc=example,dc=com"
	ServiceDN = "cn=gatehouse,ou=services,dc=example,dc=com"
	ServicePW = "service-secret"
	rootDN    = "cn=admin,dc=example,dc=com"
	rootPW    = "root-secret"
)

// Server is a running slapd.
type Server struct {
	Dir      string // working directory
	LDAPURL  string // ldap://127.0.0.1:port (StartTLS available)
	LDAPSURL string // ldaps://127.0.0.1:port
	CAFile   string // PEM of the CA that signed slapd's certificate
	Photo    []byte // alice's jpegPhoto
	t        testing.TB
	cmd      *exec.Cmd
	ports    [2]int
}

// Start runs slapd. Without slapd installed the test is skipped, or fails
// when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := "/usr/sbin/slapd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("slapd is missing; .ci/deps.sh installs slapd and ldap-utils")
		}
		t.Skip("slapd not installed (apt-get install slapd)")
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, t: t}
	s.writeTLS()
	for i := range s.ports {
		s.ports[i] = freePort(t)
	}
	s.LDAPURL = fmt.Sprintf("ldap://127.0.0.1:%d", s.ports[0])
	s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", s.ports[1])
	s.writeConfig()
	s.load()
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Config returns a directory configuration for this server (StartTLS).
func (s *Server) Config() config.Directory {
	c := config.Default().Directory
	c.Enabled = true
	c.URL = s.LDAPURL
	c.StartTLS = true
	c.CAFile = s.CAFile
	c.BindDN = ServiceDN
	pw := filepath.Join(s.Dir, "service.pw")
	if err := os.WriteFile(pw, []byte(ServicePW+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	c.BindPasswordFile = pw
	c.BaseDN = BaseDN
	c.DisabledFilter = "(employeeType=disabled)"
	c.SharedRosterGroups = []string{"staff"}
	c.Refresh = config.Duration(time.Hour)
	c.Timeout = config.Duration(5 * time.Second)
	return c
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *Server) writeTLS() {
	t := s.t
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slapdtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(s.Dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("cert.pem", "CERTIFICATE", der)
	write("key.pem", "EC PRIVATE KEY", kd)
	s.CAFile = filepath.Join(s.Dir, "ca.pem")
}

func (s *Server) writeConfig() {
	d := s.Dir
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/cert.pem
TLSCertificateKeyFile %[1]s/key.pem
database mdb
maxsize 104857600
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none
`, d, BaseDN, rootDN, rootPW)
	if err := os.MkdirAll(filepath.Join(d, "db"), 0o700); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "slapd.conf"), []byte(conf), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// testdataDir finds the repository's testdata/directory from this file.
func testdataDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "directory")
}

func (s *Server) load() {
	t := s.t
	tmpl, err := os.ReadFile(filepath.Join(testdataDir(), "example.ldif"))
	if err != nil {
		t.Fatal(err)
	}
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	img.Set(0, 0, color.RGBA{200, 30, 30, 255})
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, img, nil); err != nil {
		t.Fatal(err)
	}
	s.Photo = jb.Bytes()
	ldif := strings.ReplaceAll(string(tmpl), "{{PHOTO}}", base64.StdEncoding.EncodeToString(s.Photo))
	path := filepath.Join(s.Dir, "data.ldif")
	if err := os.WriteFile(path, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/usr/sbin/slapadd", "-f", filepath.Join(s.Dir, "slapd.conf"), "-l", path).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
}

func (s *Server) start() {
	t := s.t
	urls := fmt.Sprintf("ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/", s.ports[0], s.ports[1])
	cmd := exec.Command("/usr/sbin/slapd", "-f", filepath.Join(s.Dir, "slapd.conf"), "-h", urls, "-d", "0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := s.ping(); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("slapd did not come up on %s: %v\n%s", urls, err, out.String())
		}
		select {
		case <-exited:
			t.Fatalf("slapd exited:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ping binds as the service account over StartTLS.
func (s *Server) ping() error {
	c, err := ldap.DialURL(s.LDAPURL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Bind(ServiceDN, ServicePW)
}

// Stop kills slapd (by its PID) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	for range 100 {
		if err := s.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd = nil
}

// Restart starts slapd again on the same ports and data after Stop.
func (s *Server) Restart() {
	s.start()
}

// Modify changes the directory as its administrator: fn gets a bound
// connection.
func (s *Server) Modify(fn func(ctx context.Context, c *ldap.Conn) error) {
	c, err := ldap.DialURL(s.LDAPURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil { // the test's own server
		s.t.Fatal(err)
	}
	if err := c.Bind(rootDN, rootPW); err != nil {
		s.t.Fatal(err)
	}
	if err := fn(context.Background(), c); err != nil {
		s.t.Fatal(err)
	}
}
