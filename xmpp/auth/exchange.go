package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/text/secure/precis"
)

// MaxMessage caps one SASL message from the client. SCRAM and PLAIN
// messages are a few hundred bytes; anything larger is abuse.
const MaxMessage = 4096

// Failure is a SASL failure with its RFC 6120 §6.5 condition.
type Failure struct {
	Condition string // e.g. "not-authorized"
	Text      string // optional human-readable text
	Err       error  // cause, for logs only; never sent to the client
}

func (f *Failure) Error() string {
	if f.Err != nil {
		return "sasl " + f.Condition + ": " + f.Err.Error()
	}
	if f.Text != "" {
		return "sasl " + f.Condition + ": " + f.Text
	}
	return "sasl " + f.Condition
}

func (f *Failure) Unwrap() error { return f.Err }

func fail(cond, text string, err error) error { return &Failure{Condition: cond, Text: text, Err: err} }

// ExchangeConfig describes one SASL exchange.
type ExchangeConfig struct {
	Mechanism  string
	TLS        *tls.ConnectionState // nil refuses every mechanism
	ServerCert *x509.Certificate    // for tls-server-end-point
	Lookup     Lookup
	AllowPlain bool
	// Advertised is what the server offered; a mechanism not in it is
	// refused, and a client claiming "server does not support channel
	// binding" when PLUS was offered is a downgrade attack (RFC 5802 §6).
	// PLAIN is refused unless AllowPlain is set, even if listed here.
	Advertised []string
	// Domain is the stream's host, so an authzid of user@Domain is
	// accepted as the authenticated identity.
	Domain string
	// FakeIterations is the iteration count shown for unknown accounts;
	// set it to the count new accounts get so both look alike.
	FakeIterations int
	// Secret keys the fake salts; nil uses a per-process random key.
	Secret []byte
	// VerifyPlain, when set, checks PLAIN passwords of the accounts it
	// handles (a directory bind) instead of the stored verifiers: it
	// reports handled=false to leave an account to the stored verifiers,
	// or a *Failure (or any error: not-authorized) to refuse.
	VerifyPlain PlainVerifier
}

// lookupFailure keeps a *Failure the lookup chose (a throttled account,
// a directory that is down) and makes anything else temporary-auth-failure.
func lookupFailure(err error) error {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return fail("temporary-auth-failure", "", err)
}

// PlainVerifier checks a PLAIN password elsewhere (see ExchangeConfig).
type PlainVerifier func(ctx context.Context, user, password string) (handled bool, err error)

// NewFailure returns a SASL failure with condition cond (RFC 6120 §6.5)
// and a human-readable text, for PlainVerifier implementations.
func NewFailure(cond, text string, err error) error { return fail(cond, text, err) }

// Exchange is one server-side SASL exchange.
type Exchange struct {
	cfg   ExchangeConfig
	step  int  // non-empty client messages consumed
	asked bool // an empty challenge was sent for a missing initial response
	over  bool // succeeded or failed: every further Step is refused
	plain bool
	h     hashFunc
	plus  bool

	user      string // authenticated username; set only on success
	cbType    string // channel binding used; set only on success
	claimed   string // normalized username from client-first
	cbWanted  string // channel binding named in client-first
	cbData    []byte // its data on this connection
	gs2       []byte // gs2 header as sent
	firstBare string
	srvFirst  string
	nonce     string
	key       SCRAMKey
	known     bool
}

var scramHashes = map[string]hashFunc{
	"SCRAM-SHA-1": hSHA1, "SCRAM-SHA-256": hSHA256, "SCRAM-SHA-512": hSHA512,
}

