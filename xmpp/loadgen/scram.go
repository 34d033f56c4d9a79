package loadgen

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"

	"mellium.im/sasl"
)

// SASL client implementations.
const (
	// SASLCached is the load generator's own SCRAM client. It caches the
	// salted password per (mechanism, user, password, salt, iterations),
	// as real clients do (RFC 5802 §5.1), so the client pays PBKDF2 once
	// per account instead of once per login. Without the cache the client
	// would spend as much CPU per login as the server and halve what a
	// 2-core machine can show. The PBKDF2 itself is mellium.im/sasl's
	// SCRAMSaltPassword; the exchange is checked against mellium's server
	// in the tests.
	SASLCached = "cached"
	// SASLMellium runs mellium.im/sasl's client for every login (PBKDF2
	// on every login, no cache).
	SASLMellium = "mellium"
)

// ErrAuth is a SASL <failure/> from the server or a bad server signature.
var ErrAuth = errors.New("loadgen: authentication failed")

var scramHashes = map[string]func() hash.Hash{
	"SCRAM-SHA-1":   sha1.New,
	"SCRAM-SHA-256": sha256.New,
	"SCRAM-SHA-512": sha512.New,
}

var melliumMechs = map[string]sasl.Mechanism{
	"SCRAM-SHA-1":   sasl.ScramSha1,
	"SCRAM-SHA-256": sasl.ScramSha256,
	"PLAIN":         sasl.Plain,
}

// saslClient is one authentication exchange.
type saslClient interface {
	// Step takes the decoded challenge (nil at the start) and returns the
	// response to send.
	Step(challenge []byte) ([]byte, error)
	// Verify checks the additional data of <success/>.
	Verify(data []byte) error
}

type scramKeyID struct {
	mech, user, password, salt string
	iter                       int
}

type scramKeys struct{ clientKey, storedKey, serverKey []byte }

// scramCache holds salted keys per account; safe for concurrent use.
type scramCache struct {
	mu sync.Mutex
	m  map[scramKeyID]scramKeys
}

func (c *scramCache) keys(id scramKeyID, fn func() hash.Hash) scramKeys {
	c.mu.Lock()
	k, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return k
	}
	salted := sasl.SCRAMSaltPassword(fn, []byte(id.password), []byte(id.salt), id.iter)
	k.clientKey = hmacSum(fn, salted, []byte("Client Key"))
	h := fn()
	h.Write(k.clientKey)
	k.storedKey = h.Sum(nil)
	k.serverKey = hmacSum(fn, salted, []byte("Server Key"))
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[scramKeyID]scramKeys)
	}
	c.m[id] = k
	c.mu.Unlock()
	return k
}

func hmacSum(fn func() hash.Hash, key, data []byte) []byte {
	h := hmac.New(fn, key)
	h.Write(data)
	return h.Sum(nil)
}

// cachedSCRAM is a SCRAM client without channel binding (gs2 "n,,").
type cachedSCRAM struct {
	mech      string
	fn        func() hash.Hash
	cache     *scramCache
	user, pw  string
	nonce     string
	firstBare string
	serverSig []byte
	step      int
	verified  bool
}

func newCachedSCRAM(mech, user, pw string, cache *scramCache) (*cachedSCRAM, error) {
	fn, ok := scramHashes[mech]
	if !ok {
		return nil, fmt.Errorf("loadgen: unsupported mechanism %s (SCRAM-SHA-1, SCRAM-SHA-256, SCRAM-SHA-512)", mech)
	}
	var nb [18]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, err
	}
	return &cachedSCRAM{mech: mech, fn: fn, cache: cache, user: user, pw: pw, nonce: base64.RawURLEncoding.EncodeToString(nb[:])}, nil
}

func saslname(u string) string {
	if !strings.ContainsAny(u, ",=") {
		return u
	}
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(u)
}

