package auth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // SCRAM-SHA-1 is under test.
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"

	"gatehouse/xmpp/auth"
)

const (
	testDomain = "example.com"
	alicePass  = "pencil"
	zoePass    = "crème brûlée" // precomposed, as stored
)

// conditions are the SASL failure conditions of RFC 6120 §6.5.
var conditions = map[string]bool{
	"aborted": true, "account-disabled": true, "credentials-expired": true,
	"encryption-required": true, "incorrect-encoding": true, "invalid-authzid": true,
	"invalid-mechanism": true, "malformed-request": true, "mechanism-too-weak": true,
	"not-authorized": true, "temporary-auth-failure": true,
}

var errDB = errors.New("database is locked")

// --- TLS fixtures ---

type testCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var certCache struct {
	sync.Mutex
	m map[x509.SignatureAlgorithm]testCert
}

// makeCert returns a self-signed certificate for 127.0.0.1 signed with alg,
// cached because key generation dominates otherwise.
func makeCert(tb testing.TB, alg x509.SignatureAlgorithm) testCert {
	tb.Helper()
	certCache.Lock()
	defer certCache.Unlock()
	if c, ok := certCache.m[alg]; ok {
		return c
	}
	var (
		key crypto.Signer
		err error
	)
	switch alg {
	case x509.PureEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case x509.ECDSAWithSHA384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case x509.ECDSAWithSHA512:
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            pkix.Name{CommonName: testDomain},
		DNSNames:           []string{testDomain},
		IPAddresses:        []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		KeyUsage:           x509.KeyUsageDigitalSignature,
		ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		SignatureAlgorithm: alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	if certCache.m == nil {
		certCache.m = make(map[x509.SignatureAlgorithm]testCert)
	}
	c := testCert{cert, key}
	certCache.m[alg] = c
	return c
}

// tlsPair handshakes over loopback TCP and returns the server's and the
// client's view of the same connection, so channel-binding data really has
// to agree across the wire.
func tlsPair(tb testing.TB, version uint16, tc testCert) (srv, cli *tls.ConnectionState) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		conn *tls.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		sc := tls.Server(c, &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{tc.cert.Raw}, PrivateKey: tc.key, Leaf: tc.cert}},
			MinVersion:   version,
			MaxVersion:   version,
		})
		ch <- result{sc, sc.Handshake()}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(tc.cert)
	cc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, MinVersion: version, MaxVersion: version})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	r := <-ch
	if r.err != nil {
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() { r.conn.Close() })
	s, c := r.conn.ConnectionState(), cc.ConnectionState()
	if s.Version != version || c.Version != version {
		tb.Fatalf("negotiated %x/%x, want %x", s.Version, c.Version, version)
	}
	return &s, &c
}

func exporter(tb testing.TB, cs *tls.ConnectionState) []byte {
	tb.Helper()
	b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// endPoint is the RFC 5929 §4.1 tls-server-end-point data, computed from
// the certificate the client received.
func endPoint(cert *x509.Certificate) []byte {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.ECDSAWithSHA384, x509.SHA384WithRSA, x509.SHA384WithRSAPSS:
		h = sha512.New384()
	case x509.ECDSAWithSHA512, x509.SHA512WithRSA, x509.SHA512WithRSAPSS:
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write(cert.Raw)
	return h.Sum(nil)
}

// --- accounts ---

var credsOnce = sync.OnceValues(func() ([2]auth.Credentials, error) {
	a, err := auth.NewCredentials(alicePass, auth.MinIterations)
	if err != nil {
		return [2]auth.Credentials{}, err
	}
	z, err := auth.NewCredentials(zoePass, auth.MinIterations)
	return [2]auth.Credentials{a, z}, err
})

// testLookup knows alice, "x,y=z" (for saslname escapes), zoë (non-ASCII
// password), legacy (SHA-1 verifier only) and nokeys (no verifier). "broken"
// fails like a database would; anybody else does not exist.
func testLookup(tb testing.TB) auth.Lookup {
	tb.Helper()
	c, err := credsOnce()
	if err != nil {
		tb.Fatal(err)
	}
	users := map[string]auth.Credentials{
		"alice": c[0], "x,y=z": c[0], "zoë": c[1],
		"legacy": {SHA1: c[0].SHA1}, "nokeys": {},
	}
	return func(_ context.Context, user string) (auth.Credentials, error) {
		if user == "broken" {
			return auth.Credentials{}, errDB
		}
		if cr, ok := users[user]; ok {
			return cr, nil
		}
		return auth.Credentials{}, fmt.Errorf("lookup %q: %w", user, auth.ErrNoUser)
	}
}

// --- clients ---

// stepper is what both mellium's *sasl.Negotiator and scramClient are.
type stepper interface {
	Step(challenge []byte) (more bool, resp []byte, err error)
}

func mellium(m sasl.Mechanism, cli *tls.ConnectionState, remote []string, user, pass, authzid string) stepper {
	opts := []sasl.Option{
		sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(user), []byte(pass), []byte(authzid) }),
		sasl.RemoteMechanisms(remote...),
	}
	if cli != nil {
		opts = append(opts, sasl.TLSState(*cli))
	}
	return sasl.NewClient(m, opts...)
}

// scramClient is a small RFC 5802 client for what mellium cannot do
// (SHA-512, tls-server-end-point, the "y" flag, extensions) and as an
// independent check of the server's arithmetic.
type scramClient struct {
	hash    func() hash.Hash
	user    string // saslname as sent, already escaped
	pass    string
	authzid string // "a=" value as sent, already escaped
	flag    string // gs2-cbind-flag: "n", "y" or "p=<type>"
	cbData  []byte // channel-binding data appended to the gs2 header in c=
	nonce   string
	ext     string // extra client-first attributes, e.g. "x=1"

	salted  []byte // SaltedPassword, reused while salt and count repeat
	saltFor string
	gs2     string
	bare    string
	wantV   string
	state   int
}

func newClient(h func() hash.Hash, user, pass string) *scramClient {
	return &scramClient{hash: h, user: user, pass: pass, flag: "n", nonce: "fyko+d2lbbFgONRv9qkxdawL"}
}

func (c *scramClient) first() string {
	c.gs2 = c.flag + ","
	if c.authzid != "" {
		c.gs2 += "a=" + c.authzid
	}
	c.gs2 += ","
	c.bare = "n=" + c.user + ",r=" + c.nonce
	if c.ext != "" {
		c.bare += "," + c.ext
	}
	return c.gs2 + c.bare
}