// NewExchange starts an exchange for cfg.Mechanism or returns a *Failure.
func NewExchange(cfg ExchangeConfig) (*Exchange, error) {
	if cfg.TLS == nil {
		return nil, fail("encryption-required", "TLS is required", nil)
	}
	if cfg.Lookup == nil {
		return nil, fail("temporary-auth-failure", "", errors.New("auth: no credential lookup"))
	}
	if cfg.Advertised == nil {
		cfg.Advertised = Mechanisms(cfg.TLS, cfg.ServerCert, cfg.AllowPlain)
	}
	if !contains(cfg.Advertised, cfg.Mechanism) {
		return nil, fail("invalid-mechanism", "", nil)
	}
	ex := &Exchange{cfg: cfg}
	if cfg.Mechanism == "PLAIN" {
		if !cfg.AllowPlain {
			return nil, fail("invalid-mechanism", "", nil)
		}
		ex.plain = true
		return ex, nil
	}
	name, plus := strings.CutSuffix(cfg.Mechanism, "-PLUS")
	h, ok := scramHashes[name]
	if !ok {
		return nil, fail("invalid-mechanism", "", nil)
	}
	ex.h, ex.plus = h, plus
	return ex, nil
}

// Username is the authenticated, normalized localpart after success, and
// "" before success or after a failure.
func (ex *Exchange) Username() string { return ex.user }

// Claimed is the normalized user name the client tried, known once its
// first message was read (also after a failure): for throttling guesses.
func (ex *Exchange) Claimed() string { return ex.claimed }

// ChannelBinding is the channel-binding type used by a successful
// exchange, or "".
func (ex *Exchange) ChannelBinding() string { return ex.cbType }

// Step consumes one client message and returns the server's reply. done is
// true once the client is authenticated; out then holds any additional
// data for <success/>. A non-nil error is a *Failure and ends the exchange:
// after success or failure every further Step fails with malformed-request.
func (ex *Exchange) Step(ctx context.Context, in []byte) (out []byte, done bool, err error) {
	if ex.over {
		return nil, false, fail("malformed-request", "exchange already finished", nil)
	}
	defer func() {
		if err != nil || done {
			ex.over = true
		}
	}()
	if len(in) > MaxMessage {
		return nil, false, fail("malformed-request", "message too long", nil)
	}
	if len(in) == 0 {
		// RFC 6120 §6.4.2: no initial response, so ask for it with an empty
		// challenge. Only once: no SCRAM or PLAIN message is ever empty, and
		// answering empty with empty forever would stall the stream without
		// counting as a failed attempt.
		if ex.step == 0 && !ex.asked {
			ex.asked = true
			return nil, false, nil
		}
		return nil, false, fail("malformed-request", "empty response", nil)
	}
	ex.step++
	switch {
	case ex.plain && ex.step == 1:
		return ex.stepPlain(ctx, in)
	case !ex.plain && ex.step == 1:
		out, err := ex.clientFirst(ctx, in)
		return out, false, err
	case !ex.plain && ex.step == 2:
		out, err := ex.clientFinal(in)
		if err != nil {
			return nil, false, err
		}
		ex.user, ex.cbType = ex.claimed, ex.cbWanted
		return out, true, nil
	}
	return nil, false, fail("malformed-request", "", nil)
}

// stepPlain checks "authzid NUL authcid NUL passwd" (RFC 4616).
func (ex *Exchange) stepPlain(ctx context.Context, in []byte) ([]byte, bool, error) {
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 {
		return nil, false, fail("malformed-request", "", nil)
	}
	user, err := normalizeUser(string(parts[1]))
	if err != nil {
		return nil, false, fail("not-authorized", "", err)
	}
	ex.claimed = user
	if err := ex.checkAuthzid(string(parts[0]), user); err != nil {
		return nil, false, err
	}
	if ex.cfg.VerifyPlain != nil {
		handled, err := ex.cfg.VerifyPlain(ctx, user, string(parts[2]))
		if handled {
			if err != nil {
				var f *Failure
				if errors.As(err, &f) {
					return nil, false, err
				}
				return nil, false, fail("not-authorized", "", err)
			}
			ex.user = user
			return nil, true, nil
		}
		if err != nil {
			return nil, false, fail("temporary-auth-failure", "", err)
		}
	}
	creds, err := ex.cfg.Lookup(ctx, user)
	if err != nil && !errors.Is(err, ErrNoUser) {
		return nil, false, lookupFailure(err)
	}
	if err != nil || !hasVerifier(creds) {
		// Unknown, or known without any verifier: spend the same work as
		// for a real account so timing does not tell them apart.
		VerifyPassword(ex.fakeCredentials(user), string(parts[2]))
		return nil, false, fail("not-authorized", "", err)
	}
	if !VerifyPassword(creds, string(parts[2])) {
		return nil, false, fail("not-authorized", "", nil)
	}
	ex.user = user
	return nil, true, nil
}

