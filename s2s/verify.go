package s2s

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// Certificate errors.
var (
	ErrNoCertificate = errors.New("s2s: the peer presented no certificate")
	ErrCertificate   = errors.New("s2s: the peer's certificate does not verify")
	ErrCertName      = errors.New("s2s: the peer's certificate does not name its domain")
)

var (
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidXmppAddr = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
	oidSRVName  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7}
)

// verifyChain checks the peer's chain (leaf first) against roots. Any
// extended key usage is accepted: many server certificates carry only
// serverAuth although s2s uses them as TLS clients too, and public CAs are
// dropping clientAuth.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	if len(certs) == 0 {
		return ErrNoCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	return nil
}

// verifyName checks that leaf is a certificate for domain under RFC 6125
// as XMPP uses it (RFC 6120 §13.7.1.2): a DNS-ID (with a wildcard only as
// the whole leftmost label), an SRV-ID "_xmpp-server.domain" or an
// XmppAddr equal to the domain. The CN is never used.
func verifyName(leaf *x509.Certificate, domain string) error {
	ascii, err := idna.Lookup.ToASCII(domain)
	if err == nil && leaf.VerifyHostname(ascii) == nil {
		return nil
	}
	for _, n := range otherNames(leaf) {
		switch {
		case n.oid.Equal(oidXmppAddr) && strings.EqualFold(n.value, domain):
			return nil
		case n.oid.Equal(oidSRVName) && (strings.EqualFold(n.value, "_xmpp-server."+domain) ||
			err == nil && strings.EqualFold(n.value, "_xmpp-server."+ascii)):
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrCertName, domain)
}

// verifyPeer is verifyChain and verifyName for domain.
func verifyPeer(certs []*x509.Certificate, domain string, roots *x509.CertPool, now time.Time) error {
	if err := verifyChain(certs, roots, now); err != nil {
		return err
	}
	return verifyName(certs[0], domain)
}

type otherName struct {
	oid   asn1.ObjectIdentifier
	value string
}

// otherNames returns the otherName entries of the subjectAltName
// extension whose value is a string (XmppAddr is a UTF8String, SRVName an
// IA5String). Malformed entries are skipped: they simply match nothing.
func otherNames(c *x509.Certificate) []otherName {
	var out []otherName
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSAN) {
			continue
		}
		var seq asn1.RawValue
		if _, err := asn1.Unmarshal(ext.Value, &seq); err != nil || seq.Tag != asn1.TagSequence {
			return nil
		}
		for rest := seq.Bytes; len(rest) > 0; {
			var gn asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
				return out
			}
			// otherName is [0] IMPLICIT SEQUENCE { type-id, [0] EXPLICIT value }.
			if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 {
				continue
			}
			var oid asn1.ObjectIdentifier
			r, err := asn1.Unmarshal(gn.Bytes, &oid)
			if err != nil {
				continue
			}
			var wrapped asn1.RawValue
			if _, err := asn1.Unmarshal(r, &wrapped); err != nil || wrapped.Class != asn1.ClassContextSpecific || wrapped.Tag != 0 {
				continue
			}
			var inner asn1.RawValue
			if _, err := asn1.Unmarshal(wrapped.Bytes, &inner); err != nil || inner.Class != asn1.ClassUniversal {
				continue
			}
			if inner.Tag == asn1.TagUTF8String || inner.Tag == asn1.TagIA5String {
				out = append(out, otherName{oid: oid, value: string(inner.Bytes)})
			}
		}
	}
	return out
}
