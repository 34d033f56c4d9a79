package s2s_test

import (
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"

	"gatehouse/s2s"
	"gatehouse/s2s/s2stest"
)

func TestVerifyPeer(t *testing.T) {
	t.Parallel()
	ca := s2stest.NewCA(t)
	other := s2stest.NewCA(t)
	roots := x509.NewCertPool()
	pemCA, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(pemCA)
	dns := ca.Issue(t, "example.org").Leaf
	xmppAddr := ca.Issue(t, "xmpp.example", s2stest.Options{XmppAddr: true}).Leaf
	stranger := other.Issue(t, "example.org").Leaf
	cases := []struct {
		name   string
		certs  []*x509.Certificate
		domain string
		want   error
	}{
		{"DNS-ID", []*x509.Certificate{dns}, "example.org", nil},
		{"wildcard DNS-ID", []*x509.Certificate{dns}, "chat.example.org", nil},
		{"wildcard covers one label only", []*x509.Certificate{dns}, "a.chat.example.org", s2s.ErrCertName},
		{"other domain", []*x509.Certificate{dns}, "example.com", s2s.ErrCertName},
		{"XmppAddr", []*x509.Certificate{xmppAddr}, "xmpp.example", nil},
		{"XmppAddr is exact", []*x509.Certificate{xmppAddr}, "sub.xmpp.example", s2s.ErrCertName},
		{"untrusted CA", []*x509.Certificate{stranger}, "example.org", s2s.ErrCertificate},
		{"no certificate", nil, "example.org", s2s.ErrNoCertificate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s2s.VerifyPeer(tc.certs, tc.domain, roots, time.Now())
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := s2s.VerifyPeer([]*x509.Certificate{dns}, "example.org", roots, time.Now().Add(48*time.Hour)); !errors.Is(err, s2s.ErrCertificate) {
		t.Fatalf("expired certificate: %v", err)
	}
}