// maxLocalpart is the RFC 7622 §3.3 limit on a localpart, in bytes.
const maxLocalpart = 1023

// normalizeUser applies the PRECIS UsernameCaseMapped profile and the
// extra RFC 7622 §3.3.1 localpart rules: Username() becomes the localpart
// of the session's JID, so "@" or "/" in it would forge another address.
func normalizeUser(s string) (string, error) {
	if s == "" {
		return "", errors.New("auth: empty username")
	}
	u, err := precis.UsernameCaseMapped.String(s)
	if err != nil {
		return "", fmt.Errorf("auth: username: %w", err)
	}
	if u == "" || len(u) > maxLocalpart || strings.ContainsAny(u, "\"&'/:<>@") {
		return "", errors.New("auth: username is not a valid JID localpart")
	}
	return u, nil
}

func hasVerifier(c Credentials) bool {
	return len(c.SHA1.StoredKey) > 0 || len(c.SHA256.StoredKey) > 0 || len(c.SHA512.StoredKey) > 0
}

// checkAuthzid accepts no authzid, or one naming the authenticated account
// itself; acting for another identity is not supported.
func (ex *Exchange) checkAuthzid(authzid, user string) error {
	if authzid == "" {
		return nil
	}
	local, domain, found := strings.Cut(authzid, "@")
	if n, err := normalizeUser(local); err == nil && n == user &&
		(!found || (ex.cfg.Domain != "" && strings.EqualFold(domain, ex.cfg.Domain))) {
		return nil
	}
	return fail("invalid-authzid", "", nil)
}

func (ex *Exchange) clientFirst(ctx context.Context, in []byte) ([]byte, error) {
	msg := string(in)
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	cbflag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, fail("malformed-request", "", nil)
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fail("malformed-request", "", nil)
	}
	ex.gs2 = []byte(msg[:len(msg)-len(bare)])
	switch {
	case cbflag == "n":
		if ex.plus {
			return nil, fail("malformed-request", "a -PLUS mechanism needs channel binding", nil)
		}
	case cbflag == "y":
		if ex.plus {
			return nil, fail("malformed-request", "", nil)
		}
		if hasPlus(ex.cfg.Advertised) {
			return nil, fail("not-authorized", "channel binding downgrade detected", nil)
		}
	case strings.HasPrefix(cbflag, "p="):
		if !ex.plus {
			return nil, fail("malformed-request", "channel binding needs a -PLUS mechanism", nil)
		}
		ex.cbWanted = cbflag[2:]
		// Derived once, for the named type only; an error means the type is
		// unknown or unavailable here, i.e. not in ChannelBindings.
		data, err := bindingData(ex.cbWanted, ex.cfg.TLS, ex.cfg.ServerCert)
		if err != nil {
			return nil, fail("malformed-request", "unsupported channel binding type", err)
		}
		ex.cbData = data
	default:
		return nil, fail("malformed-request", "", nil)
	}
	var authzid string
	if authz != "" {
		v, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return nil, fail("malformed-request", "", nil)
		}
		// saslname is 1*(value-safe-char / "=2C" / "=3D"): "a=" is not
		// "no authzid".
		if authzid, ok = unescapeName(v); !ok || authzid == "" {
			return nil, fail("malformed-request", "", nil)
		}
	}
	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fail("malformed-request", "", nil)
	}
	rawUser, ok := unescapeName(attrs[0][2:])
	if !ok {
		return nil, fail("malformed-request", "", nil)
	}
	cnonce := attrs[1][2:]
	if cnonce == "" || !printable(cnonce) {
		return nil, fail("malformed-request", "", nil)
	}
	user, err := normalizeUser(rawUser)
	if err != nil {
		return nil, fail("not-authorized", "", err)
	}
	if err := ex.checkAuthzid(authzid, user); err != nil {
		return nil, err
	}
	creds, err := ex.cfg.Lookup(ctx, user)
	switch {
	case errors.Is(err, ErrNoUser):
		creds = ex.fakeCredentials(user)
	case err != nil:
		return nil, lookupFailure(err)
	default:
		ex.known = true
	}
	ex.key = *creds.key(ex.h)
	if len(ex.key.StoredKey) == 0 {
		// No verifier for this hash (imported account): fail at the end
		// like a wrong password, without revealing it early.
		ex.known = false
		fake := ex.fakeCredentials(user)
		ex.key = *fake.key(ex.h)
	}
	ex.claimed = user
	snonce := make([]byte, 24)
	if _, err := rand.Read(snonce); err != nil {
		return nil, fail("temporary-auth-failure", "", err)
	}
	ex.nonce = cnonce + base64.RawStdEncoding.EncodeToString(snonce)
	ex.firstBare = bare
	ex.srvFirst = "r=" + ex.nonce + ",s=" + base64.StdEncoding.EncodeToString(ex.key.Salt) +
		",i=" + strconv.Itoa(ex.key.Iter)
	return []byte(ex.srvFirst), nil
}