// final answers server-first and remembers the v= the server must send.
func (c *scramClient) final(serverFirst string) (string, error) {
	var nonce, salt string
	iter := -1
	for _, a := range strings.Split(serverFirst, ",") {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "r":
			nonce = v
		case "s":
			salt = v
		case "i":
			iter, _ = strconv.Atoi(v)
		}
	}
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
		return "", fmt.Errorf("server nonce %q does not extend %q", nonce, c.nonce)
	}
	if iter < auth.MinIterations {
		return "", fmt.Errorf("iteration count %d", iter)
	}
	if c.salted == nil || c.saltFor != salt+","+strconv.Itoa(iter) {
		s, err := base64.StdEncoding.DecodeString(salt)
		if err != nil {
			return "", err
		}
		pw, err := auth.NormalizePassword(c.pass)
		if err != nil {
			return "", err
		}
		if c.salted, err = pbkdf2.Key(c.hash, pw, s, iter, c.hash().Size()); err != nil {
			return "", err
		}
		c.saltFor = salt + "," + strconv.Itoa(iter)
	}
	without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(c.gs2), c.cbData...)) + ",r=" + nonce
	proof, v := scramProof(c.hash, c.salted, c.bare+","+serverFirst+","+without)
	c.wantV = "v=" + base64.StdEncoding.EncodeToString(v)
	return without + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

// scramProof returns ClientProof and ServerSignature (RFC 5802 §3).
func scramProof(h func() hash.Hash, salted []byte, authMsg string) (proof, serverSig []byte) {
	clientKey := macSum(h, salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	sig := macSum(h, stored.Sum(nil), authMsg)
	proof = make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return proof, macSum(h, macSum(h, salted, "Server Key"), authMsg)
}

func macSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (c *scramClient) Step(challenge []byte) (bool, []byte, error) {
	c.state++
	switch c.state {
	case 1:
		return true, []byte(c.first()), nil
	case 2:
		f, err := c.final(string(challenge))
		return true, []byte(f), err
	case 3:
		if string(challenge) != c.wantV {
			return false, nil, fmt.Errorf("server signature %q, want %q", challenge, c.wantV)
		}
		return false, nil, nil
	}
	return false, nil, errors.New("too many steps")
}

// rawClient sends fixed messages regardless of the challenges.
type rawClient []string

func (r *rawClient) Step([]byte) (bool, []byte, error) {
	if len(*r) == 0 {
		return false, nil, errors.New("no more messages")
	}
	m := (*r)[0]
	*r = (*r)[1:]
	return len(*r) > 0, []byte(m), nil
}

func raw(msgs ...string) stepper { r := rawClient(msgs); return &r }

// converse runs ex against c until success or the server's first error.
// mutate, if set, rewrites the client's i-th message before the server
// sees it. It returns the index of the last client message the server
// consumed and the server's additional data on success.
func converse(tb testing.TB, ex *auth.Exchange, c stepper, mutate func(i int, msg []byte) []byte) (int, []byte, error) {
	tb.Helper()
	var challenge []byte
	for i := 0; i < 4; i++ {
		_, resp, err := c.Step(challenge)
		if err != nil {
			tb.Fatalf("client message %d: %v", i, err)
		}
		if mutate != nil {
			resp = mutate(i, resp)
		}
		out, done, err := ex.Step(context.Background(), resp)
		if err != nil {
			return i, nil, err
		}
		if done {
			if len(out) > 0 { // the client checks the server signature
				if _, _, err := c.Step(out); err != nil {
					tb.Fatalf("client rejected the server's final message: %v", err)
				}
			}
			return i, out, nil
		}
		challenge = out
	}
	tb.Fatal("exchange did not end")
	return 0, nil, nil
}

// replaceIn rewrites old to new in the client's i-th message.
func replaceIn(i int, old, new string) func(int, []byte) []byte {
	return func(j int, msg []byte) []byte {
		if j != i {
			return msg
		}
		if !bytes.Contains(msg, []byte(old)) {
			panic(fmt.Sprintf("message %d %q lacks %q", j, msg, old))
		}
		return bytes.Replace(msg, []byte(old), []byte(new), 1)
	}
}

func failureOf(tb testing.TB, err error) *auth.Failure {
	tb.Helper()
	var f *auth.Failure
	if !errors.As(err, &f) {
		tb.Fatalf("error %v (%T) is not an *auth.Failure", err, err)
	}
	if !conditions[f.Condition] {
		tb.Fatalf("condition %q is not in RFC 6120 §6.5", f.Condition)
	}
	return f
}

// --- tests ---

func TestRoundTrip(t *testing.T) {
	tc := makeCert(t, x509.ECDSAWithSHA256)
	lookup := testLookup(t)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		srv, cli := tlsPair(t, version, tc)
		remote := auth.Mechanisms(srv, tc.cert, true)
		own := func(h func() hash.Hash, user, pass, flag string, cb []byte) *scramClient {
			c := newClient(h, user, pass)
			c.flag, c.cbData = flag, cb
			return c
		}
		withAuthzid := func(c *scramClient, a string) *scramClient { c.authzid = a; return c }
		withExt := func(c *scramClient, e string) *scramClient { c.ext = e; return c }
		cases := []struct {
			name       string
			mech       string
			client     stepper
			advertised []string
			tls13      bool // mellium binds with tls-exporter on TLS 1.3 and tls-unique on TLS 1.2
			wantUser   string
			wantCB     string
		}{
			{name: "mellium/SHA-1", mech: "SCRAM-SHA-1", client: mellium(sasl.ScramSha1, cli, remote, "Alice", alicePass, ""), wantUser: "alice"},
			{name: "mellium/SHA-256", mech: "SCRAM-SHA-256", client: mellium(sasl.ScramSha256, cli, remote, "alice", alicePass, ""), wantUser: "alice"},
			{name: "mellium/SHA-256 fullwidth user", mech: "SCRAM-SHA-256", client: mellium(sasl.ScramSha256, cli, remote, "ＡＬＩＣＥ", alicePass, ""), wantUser: "alice"},
			{name: "mellium/SHA-256 authzid", mech: "SCRAM-SHA-256", client: mellium(sasl.ScramSha256, cli, remote, "alice", alicePass, "alice@example.com"), wantUser: "alice"},
			{name: "mellium/SHA-1-PLUS exporter", mech: "SCRAM-SHA-1-PLUS", client: mellium(sasl.ScramSha1Plus, cli, remote, "alice", alicePass, ""), tls13: true, wantUser: "alice", wantCB: auth.CBExporter},
			{name: "mellium/SHA-256-PLUS exporter", mech: "SCRAM-SHA-256-PLUS", client: mellium(sasl.ScramSha256Plus, cli, remote, "Alice", alicePass, ""), tls13: true, wantUser: "alice", wantCB: auth.CBExporter},
			{name: "mellium/PLAIN", mech: "PLAIN", client: mellium(sasl.Plain, cli, remote, "Alice", alicePass, ""), wantUser: "alice"},
			{name: "mellium/PLAIN authzid", mech: "PLAIN", client: mellium(sasl.Plain, cli, remote, "alice", alicePass, "Alice@Example.com"), wantUser: "alice"},
			// The server, not the client, prepares PLAIN passwords: a
			// decomposed "è" and an ideographic space match the stored form.
			{name: "mellium/PLAIN PRECIS password", mech: "PLAIN", client: mellium(sasl.Plain, cli, remote, "zoë", "cre\u0300me\u3000bru\u0302le\u0301e", ""), wantUser: "zoë"},
			{name: "own/SHA-512", mech: "SCRAM-SHA-512", client: own(sha512.New, "Alice", alicePass, "n", nil), wantUser: "alice"},
			{name: "own/SHA-512-PLUS exporter", mech: "SCRAM-SHA-512-PLUS", client: own(sha512.New, "alice", alicePass, "p=tls-exporter", exporter(t, cli)), wantUser: "alice", wantCB: auth.CBExporter},
			{name: "own/SHA-1-PLUS exporter", mech: "SCRAM-SHA-1-PLUS", client: own(sha1.New, "alice", alicePass, "p=tls-exporter", exporter(t, cli)), wantUser: "alice", wantCB: auth.CBExporter},
			{name: "own/SHA-256-PLUS end-point", mech: "SCRAM-SHA-256-PLUS", client: own(sha256.New, "alice", alicePass, "p=tls-server-end-point", endPoint(cli.PeerCertificates[0])), wantUser: "alice", wantCB: auth.CBServerEndPoint},
			{name: "own/SHA-512-PLUS end-point", mech: "SCRAM-SHA-512-PLUS", client: own(sha512.New, "alice", alicePass, "p=tls-server-end-point", endPoint(cli.PeerCertificates[0])), wantUser: "alice", wantCB: auth.CBServerEndPoint},
			{name: "own/saslname escapes", mech: "SCRAM-SHA-256", client: own(sha256.New, "x=2Cy=3Dz", alicePass, "n", nil), wantUser: "x,y=z"},
			{name: "own/authzid user", mech: "SCRAM-SHA-256", client: withAuthzid(own(sha256.New, "alice", alicePass, "n", nil), "alice"), wantUser: "alice"},
			{name: "own/authzid JID", mech: "SCRAM-SHA-1", client: withAuthzid(own(sha1.New, "alice", alicePass, "n", nil), "ALICE@example.COM"), wantUser: "alice"},
			{name: "own/PLUS authzid", mech: "SCRAM-SHA-256-PLUS", client: withAuthzid(own(sha256.New, "alice", alicePass, "p=tls-exporter", exporter(t, cli)), "alice@example.com"), wantUser: "alice", wantCB: auth.CBExporter},
			{name: "own/extensions", mech: "SCRAM-SHA-256", client: withExt(own(sha256.New, "alice", alicePass, "n", nil), "x=1,y=2"), wantUser: "alice"},
			// "y" is honest when no PLUS variant was offered.
			{name: "own/y without PLUS offered", mech: "SCRAM-SHA-256", client: own(sha256.New, "alice", alicePass, "y", nil), advertised: []string{"SCRAM-SHA-256"}, wantUser: "alice"},
			{name: "own/legacy SHA-1 only", mech: "SCRAM-SHA-1", client: own(sha1.New, "legacy", alicePass, "n", nil), wantUser: "legacy"},
			{name: "own/non-ASCII password", mech: "SCRAM-SHA-256", client: own(sha256.New, "ZOË", "cre\u0300me bru\u0302le\u0301e", "n", nil), wantUser: "zoë"},
		}
		for _, c := range cases {
			t.Run(tls.VersionName(version)+"/"+c.name, func(t *testing.T) {
				wantCB := c.wantCB
				if c.tls13 && version == tls.VersionTLS12 {
					wantCB = auth.CBUnique
				}
				ex, err := auth.NewExchange(auth.ExchangeConfig{
					Mechanism: c.mech, TLS: srv, ServerCert: tc.cert, Lookup: lookup,
					AllowPlain: true, Advertised: c.advertised, Domain: testDomain,
				})
				if err != nil {
					t.Fatal(err)
				}
				_, out, err := converse(t, ex, c.client, nil)
				if err != nil {
					t.Fatalf("exchange failed: %v", err)
				}
				if c.mech != "PLAIN" && !bytes.HasPrefix(out, []byte("v=")) {
					t.Errorf("server-final = %q, want v=", out)
				}
				if c.mech == "PLAIN" && out != nil {
					t.Errorf("PLAIN success data = %q, want none", out)
				}
				if got := ex.Username(); got != c.wantUser {
					t.Errorf("Username() = %q, want %q", got, c.wantUser)
				}
				if got := ex.ChannelBinding(); got != wantCB {
					t.Errorf("ChannelBinding() = %q, want %q", got, wantCB)
				}
			})
		}
	}
}