func (s *cachedSCRAM) Step(ch []byte) ([]byte, error) {
	switch s.step {
	case 0:
		s.step++
		s.firstBare = "n=" + saslname(s.user) + ",r=" + s.nonce
		return []byte("n,," + s.firstBare), nil
	case 1:
		s.step++
		var nonce, salt []byte
		iter := -1
		for _, f := range bytes.Split(ch, []byte(",")) {
			if len(f) < 2 || f[1] != '=' {
				continue
			}
			switch f[0] {
			case 'r':
				nonce = f[2:]
			case 's':
				var err error
				if salt, err = base64.StdEncoding.DecodeString(string(f[2:])); err != nil {
					return nil, fmt.Errorf("loadgen: scram salt: %w", err)
				}
			case 'i':
				var err error
				if iter, err = strconv.Atoi(string(f[2:])); err != nil {
					return nil, fmt.Errorf("loadgen: scram iterations: %w", err)
				}
			case 'm':
				return nil, errors.New("loadgen: scram: server sent reserved attribute m")
			}
		}
		switch {
		case iter < 1:
			return nil, errors.New("loadgen: scram: no iteration count")
		case len(salt) == 0:
			return nil, errors.New("loadgen: scram: empty salt")
		case !bytes.HasPrefix(nonce, []byte(s.nonce)) || len(nonce) == len(s.nonce):
			return nil, errors.New("loadgen: scram: server nonce does not extend the client nonce")
		}
		k := s.cache.keys(scramKeyID{s.mech, s.user, s.pw, string(salt), iter}, s.fn)
		final := "c=biws,r=" + string(nonce)
		auth := s.firstBare + "," + string(ch) + "," + final
		sig := hmacSum(s.fn, k.storedKey, []byte(auth))
		proof := make([]byte, len(sig))
		subtle.XORBytes(proof, k.clientKey, sig)
		s.serverSig = hmacSum(s.fn, k.serverKey, []byte(auth))
		return []byte(final + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
	default:
		// Some servers send server-final in a challenge.
		s.step++
		if err := s.Verify(ch); err != nil {
			return nil, err
		}
		s.verified = true
		return nil, nil
	}
}

func (s *cachedSCRAM) Verify(data []byte) error {
	if s.verified && len(data) == 0 {
		return nil
	}
	if s.serverSig == nil {
		return fmt.Errorf("%w: success before the proof was sent", ErrAuth)
	}
	if bytes.HasPrefix(data, []byte("e=")) {
		return fmt.Errorf("%w: %s", ErrAuth, data[2:])
	}
	want := "v=" + base64.StdEncoding.EncodeToString(s.serverSig)
	if subtle.ConstantTimeCompare([]byte(want), data) != 1 {
		return fmt.Errorf("%w: bad server signature", ErrAuth)
	}
	return nil
}

// melliumClient wraps mellium.im/sasl's client.
type melliumClient struct {
	n        *sasl.Negotiator
	verified bool
}

func newMelliumClient(mech, user, pw string, cs *tls.ConnectionState, offered []string) (*melliumClient, error) {
	m, ok := melliumMechs[mech]
	if !ok {
		return nil, fmt.Errorf("loadgen: mechanism %s not available with the mellium client", mech)
	}
	opts := []sasl.Option{
		sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(user), []byte(pw), nil }),
		sasl.RemoteMechanisms(offered...),
	}
	if cs != nil {
		opts = append(opts, sasl.TLSState(*cs))
	}
	return &melliumClient{n: sasl.NewClient(m, opts...)}, nil
}

func (c *melliumClient) Step(ch []byte) ([]byte, error) {
	if ch != nil && c.n.State()&sasl.StepMask == sasl.ResponseSent {
		c.verified = true
	}
	_, resp, err := c.n.Step(ch)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	return resp, nil
}

func (c *melliumClient) Verify(data []byte) error {
	if c.verified || len(data) == 0 {
		return nil // verified in a challenge already, or PLAIN
	}
	if _, _, err := c.n.Step(data); err != nil {
		return fmt.Errorf("%w: server signature: %v", ErrAuth, err)
	}
	return nil
}

// plainClient is SASL PLAIN (for comparisons only; the bench uses SCRAM).
type plainClient struct{ user, pw string }

func (p plainClient) Step([]byte) ([]byte, error) {
	return []byte("\x00" + p.user + "\x00" + p.pw), nil
}
func (p plainClient) Verify([]byte) error { return nil }