func (ex *Exchange) clientFinal(in []byte) ([]byte, error) {
	msg := string(in)
	idx := strings.LastIndex(msg, ",p=")
	if idx < 0 {
		return nil, fail("malformed-request", "", nil)
	}
	withoutProof, proofB64 := msg[:idx], msg[idx+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fail("malformed-request", "", nil)
	}
	cb, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil {
		return nil, fail("malformed-request", "", err)
	}
	want := append(append([]byte(nil), ex.gs2...), ex.cbData...)
	if !hmac.Equal(cb, want) {
		return nil, fail("not-authorized", "channel binding mismatch", nil)
	}
	if attrs[1][2:] != ex.nonce {
		return nil, fail("not-authorized", "nonce mismatch", nil)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != ex.h.size {
		return nil, fail("malformed-request", "", err)
	}
	authMsg := []byte(ex.firstBare + "," + ex.srvFirst + "," + withoutProof)
	sig := hmacSum(ex.h, ex.key.StoredKey, authMsg)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	hh := ex.h.new()
	hh.Write(clientKey)
	if !hmac.Equal(hh.Sum(nil), ex.key.StoredKey) || !ex.known {
		return nil, fail("not-authorized", "", nil)
	}
	serverSig := hmacSum(ex.h, ex.key.ServerKey, authMsg)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), nil
}

// unescapeName decodes a SCRAM saslname: "=2C" is ",", "=3D" is "=", and
// any other "=" is malformed (RFC 5802 §5.1).
func unescapeName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// printable reports whether s is a valid SCRAM nonce (printable ASCII
// without ",").
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

var processSecret = sync.OnceValue(func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
})

// fakeCredentials gives an unknown account a stable salt derived from the
// username, so probing cannot tell it from a real one by its salt changing.
// The keys are random and never match.
func (ex *Exchange) fakeCredentials(user string) Credentials {
	secret := ex.cfg.Secret
	if secret == nil {
		secret = processSecret()
	}
	iter := ex.cfg.FakeIterations
	if iter < MinIterations {
		iter = MinIterations
	}
	var c Credentials
	for _, h := range []hashFunc{hSHA1, hSHA256, hSHA512} {
		k := c.key(h)
		k.Salt = hmacSum(hSHA256, secret, []byte(h.name+"\x00"+user))[:16]
		k.Iter = iter
		k.StoredKey = make([]byte, h.size)
		k.ServerKey = make([]byte, h.size)
		_, _ = rand.Read(k.StoredKey)
		_, _ = rand.Read(k.ServerKey)
	}
	return c
}