// TestServerEndPointHash checks the RFC 5929 §4.1 hash choice per
// certificate signature algorithm, and that a wrong choice is refused.
func TestServerEndPointHash(t *testing.T) {
	lookup := testLookup(t)
	cases := []struct {
		alg     x509.SignatureAlgorithm
		sha256  bool // the RFC hash is SHA-256 anyway
		comment string
	}{
		{x509.ECDSAWithSHA256, true, "SHA-256 as signed"},
		{x509.ECDSAWithSHA384, false, "SHA-384 as signed"},
		{x509.ECDSAWithSHA512, false, "SHA-512 as signed"},
		{x509.PureEd25519, true, "no single hash: SHA-256 by convention"},
	}
	for _, c := range cases {
		t.Run(c.alg.String(), func(t *testing.T) {
			tc := makeCert(t, c.alg)
			srv, cli := tlsPair(t, tls.VersionTLS13, tc)
			run := func(cb []byte) error {
				t.Helper()
				ex, err := auth.NewExchange(auth.ExchangeConfig{Mechanism: "SCRAM-SHA-256-PLUS", TLS: srv, ServerCert: tc.cert, Lookup: lookup})
				if err != nil {
					t.Fatal(err)
				}
				cl := newClient(sha256.New, "alice", alicePass)
				cl.flag, cl.cbData = "p=tls-server-end-point", cb
				_, _, err = converse(t, ex, cl, nil)
				return err
			}
			if err := run(endPoint(cli.PeerCertificates[0])); err != nil {
				t.Fatalf("%s: %v", c.comment, err)
			}
			if c.sha256 {
				return
			}
			plain := sha256.Sum256(cli.PeerCertificates[0].Raw)
			if f := failureOf(t, run(plain[:])); f.Condition != "not-authorized" {
				t.Errorf("SHA-256 over a %v certificate: %q, want not-authorized", c.alg, f.Condition)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	tc := makeCert(t, x509.ECDSAWithSHA256)
	other := makeCert(t, x509.ECDSAWithSHA384)
	lookup := testLookup(t)
	srv, cli := tlsPair(t, tls.VersionTLS13, tc)
	_, cliOther := tlsPair(t, tls.VersionTLS13, tc) // another connection, same cert
	srv12, cli12 := tlsPair(t, tls.VersionTLS12, tc)

	alice := func(h func() hash.Hash) *scramClient { return newClient(h, "alice", alicePass) }
	with := func(c *scramClient, f func(*scramClient)) stepper { f(c); return c }
	long := strings.Repeat("a", auth.MaxMessage)
	flipped := exporter(t, cli)
	flipped[len(flipped)-1] ^= 1

	cases := []struct {
		name   string
		mech   string
		cfg    func(*auth.ExchangeConfig)
		client stepper
		mutate func(int, []byte) []byte
		// step is the index of the client message the server rejects; -1
		// means NewExchange itself.
		step int
		want string
	}{
		// Credentials.
		{name: "wrong password", mech: "SCRAM-SHA-256", client: newClient(sha256.New, "alice", "pencil2"), step: 1, want: "not-authorized"},
		{name: "wrong password/PLUS", mech: "SCRAM-SHA-512-PLUS", client: with(newClient(sha512.New, "alice", "Pencil"), func(c *scramClient) { c.flag, c.cbData = "p=tls-exporter", exporter(t, cli) }), step: 1, want: "not-authorized"},
		{name: "unknown user fails only at the end", mech: "SCRAM-SHA-256", client: newClient(sha256.New, "ghost", alicePass), step: 1, want: "not-authorized"},
		{name: "no verifier for this hash", mech: "SCRAM-SHA-256", client: newClient(sha256.New, "legacy", alicePass), step: 1, want: "not-authorized"},
		{name: "account without verifiers", mech: "SCRAM-SHA-1", client: newClient(sha1.New, "nokeys", alicePass), step: 1, want: "not-authorized"},
		{name: "invalid username", mech: "SCRAM-SHA-256", client: raw("n,,n=al ice,r=abc"), step: 0, want: "not-authorized"},
		{name: "empty username", mech: "SCRAM-SHA-256", client: raw("n,,n=,r=abc"), step: 0, want: "not-authorized"},
		{name: "username not a localpart", mech: "SCRAM-SHA-256", client: raw("n,,n=alice@example.com,r=abc"), step: 0, want: "not-authorized"},
		{name: "lookup error", mech: "SCRAM-SHA-256", client: newClient(sha256.New, "broken", alicePass), step: 0, want: "temporary-auth-failure"},

		// Channel binding.
		{name: "downgrade: y while PLUS offered", mech: "SCRAM-SHA-256", client: with(alice(sha256.New), func(c *scramClient) { c.flag = "y" }), step: 0, want: "not-authorized"},
		{name: "p= with a non-PLUS mechanism", mech: "SCRAM-SHA-256", client: with(alice(sha256.New), func(c *scramClient) { c.flag = "p=tls-exporter" }), step: 0, want: "malformed-request"},
		{name: "n with a PLUS mechanism", mech: "SCRAM-SHA-256-PLUS", client: alice(sha256.New), step: 0, want: "malformed-request"},
		{name: "y with a PLUS mechanism", mech: "SCRAM-SHA-256-PLUS", client: with(alice(sha256.New), func(c *scramClient) { c.flag = "y" }), step: 0, want: "malformed-request"},
		{name: "unsupported binding type", mech: "SCRAM-SHA-256-PLUS", client: with(alice(sha256.New), func(c *scramClient) { c.flag = "p=tls-unique" }), step: 0, want: "malformed-request"},
		{name: "end-point without server certificate", mech: "SCRAM-SHA-256-PLUS", cfg: func(c *auth.ExchangeConfig) { c.ServerCert = nil }, client: with(alice(sha256.New), func(c *scramClient) { c.flag = "p=tls-server-end-point" }), step: 0, want: "malformed-request"},
		{name: "tls-unique with a flipped bit", mech: "SCRAM-SHA-256-PLUS", cfg: func(c *auth.ExchangeConfig) { c.TLS = srv12 }, client: with(alice(sha256.New), func(c *scramClient) {
			u := bytes.Clone(cli12.TLSUnique)
			u[0] ^= 1
			c.flag, c.cbData = "p=tls-unique", u
		}), step: 1, want: "not-authorized"},
		{name: "tls-unique on TLS 1.3", mech: "SCRAM-SHA-256-PLUS", client: with(alice(sha256.New), func(c *scramClient) { c.flag = "p=tls-unique" }), step: 0, want: "malformed-request"},
		{name: "exporter of another connection", mech: "SCRAM-SHA-256-PLUS", client: with(alice(sha256.New), func(c *scramClient) { c.flag, c.cbData = "p=tls-exporter", exporter(t, cliOther) }), step: 1, want: "not-authorized"},
		{name: "exporter with a flipped bit", mech: "SCRAM-SHA-1-PLUS", client: with(alice(sha1.New), func(c *scramClient) { c.flag, c.cbData = "p=tls-exporter", flipped }), step: 1, want: "not-authorized"},
		{name: "end-point of another certificate", mech: "SCRAM-SHA-256-PLUS", client: with(alice(sha256.New), func(c *scramClient) { c.flag, c.cbData = "p=tls-server-end-point", endPoint(other.cert) }), step: 1, want: "not-authorized"},
		{name: "PLUS without binding data", mech: "SCRAM-SHA-256-PLUS", client: with(alice(sha256.New), func(c *scramClient) { c.flag = "p=tls-exporter" }), step: 1, want: "not-authorized"},
		{name: "c= header differs from gs2 header", mech: "SCRAM-SHA-256", client: alice(sha256.New), mutate: replaceIn(1, "c=biws", "c=eSws"), step: 1, want: "not-authorized"},
		{name: "c= drops the authzid", mech: "SCRAM-SHA-256", client: with(alice(sha256.New), func(c *scramClient) { c.authzid = "alice" }), mutate: replaceIn(1, "c=bixhPWFsaWNlLA==", "c=biws"), step: 1, want: "not-authorized"},

		// Message syntax.
		{name: "wrong nonce", mech: "SCRAM-SHA-256", client: alice(sha256.New), mutate: replaceIn(1, ",r=fyko+", ",r=fyko-"), step: 1, want: "not-authorized"},
		{name: "client nonce only", mech: "SCRAM-SHA-256", client: raw("n,,n=alice,r=abc", "c=biws,r=abc,p=AAAA"), step: 1, want: "not-authorized"},
		{name: "bad base64 in c=", mech: "SCRAM-SHA-256", client: alice(sha256.New), mutate: replaceIn(1, "c=biws", "c=b!ws"), step: 1, want: "malformed-request"},
		{name: "bad base64 in p=", mech: "SCRAM-SHA-256", client: alice(sha256.New), mutate: replaceIn(1, ",p=", ",p=*"), step: 1, want: "malformed-request"},
		{name: "proof of the wrong length", mech: "SCRAM-SHA-512", client: alice(sha256.New), step: 1, want: "malformed-request"},
		{name: "no proof", mech: "SCRAM-SHA-256", client: alice(sha256.New), mutate: replaceIn(1, ",p=", ",q="), step: 1, want: "malformed-request"},
		{name: "final attributes out of order", mech: "SCRAM-SHA-256", client: raw("n,,n=alice,r=abc", "r=abc,c=biws,p=AAAA"), step: 1, want: "malformed-request"},
		{name: "saslname =ZZ", mech: "SCRAM-SHA-256", client: raw("n,,n=al=ZZice,r=abc"), step: 0, want: "malformed-request"},
		{name: "saslname lowercase =2c", mech: "SCRAM-SHA-256", client: raw("n,,n=x=2cy,r=abc"), step: 0, want: "malformed-request"},
		{name: "saslname trailing =", mech: "SCRAM-SHA-256", client: raw("n,,n=alice=,r=abc"), step: 0, want: "malformed-request"},
		{name: "authzid =ZZ", mech: "SCRAM-SHA-256", client: raw("n,a=al=ZZ,n=alice,r=abc"), step: 0, want: "malformed-request"},
		{name: "empty authzid", mech: "SCRAM-SHA-256", client: raw("n,a=,n=alice,r=abc"), step: 0, want: "malformed-request"},
		{name: "authzid without a=", mech: "SCRAM-SHA-256", client: raw("n,alice,n=alice,r=abc"), step: 0, want: "malformed-request"},
		{name: "reserved m=", mech: "SCRAM-SHA-256", client: raw("n,,m=ext,n=alice,r=abc"), step: 0, want: "malformed-request"},
		{name: "no nonce", mech: "SCRAM-SHA-256", client: raw("n,,n=alice"), step: 0, want: "malformed-request"},
		{name: "empty nonce", mech: "SCRAM-SHA-256", client: raw("n,,n=alice,r="), step: 0, want: "malformed-request"},
		{name: "unprintable nonce", mech: "SCRAM-SHA-256", client: raw("n,,n=alice,r=a\x01b"), step: 0, want: "malformed-request"},
		{name: "no gs2 header", mech: "SCRAM-SHA-256", client: raw("n=alice,r=abc"), step: 0, want: "malformed-request"},
		{name: "unknown cbind flag", mech: "SCRAM-SHA-256", client: raw("x,,n=alice,r=abc"), step: 0, want: "malformed-request"},
		{name: "client-first too long", mech: "SCRAM-SHA-256", client: with(alice(sha256.New), func(c *scramClient) { c.ext = "x=" + long }), step: 0, want: "malformed-request"},
		{name: "client-final too long", mech: "SCRAM-SHA-256", client: alice(sha256.New), mutate: replaceIn(1, ",p=", ",x="+long+",p="), step: 1, want: "malformed-request"},

		// Authorization identity.
		{name: "authzid of someone else", mech: "SCRAM-SHA-256", client: with(alice(sha256.New), func(c *scramClient) { c.authzid = "bob" }), step: 0, want: "invalid-authzid"},
		{name: "authzid at another domain", mech: "SCRAM-SHA-256", client: with(alice(sha256.New), func(c *scramClient) { c.authzid = "alice@other.example" }), step: 0, want: "invalid-authzid"},
		{name: "authzid with resource", mech: "SCRAM-SHA-256", client: with(alice(sha256.New), func(c *scramClient) { c.authzid = "alice@example.com/phone" }), step: 0, want: "invalid-authzid"},
		{name: "authzid JID without Domain set", mech: "SCRAM-SHA-256", cfg: func(c *auth.ExchangeConfig) { c.Domain = "" }, client: with(alice(sha256.New), func(c *scramClient) { c.authzid = "alice@example.com" }), step: 0, want: "invalid-authzid"},

		// Mechanism selection and setup.
		{name: "mechanism not advertised", mech: "SCRAM-SHA-512-PLUS", cfg: func(c *auth.ExchangeConfig) { c.Advertised = []string{"SCRAM-SHA-256"} }, step: -1, want: "invalid-mechanism"},
		{name: "advertised but unsupported", mech: "DIGEST-MD5", cfg: func(c *auth.ExchangeConfig) { c.Advertised = []string{"DIGEST-MD5"} }, step: -1, want: "invalid-mechanism"},
		{name: "PLUS without channel binding", mech: "SCRAM-SHA-256-PLUS", cfg: func(c *auth.ExchangeConfig) { c.TLS = &tls.ConnectionState{} }, step: -1, want: "invalid-mechanism"},
		{name: "lowercase mechanism", mech: "scram-sha-256", step: -1, want: "invalid-mechanism"},
		{name: "no mechanism", mech: "", step: -1, want: "invalid-mechanism"},
		{name: "PLAIN not allowed", mech: "PLAIN", cfg: func(c *auth.ExchangeConfig) { c.AllowPlain = false }, step: -1, want: "invalid-mechanism"},
		{name: "PLAIN advertised but not allowed", mech: "PLAIN", cfg: func(c *auth.ExchangeConfig) { c.AllowPlain, c.Advertised = false, []string{"PLAIN"} }, step: -1, want: "invalid-mechanism"},
		{name: "no TLS", mech: "SCRAM-SHA-256", cfg: func(c *auth.ExchangeConfig) { c.TLS = nil }, step: -1, want: "encryption-required"},
		{name: "no TLS/PLAIN", mech: "PLAIN", cfg: func(c *auth.ExchangeConfig) { c.TLS = nil }, step: -1, want: "encryption-required"},
		{name: "no lookup", mech: "SCRAM-SHA-256", cfg: func(c *auth.ExchangeConfig) { c.Lookup = nil }, step: -1, want: "temporary-auth-failure"},

		// PLAIN.
		{name: "PLAIN/wrong password", mech: "PLAIN", client: raw("\x00alice\x00pencil2"), step: 0, want: "not-authorized"},
		{name: "PLAIN/password case", mech: "PLAIN", client: raw("\x00alice\x00PENCIL"), step: 0, want: "not-authorized"},
		{name: "PLAIN/unknown user", mech: "PLAIN", client: raw("\x00ghost\x00pencil"), step: 0, want: "not-authorized"},
		{name: "PLAIN/account without verifiers", mech: "PLAIN", client: raw("\x00nokeys\x00pencil"), step: 0, want: "not-authorized"},
		{name: "PLAIN/control character in password", mech: "PLAIN", client: raw("\x00alice\x00pen\x07cil"), step: 0, want: "not-authorized"},
		{name: "PLAIN/empty password", mech: "PLAIN", client: raw("\x00alice\x00"), step: 0, want: "not-authorized"},
		{name: "PLAIN/empty authcid", mech: "PLAIN", client: raw("\x00\x00pencil"), step: 0, want: "not-authorized"},
		{name: "PLAIN/two fields", mech: "PLAIN", client: raw("alice\x00pencil"), step: 0, want: "malformed-request"},
		{name: "PLAIN/four fields", mech: "PLAIN", client: raw("\x00alice\x00pencil\x00"), step: 0, want: "malformed-request"},
		{name: "PLAIN/authzid of someone else", mech: "PLAIN", client: raw("bob\x00alice\x00pencil"), step: 0, want: "invalid-authzid"},
		{name: "PLAIN/lookup error", mech: "PLAIN", client: raw("\x00broken\x00pencil"), step: 0, want: "temporary-auth-failure"},
		{name: "PLAIN/too long", mech: "PLAIN", client: raw("\x00alice\x00pencil" + long), step: 0, want: "malformed-request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := auth.ExchangeConfig{
				Mechanism: c.mech, TLS: srv, ServerCert: tc.cert, Lookup: lookup,
				AllowPlain: true, Domain: testDomain,
			}
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			ex, err := auth.NewExchange(cfg)
			if c.step == -1 {
				if ex != nil {
					t.Errorf("NewExchange returned an exchange with error %v", err)
				}
				if f := failureOf(t, err); f.Condition != c.want {
					t.Fatalf("NewExchange: %q (%v), want %q", f.Condition, err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			step, _, err := converse(t, ex, c.client, c.mutate)
			if err == nil {
				t.Fatalf("exchange succeeded as %q, want %q", ex.Username(), c.want)
			}
			if f := failureOf(t, err); f.Condition != c.want || step != c.step {
				t.Fatalf("message %d: %q (%v), want message %d: %q", step, f.Condition, err, c.step, c.want)
			}
			if errors.Is(err, errDB) != (c.want == "temporary-auth-failure") {
				t.Errorf("cause %v: want errDB exactly for temporary-auth-failure", err)
			}
			// A failure ends the exchange and authenticates nobody.
			if ex.Username() != "" || ex.ChannelBinding() != "" {
				t.Errorf("after failure Username() = %q, ChannelBinding() = %q", ex.Username(), ex.ChannelBinding())
			}
			_, _, err = ex.Step(context.Background(), []byte("c=biws,r=abc,p=AAAA"))
			if f := failureOf(t, err); f.Condition != "malformed-request" {
				t.Errorf("Step after failure: %q, want malformed-request", f.Condition)
			}
		})
	}
}

// TestMessageLimit pins MaxMessage as inclusive.
func TestMessageLimit(t *testing.T) {
	tc := makeCert(t, x509.ECDSAWithSHA256)
	srv, _ := tlsPair(t, tls.VersionTLS13, tc)
	for _, extra := range []int{0, 1} {
		t.Run(strconv.Itoa(auth.MaxMessage+extra), func(t *testing.T) {
			ex, err := auth.NewExchange(auth.ExchangeConfig{Mechanism: "SCRAM-SHA-256", TLS: srv, Lookup: testLookup(t)})
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(sha256.New, "alice", alicePass)
			c.ext = "x="
			c.ext += strings.Repeat("a", auth.MaxMessage+extra-len(c.first()))
			_, _, err = converse(t, ex, c, nil)
			if extra == 0 && err != nil {
				t.Fatalf("message of exactly MaxMessage bytes: %v", err)
			}
			if extra == 1 && failureOf(t, err).Condition != "malformed-request" {
				t.Fatalf("message over MaxMessage: %v", err)
			}
		})
	}
}

// serverFirst starts an exchange for user and returns the salt and
// iteration count it is shown.
func serverFirst(tb testing.TB, cfg auth.ExchangeConfig, user string) (salt string, iter int, nonce string) {
	tb.Helper()
	ex, err := auth.NewExchange(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	out, _, err := ex.Step(context.Background(), []byte("n,,n="+user+",r=abc"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range strings.Split(string(out), ",") {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "s":
			salt = v
		case "i":
			iter, _ = strconv.Atoi(v)
		case "r":
			nonce = v
		}
	}
	return salt, iter, nonce
}

// TestNoEnumeration checks that server-first looks the same for unknown and
// known accounts: stable per user across attempts, different per user and
// hash, same salt length and iteration count.
func TestNoEnumeration(t *testing.T) {
	tc := makeCert(t, x509.ECDSAWithSHA256)
	srv, _ := tlsPair(t, tls.VersionTLS13, tc)
	cfg := func(mech string, fake int, secret []byte) auth.ExchangeConfig {
		return auth.ExchangeConfig{Mechanism: mech, TLS: srv, Lookup: testLookup(t), FakeIterations: fake, Secret: secret}
	}
	sha256cfg := cfg("SCRAM-SHA-256", auth.MinIterations, nil)
	realSalt, realIter, _ := serverFirst(t, sha256cfg, "alice")
	creds, _ := credsOnce()
	if want := base64.StdEncoding.EncodeToString(creds[0].SHA256.Salt); realSalt != want {
		t.Fatalf("alice's salt %q, want stored %q", realSalt, want)
	}

	g1, i1, n1 := serverFirst(t, sha256cfg, "ghost")
	g2, i2, n2 := serverFirst(t, sha256cfg, "ghost")
	if g1 != g2 || i1 != i2 {
		t.Errorf("unknown user's salt/count changed between attempts: %s/%d vs %s/%d", g1, i1, g2, i2)
	}
	if n1 == n2 {
		t.Errorf("server nonce repeated: %q", n1)
	}
	if i1 != realIter {
		t.Errorf("unknown user shown i=%d, real account i=%d", i1, realIter)
	}
	if b1, _ := base64.StdEncoding.DecodeString(g1); len(b1) != len(creds[0].SHA256.Salt) {
		t.Errorf("fake salt is %d bytes, real ones %d", len(b1), len(creds[0].SHA256.Salt))
	}
	checks := []struct {
		name       string
		a, b       func() string
		wantSame   bool
		whySamness string
	}{
		{"other unknown user", func() string { return g1 }, func() string { s, _, _ := serverFirst(t, sha256cfg, "ghost2"); return s }, false, "salts must differ per user"},
		{"case variant", func() string { return g1 }, func() string { s, _, _ := serverFirst(t, sha256cfg, "GHOST"); return s }, true, "usernames are case-mapped first"},
		{"other hash", func() string { return g1 }, func() string { s, _, _ := serverFirst(t, cfg("SCRAM-SHA-1", 0, nil), "ghost"); return s }, false, "salts must differ per hash"},
		{"missing verifier", func() string { s, _, _ := serverFirst(t, sha256cfg, "legacy"); return s }, func() string { s, _, _ := serverFirst(t, sha256cfg, "legacy"); return s }, true, "a known account without this hash must look stable too"},
		{"same secret", func() string { s, _, _ := serverFirst(t, cfg("SCRAM-SHA-256", 0, []byte("k1")), "ghost"); return s }, func() string { s, _, _ := serverFirst(t, cfg("SCRAM-SHA-256", 0, []byte("k1")), "ghost"); return s }, true, "a configured secret keeps fake salts across restarts"},
		{"other secret", func() string { s, _, _ := serverFirst(t, cfg("SCRAM-SHA-256", 0, []byte("k1")), "ghost"); return s }, func() string { s, _, _ := serverFirst(t, cfg("SCRAM-SHA-256", 0, []byte("k2")), "ghost"); return s }, false, "the secret keys the salt"},
	}
	for _, c := range checks {
		if a, b := c.a(), c.b(); (a == b) != c.wantSame {
			t.Errorf("%s: %q vs %q: %s", c.name, a, b, c.whySamness)
		}
	}
	for _, c := range []struct{ fake, want int }{{0, auth.MinIterations}, {100, auth.MinIterations}, {10000, 10000}} {
		if _, i, _ := serverFirst(t, cfg("SCRAM-SHA-512", c.fake, nil), "ghost"); i != c.want {
			t.Errorf("FakeIterations %d: shown i=%d, want %d", c.fake, i, c.want)
		}
	}
}

// TestEmptyInitialResponse: without an initial response (RFC 6120 §6.4.2)
// the server sends one empty challenge and the exchange continues; a
// second empty message is malformed.
func TestEmptyInitialResponse(t *testing.T) {
	tc := makeCert(t, x509.ECDSAWithSHA256)
	srv, cli := tlsPair(t, tls.VersionTLS13, tc)
	lookup := testLookup(t)
	cases := []struct {
		mech   string
		client func() stepper
	}{
		{"SCRAM-SHA-256", func() stepper { return newClient(sha256.New, "alice", alicePass) }},
		{"SCRAM-SHA-256-PLUS", func() stepper {
			c := newClient(sha256.New, "alice", alicePass)
			c.flag, c.cbData = "p=tls-exporter", exporter(t, cli)
			return c
		}},
		{"PLAIN", func() stepper { return raw("\x00alice\x00" + alicePass) }},
	}
	for _, c := range cases {
		t.Run(c.mech, func(t *testing.T) {
			newEx := func() *auth.Exchange {
				ex, err := auth.NewExchange(auth.ExchangeConfig{Mechanism: c.mech, TLS: srv, ServerCert: tc.cert, Lookup: lookup, AllowPlain: true})
				if err != nil {
					t.Fatal(err)
				}
				out, done, err := ex.Step(context.Background(), nil)
				if err != nil || done || len(out) != 0 {
					t.Fatalf("empty initial response: out %q, done %v, err %v; want an empty challenge", out, done, err)
				}
				return ex
			}
			ex := newEx()
			if _, _, err := converse(t, ex, c.client(), nil); err != nil {
				t.Fatalf("after the empty challenge: %v", err)
			}
			if ex.Username() != "alice" {
				t.Errorf("Username() = %q", ex.Username())
			}
			ex = newEx()
			_, _, err := ex.Step(context.Background(), []byte{})
			if f := failureOf(t, err); f.Condition != "malformed-request" {
				t.Errorf("second empty message: %q, want malformed-request", f.Condition)
			}
		})
	}
}

// TestStepAfterSuccess: a finished exchange refuses more input, and the
// identity is only visible once authenticated.
func TestStepAfterSuccess(t *testing.T) {
	tc := makeCert(t, x509.ECDSAWithSHA256)
	srv, cli := tlsPair(t, tls.VersionTLS13, tc)
	cases := []struct {
		mech   string
		client stepper
	}{
		{"SCRAM-SHA-1", newClient(sha1.New, "alice", alicePass)},
		{"SCRAM-SHA-256-PLUS", mellium(sasl.ScramSha256Plus, cli, auth.Mechanisms(srv, nil, false), "alice", alicePass, "")},
		{"PLAIN", raw("\x00alice\x00" + alicePass)},
	}
	for _, c := range cases {
		t.Run(c.mech, func(t *testing.T) {
			ex, err := auth.NewExchange(auth.ExchangeConfig{Mechanism: c.mech, TLS: srv, Lookup: testLookup(t), AllowPlain: true})
			if err != nil {
				t.Fatal(err)
			}
			check := func(i int, msg []byte) []byte {
				if ex.Username() != "" || ex.ChannelBinding() != "" {
					t.Errorf("before message %d: Username() = %q, ChannelBinding() = %q; want empty until success", i, ex.Username(), ex.ChannelBinding())
				}
				return msg
			}
			if _, _, err := converse(t, ex, c.client, check); err != nil {
				t.Fatal(err)
			}
			for _, in := range [][]byte{nil, []byte("n,,n=alice,r=abc"), []byte("c=biws,r=abc,p=AAAA")} {
				out, done, err := ex.Step(context.Background(), in)
				if f := failureOf(t, err); f.Condition != "malformed-request" || done || out != nil {
					t.Errorf("Step(%q) after success = %q, %v, %q", in, out, done, f.Condition)
				}
			}
			if ex.Username() != "alice" {
				t.Errorf("Username() after refused extra step = %q", ex.Username())
			}
		})
	}
}

func TestMechanisms(t *testing.T) {
	tc := makeCert(t, x509.ECDSAWithSHA256)
	srv13, _ := tlsPair(t, tls.VersionTLS13, tc)
	srv12, _ := tlsPair(t, tls.VersionTLS12, tc)
	plus := []string{"SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"}
	scram := []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"}
	both := []string{auth.CBExporter, auth.CBServerEndPoint}
	both12 := []string{auth.CBExporter, auth.CBServerEndPoint, auth.CBUnique}
	cases := []struct {
		name    string
		cs      *tls.ConnectionState
		cert    *x509.Certificate
		plain   bool
		wantCB  []string
		wantMec []string
	}{
		{"no TLS", nil, tc.cert, true, nil, nil},
		{"TLS 1.3 cert plain", srv13, tc.cert, true, both, slices.Concat(plus, scram, []string{"PLAIN"})},
		{"TLS 1.3 cert", srv13, tc.cert, false, both, slices.Concat(plus, scram)},
		{"TLS 1.3 no cert", srv13, nil, false, []string{auth.CBExporter}, slices.Concat(plus, scram)},
		{"TLS 1.3 no cert plain", srv13, nil, true, []string{auth.CBExporter}, slices.Concat(plus, scram, []string{"PLAIN"})},
		// Go always negotiates the extended master secret, which RFC 9266
		// §3 requires for tls-exporter on TLS 1.2.
		{"TLS 1.2 cert plain", srv12, tc.cert, true, both12, slices.Concat(plus, scram, []string{"PLAIN"})},
		{"TLS 1.2 no cert", srv12, nil, false, []string{auth.CBExporter, auth.CBUnique}, slices.Concat(plus, scram)},
		// Hand-made states (as in callers' tests) have no exporter and must
		// not panic; before the handshake nothing can be bound.
		{"handshake incomplete", &tls.ConnectionState{}, tc.cert, false, nil, scram},
		{"literal state with cert", &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}, tc.cert, false, []string{auth.CBServerEndPoint}, slices.Concat(plus, scram)},
		{"literal state", &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}, nil, true, nil, slices.Concat(scram, []string{"PLAIN"})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := auth.ChannelBindings(c.cs, c.cert); !slices.Equal(got, c.wantCB) {
				t.Errorf("ChannelBindings = %q, want %q", got, c.wantCB)
			}
			if got := auth.Mechanisms(c.cs, c.cert, c.plain); !slices.Equal(got, c.wantMec) {
				t.Errorf("Mechanisms = %q, want %q", got, c.wantMec)
			}
		})
	}
}

// rfcKey derives a SCRAMKey independently of the package (RFC 5802 §3).
func rfcKey(tb testing.TB, h func() hash.Hash, password string, salt []byte, iter int) auth.SCRAMKey {
	tb.Helper()
	salted, err := pbkdf2.Key(h, password, salt, iter, h().Size())
	if err != nil {
		tb.Fatal(err)
	}
	clientKey := macSum(h, salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	return auth.SCRAMKey{Salt: salt, Iter: iter, StoredKey: stored.Sum(nil), ServerKey: macSum(h, salted, "Server Key")}
}

func TestNewCredentials(t *testing.T) {
	hashes := []struct {
		name string
		h    func() hash.Hash
		key  func(*auth.Credentials) *auth.SCRAMKey
	}{
		{"SHA-1", sha1.New, func(c *auth.Credentials) *auth.SCRAMKey { return &c.SHA1 }},
		{"SHA-256", sha256.New, func(c *auth.Credentials) *auth.SCRAMKey { return &c.SHA256 }},
		{"SHA-512", sha512.New, func(c *auth.Credentials) *auth.SCRAMKey { return &c.SHA512 }},
	}
	for _, c := range []struct{ iter, want int }{{-1, 4096}, {0, 4096}, {1, 4096}, {4095, 4096}, {4096, 4096}, {5000, 5000}} {
		t.Run("iter="+strconv.Itoa(c.iter), func(t *testing.T) {
			cr, err := auth.NewCredentials(alicePass, c.iter)
			if err != nil {
				t.Fatal(err)
			}
			salts := map[string]bool{}
			for _, h := range hashes {
				k := h.key(&cr)
				if k.Iter != c.want {
					t.Errorf("%s: Iter %d, want %d", h.name, k.Iter, c.want)
				}
				if len(k.Salt) < 16 {
					t.Errorf("%s: salt of %d bytes", h.name, len(k.Salt))
				}
				salts[string(k.Salt)] = true
				want := rfcKey(t, h.h, alicePass, k.Salt, k.Iter)
				if !bytes.Equal(k.StoredKey, want.StoredKey) || !bytes.Equal(k.ServerKey, want.ServerKey) {
					t.Errorf("%s: keys differ from RFC 5802 derivation", h.name)
				}
			}
			if len(salts) != len(hashes) {
				t.Errorf("salts repeat across hashes")
			}
		})
	}

	a, errA := auth.NewCredentials(alicePass, 0)
	b, errB := auth.NewCredentials(alicePass, 0)
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.SHA256.Salt, b.SHA256.Salt) || bytes.Equal(a.SHA256.StoredKey, b.SHA256.StoredKey) {
		t.Error("two NewCredentials calls share a salt")
	}

	for _, pw := range []string{"", "pen\x00cil", "pen\tcil", "pen\u200bcil"} {
		if _, err := auth.NewCredentials(pw, 0); err == nil {
			t.Errorf("NewCredentials(%q) accepted an invalid password", pw)
		}
	}
}

func TestVerifyPassword(t *testing.T) {
	creds, err := credsOnce()
	if err != nil {
		t.Fatal(err)
	}
	zoe := creds[1]
	// OpaqueString (RFC 8265 §4.2) maps non-ASCII spaces to U+0020 and
	// applies NFC, but keeps case and width: passwords are opaque.
	cases := []struct {
		name string
		pw   string
		want bool
	}{
		{"exact", zoePass, true},
		{"NFD", "cre\u0300me bru\u0302le\u0301e", true},
		{"ideographic space", "crème\u3000brûlée", true},
		{"no-break space", "crème\u00a0brûlée", true},
		{"upper case", "CRÈME BRÛLÉE", false},
		{"fullwidth letters", "ｃｒèｍｅ ｂｒûｌéｅ", false},
		{"wrong", "creme brulee", false},
		{"trailing space", zoePass + " ", false},
		{"control character", "crème\x07brûlée", false},
		{"empty", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := auth.VerifyPassword(zoe, c.pw); got != c.want {
				t.Errorf("VerifyPassword(%q) = %v, want %v", c.pw, got, c.want)
			}
		})
	}

	alice := creds[0]
	broken := alice
	broken.SHA512.StoredKey = append([]byte(nil), alice.SHA512.StoredKey...)
	broken.SHA512.StoredKey[0] ^= 1
	stores := []struct {
		name string
		c    auth.Credentials
		want bool
	}{
		{"all hashes", alice, true},
		{"SHA-1 only", auth.Credentials{SHA1: alice.SHA1}, true},
		{"SHA-256 only", auth.Credentials{SHA256: alice.SHA256}, true},
		{"none", auth.Credentials{}, false},
		// The strongest verifier decides; a weaker match does not rescue it.
		{"corrupt SHA-512", broken, false},
	}
	for _, s := range stores {
		t.Run("store/"+s.name, func(t *testing.T) {
			if got := auth.VerifyPassword(s.c, alicePass); got != s.want {
				t.Errorf("VerifyPassword = %v, want %v", got, s.want)
			}
		})
	}
}

func TestNormalizePassword(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"pencil", "pencil", true},
		{"e\u0301", "\u00e9", true},
		{"a\u3000b", "a b", true},
		{"ＡＢ", "ＡＢ", true}, // width is kept (RFC 8265 §4.2)
		{"", "", false},
		{"a\x00b", "", false},
		{"a\nb", "", false},
	}
	for _, c := range cases {
		got, err := auth.NormalizePassword(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("NormalizePassword(%q) = %q, %v; want %q, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestFailureError(t *testing.T) {
	cases := []struct {
		f    *auth.Failure
		want string
	}{
		{&auth.Failure{Condition: "not-authorized"}, "sasl not-authorized"},
		{&auth.Failure{Condition: "malformed-request", Text: "bad"}, "sasl malformed-request: bad"},
		{&auth.Failure{Condition: "temporary-auth-failure", Text: "t", Err: errDB}, "sasl temporary-auth-failure: " + errDB.Error()},
	}
	for _, c := range cases {
		if got := c.f.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	if err := error(cases[2].f); !errors.Is(err, errDB) {
		t.Error("Failure does not unwrap to its cause")
	}
}
