// Package auth is Gatehouse's SASL server: SCRAM-SHA-1/256/512 with and
// without channel binding (RFC 5802, RFC 7677, RFC 9266) and PLAIN
// (RFC 4616) for clients that cannot do better. Only SCRAM verifiers are
// ever stored (see Credentials); PLAIN is checked against them.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // SCRAM-SHA-1 is still required by RFC 6120 clients.
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/text/secure/precis"
)

// ErrNoUser is wrapped by a Lookup when the account does not exist.
var ErrNoUser = errors.New("auth: no such user")

// Lookup returns the stored verifiers of an account. It wraps ErrNoUser for
// unknown accounts so the exchange can continue with a fake salt and not
// reveal which accounts exist.
type Lookup func(ctx context.Context, username string) (Credentials, error)

// MinIterations is the lowest PBKDF2 count accepted for new verifiers
// (RFC 7677 §4 recommends at least 4096).
const MinIterations = 4096

// hashFunc describes one SCRAM hash.
type hashFunc struct {
	name string // "SHA-1"
	new  func() hash.Hash
	size int
}

var (
	hSHA1   = hashFunc{"SHA-1", sha1.New, sha1.Size}
	hSHA256 = hashFunc{"SHA-256", sha256.New, sha256.Size}
	hSHA512 = hashFunc{"SHA-512", sha512.New, sha512.Size}
)

func (c *Credentials) key(h hashFunc) *SCRAMKey {
	switch h.name {
	case "SHA-1":
		return &c.SHA1
	case "SHA-256":
		return &c.SHA256
	default:
		return &c.SHA512
	}
}

// NormalizePassword prepares a password with the PRECIS OpaqueString
// profile (RFC 8265 §4.2), which XMPP uses in place of SASLprep.
func NormalizePassword(password string) (string, error) {
	p, err := precis.OpaqueString.String(password)
	if err != nil {
		return "", fmt.Errorf("auth: password: %w", err)
	}
	return p, nil
}

// NewCredentials derives verifiers for every supported hash from password,
// each with its own random salt.
func NewCredentials(password string, iter int) (Credentials, error) {
	if iter < MinIterations {
		iter = MinIterations
	}
	p, err := NormalizePassword(password)
	if err != nil {
		return Credentials{}, err
	}
	var c Credentials
	for _, h := range []hashFunc{hSHA1, hSHA256, hSHA512} {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return Credentials{}, fmt.Errorf("auth: salt: %w", err)
		}
		k, err := deriveKey(h, p, salt, iter)
		if err != nil {
			return Credentials{}, err
		}
		*c.key(h) = k
	}
	return c, nil
}

func deriveKey(h hashFunc, password string, salt []byte, iter int) (SCRAMKey, error) {
	salted, err := pbkdf2.Key(h.new, password, salt, iter, h.size)
	if err != nil {
		return SCRAMKey{}, fmt.Errorf("auth: pbkdf2: %w", err)
	}
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	stored := h.new()
	stored.Write(clientKey)
	return SCRAMKey{
		Salt: salt, Iter: iter,
		StoredKey: stored.Sum(nil),
		ServerKey: hmacSum(h, salted, []byte("Server Key")),
	}, nil
}

func hmacSum(h hashFunc, key, msg []byte) []byte {
	m := hmac.New(h.new, key)
	m.Write(msg)
	return m.Sum(nil)
}

// VerifyPassword checks password against the strongest stored verifier.
func VerifyPassword(c Credentials, password string) bool {
	p, err := NormalizePassword(password)
	if err != nil {
		return false
	}
	for _, h := range []hashFunc{hSHA512, hSHA256, hSHA1} {
		k := c.key(h)
		if len(k.StoredKey) == 0 {
			continue
		}
		got, err := deriveKey(h, p, k.Salt, k.Iter)
		return err == nil && hmac.Equal(got.StoredKey, k.StoredKey)
	}
	return false
}

