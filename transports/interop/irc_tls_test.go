package interop

import (
	"context"
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
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/transports/irc"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/xmpptest"
)

// selfSigned writes a certificate and key for the IP host into dir and
// returns a pool that trusts it.
func selfSigned(t *testing.T, dir, host string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(host)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// startNgircdTLS runs ngircd with plain IRC on host:6667 and TLS on
// host:6697 (the DH parameters come from testdata: generating them would
// take ngircd a long while).
func startNgircdTLS(t *testing.T, bin, host string) (plain, secure string, roots *x509.CertPool) {
	dir := t.TempDir()
	certFile, keyFile, roots := selfSigned(t, dir, host)
	dh, err := filepath.Abs("testdata/dh2048.pem")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "ngircd.conf")
	writeFile(t, conf, `[Global]
Name = irc.test
Info = Gatehouse interop test
AdminInfo1 = test
AdminInfo2 = test
AdminEMail = test@irc.test
Listen = `+host+`
Ports = 6667
MotdPhrase = "Gatehouse interop test"
[Limits]
MaxConnectionsIP = 0
[Options]
DNS = no
Ident = no
PAM = no
[SSL]
CertFile = `+certFile+`
KeyFile = `+keyFile+`
DHFile = `+dh+`
Ports = 6697
`)
	p := start(t, "ngircd", dir, bin, "--nodaemon", "--config", conf)
	plain, secure = net.JoinHostPort(host, "6667"), net.JoinHostPort(host, "6697")
	p.waitFor("ngircd to listen on "+secure, func() bool {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: stepTimeout}, "tcp", secure, &tls.Config{RootCAs: roots, ServerName: host})
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	})
	return plain, secure, roots
}

// The IRC transport run on its own (as `gatehouse transport irc` does),
// linked to Gatehouse as an external privileged component, reaching IRC
// over TLS with certificate verification.
func TestIRCTransportStandaloneTLS(t *testing.T) {
	interopTest(t)
	ircBin := requireCmd(t, "ngircd")
	host := loopbackIRC(t)
	plain, secure, roots := startNgircdTLS(t, ircBin, host)
	const secret = "standalone-irc-secret-0123"
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: ircDomain, Secret: secret, Type: "irc",
			Privileges: config.Privileges{Roster: "both"}}}
	})
	ts.AddUser(t, "alice", alicePW)

	ctx, cancel := context.WithCancel(context.Background())
	st, err := irc.OpenStore(ctx, filepath.Join(t.TempDir(), "irc.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.WarnLevel)
	tr, err := irc.New(irc.Config{Domain: ircDomain, Server: ts.ComponentAddrs()[0], Secret: []byte(secret),
		Networks: []irc.Network{{Name: "secure", Address: secure, TLS: true, TLSConfig: &tls.Config{RootCAs: roots, ServerName: host}}},
		Store:    st, PollInterval: 300 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("transport: %v", err)
		}
		_ = st.Close()
	})
	chost := ts.ComponentHost()
	waitUntil(t, "the transport's link", func() bool { return chost.Connected(ircDomain) })

	bobJID := "bob%secure@" + ircDomain
	bob := dialIRC(t, plain, "bob")
	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>`)
	alice.Expect(xmpptest.IsIQ("r0"))
	alice.Sendf(`<iq type='set' id='reg' to='%s'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>
		<field var='nick'><value>alicetls</value></field><field var='contacts'><value>bob</value></field></x></query></iq>`, ircDomain)
	if r := alice.Expect(xmpptest.IsIQ("reg")); r.Type != "result" {
		t.Fatalf("registration: %s", r)
	}
	alice.Expect(rosterPush(bobJID, "both"))
	alice.Send(`<presence/>`)
	alice.Expect(isPresenceFrom("", bobJID))
	alice.Sendf(`<message to='%s' type='chat' id='m1'><body>over tls</body></message>`, bobJID)
	bob.expect("alice's message", func(l string) bool { return ircNick(l) == "alicetls" && strings.HasSuffix(l, "PRIVMSG bob :over tls") })
	// A message longer than an IRC line goes out in parts.
	long := strings.TrimSpace(strings.Repeat("lorem ipsum ", 80)) // 959 bytes
	alice.Sendf(`<message to='%s' type='chat' id='m2'><body>%s END</body></message>`, bobJID, long)
	var got []string
	bob.expect("the last part", func(l string) bool {
		if _, text, ok := strings.Cut(l, "PRIVMSG bob :"); ok {
			got = append(got, text)
		}
		return strings.HasSuffix(l, " END")
	})
	if len(got) != 3 || strings.Join(strings.Fields(strings.Join(got, " ")), " ") != long+" END" {
		t.Errorf("long message arrived as %d parts: %q", len(got), got)
	}
	bob.send("PRIVMSG alicetls :got it")
	alice.Expect(bodyFrom("got it", bobJID))
	if s := tr.Sessions(); len(s) != 1 || !s[0].Connected || s[0].Nick != "alicetls" {
		t.Errorf("sessions %+v", s)
	}

	// Unregistering (XEP-0077 <remove/>) takes the contacts out of the
	// roster and alice off IRC.
	alice.Sendf(`<iq type='set' id='unreg' to='%s'><query xmlns='jabber:iq:register'><remove/></query></iq>`, ircDomain)
	if r := alice.Expect(xmpptest.IsIQ("unreg")); r.Type != "result" {
		t.Fatalf("unregister: %s", r)
	}
	alice.Expect(rosterPush(bobJID, "remove"))
	bob.waitIson("alicetls", false)
	if regs, err := st.Registrations(context.Background(), ""); err != nil || len(regs) != 0 {
		t.Errorf("registrations left: %v %v", regs, err)
	}
}