// Channel-binding types (RFC 9266, RFC 5929).
const (
	CBExporter       = "tls-exporter"
	CBServerEndPoint = "tls-server-end-point"
	// CBUnique (RFC 5929 §3) exists only up to TLS 1.2. It is offered
	// there because widely deployed clients (slixmpp, mellium) know no
	// other type; Go's TLS 1.2 always negotiates the extended master
	// secret, which closes the triple-handshake hole RFC 9266 cites.
	CBUnique = "tls-unique"
)

// ChannelBindings lists the channel-binding types usable on a connection,
// best first. tls-exporter needs TLS 1.3 or TLS 1.2 with the extended master
// secret (RFC 9266 §3); tls-server-end-point needs the server certificate.
func ChannelBindings(cs *tls.ConnectionState, cert *x509.Certificate) []string {
	if cs == nil || !cs.HandshakeComplete {
		// Nothing binds to a channel that is not yet established.
		return nil
	}
	var out []string
	if _, err := exporterData(cs); err == nil {
		out = append(out, CBExporter)
	}
	if _, err := endPointData(cert); err == nil {
		out = append(out, CBServerEndPoint)
	}
	if _, err := uniqueData(cs); err == nil {
		out = append(out, CBUnique)
	}
	return out
}

func uniqueData(cs *tls.ConnectionState) ([]byte, error) {
	if cs.Version != tls.VersionTLS12 || len(cs.TLSUnique) == 0 {
		return nil, errors.New("auth: tls-unique needs TLS 1.2")
	}
	return cs.TLSUnique, nil
}

func exporterData(cs *tls.ConnectionState) (data []byte, err error) {
	if !cs.HandshakeComplete || cs.Version < tls.VersionTLS12 {
		return nil, errors.New("auth: tls-exporter needs a completed TLS 1.2 or later handshake")
	}
	// A ConnectionState not obtained from a tls.Conn (a literal, as in
	// tests of callers) has no exporter and ExportKeyingMaterial panics.
	defer func() {
		if recover() != nil {
			data, err = nil, errors.New("auth: connection state has no keying material exporter")
		}
	}()
	return cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
}

// endPointData is the RFC 5929 §4.1 hash of the server certificate: the
// certificate's signature hash, with MD5 and SHA-1 upgraded to SHA-256.
func endPointData(cert *x509.Certificate) ([]byte, error) {
	if cert == nil {
		return nil, errors.New("auth: no server certificate for tls-server-end-point")
	}
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = sha512.New()
	case x509.PureEd25519:
		// RFC 5929 leaves this undefined; SHA-256 is what other servers use.
		h = sha256.New()
	default:
		h = sha256.New()
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}

func bindingData(kind string, cs *tls.ConnectionState, cert *x509.Certificate) ([]byte, error) {
	if cs == nil || !cs.HandshakeComplete {
		return nil, errors.New("auth: channel binding without TLS")
	}
	switch kind {
	case CBExporter:
		return exporterData(cs)
	case CBServerEndPoint:
		return endPointData(cert)
	case CBUnique:
		return uniqueData(cs)
	}
	return nil, fmt.Errorf("auth: unsupported channel binding %q", kind)
}

// Mechanisms lists the SASL mechanisms to offer on a connection, strongest
// first. Nothing is offered without TLS; PLUS variants only when a channel
// binding is available; PLAIN only when allowed.
func Mechanisms(cs *tls.ConnectionState, cert *x509.Certificate, allowPlain bool) []string {
	if cs == nil {
		return nil
	}
	var out []string
	if len(ChannelBindings(cs, cert)) > 0 {
		out = append(out, "SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS")
	}
	out = append(out, "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1")
	if allowPlain {
		out = append(out, "PLAIN")
	}
	return out
}

func hasPlus(advertised []string) bool {
	for _, m := range advertised {
		if len(m) > 5 && m[len(m)-5:] == "-PLUS" {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
