package auth_test

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha1" //nolint:gosec // SCRAM-SHA-1 is under test.
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"testing"

	"golang.org/x/text/secure/precis"

	"gatehouse/xmpp/auth"
)

var fuzzMechs = []struct {
	name string
	h    func() hash.Hash
}{
	{"SCRAM-SHA-1", sha1.New}, {"SCRAM-SHA-256", sha256.New}, {"SCRAM-SHA-512", sha512.New},
	{"SCRAM-SHA-1-PLUS", sha1.New}, {"SCRAM-SHA-256-PLUS", sha256.New}, {"SCRAM-SHA-512-PLUS", sha512.New},
}

// cheapCreds are alice's verifiers at one PBKDF2 iteration, built without
// NewCredentials (which enforces 4096) so the fuzzer stays fast. It also
// returns the SaltedPassword per mechanism for the in-test client.
func cheapCreds(tb testing.TB) (auth.Credentials, map[string][]byte) {
	tb.Helper()
	var c auth.Credentials
	salted := map[string][]byte{}
	for i, m := range fuzzMechs[:3] {
		salt := []byte(fmt.Sprintf("fuzz-salt-%d----", i))
		*[]*auth.SCRAMKey{&c.SHA1, &c.SHA256, &c.SHA512}[i] = rfcKey(tb, m.h, alicePass, salt, 1)
		sp, err := pbkdf2.Key(m.h, alicePass, salt, 1, m.h().Size())
		if err != nil {
			tb.Fatal(err)
		}
		salted[m.name] = sp
	}
	return c, salted
}

func fuzzLookup(c auth.Credentials) auth.Lookup {
	return func(_ context.Context, user string) (auth.Credentials, error) {
		switch user {
		case "alice":
			return c, nil
		case "broken":
			return auth.Credentials{}, errDB
		}
		return auth.Credentials{}, auth.ErrNoUser
	}
}

func checkFailure(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var f *auth.Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not an *auth.Failure", err, err)
	}
	if !conditions[f.Condition] {
		t.Fatalf("unknown condition %q", f.Condition)
	}
}

// FuzzSCRAMServer feeds arbitrary client-first and client-final messages.
// In the final message "{r}" becomes the server nonce, "{c}" the correct
// channel-binding attribute value and a trailing ",p={p}" the correct proof
// for alice, so the fuzzer also explores the paths up to and past success.
func FuzzSCRAMServer(f *testing.F) {
	tc := makeCert(f, x509.ECDSAWithSHA256)
	srv, cli := tlsPair(f, tls.VersionTLS13, tc)
	cbData := map[string][]byte{
		"tls-exporter":         exporter(f, cli),
		"tls-server-end-point": endPoint(cli.PeerCertificates[0]),
	}
	creds, salted := cheapCreds(f)
	lookup := fuzzLookup(creds)
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, sel uint8, first, final []byte) {
		m := fuzzMechs[int(sel)%len(fuzzMechs)]
		ex, err := auth.NewExchange(auth.ExchangeConfig{
			Mechanism: m.name, TLS: srv, ServerCert: tc.cert, Lookup: lookup,
			Domain: testDomain, FakeIterations: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		out, done, err := ex.Step(ctx, first)
		checkFailure(t, err)
		if done {
			t.Fatal("done after client-first")
		}
		if err != nil || len(first) == 0 {
			return
		}
		if ex.Username() != "" {
			t.Fatalf("Username() = %q before authentication", ex.Username())
		}
		serverFirst := string(out)
		nonce, _, _ := strings.Cut(strings.TrimPrefix(serverFirst, "r="), ",")
		if !strings.HasPrefix(serverFirst, "r=") || len(nonce) <= 32 ||
			!strings.Contains(string(first), ",r="+nonce[:len(nonce)-32]) {
			t.Fatalf("server-first %q does not extend the client nonce of %q", serverFirst, first)
		}

		// Fill in the placeholders as an honest client would.
		flag, rest, _ := strings.Cut(string(first), ",")
		authz, bare, _ := strings.Cut(rest, ",")
		gs2 := flag + "," + authz + ","
		msg := string(final)
		msg = strings.ReplaceAll(msg, "{r}", nonce)
		cb := append([]byte(gs2), cbData[strings.TrimPrefix(flag, "p=")]...)
		msg = strings.ReplaceAll(msg, "{c}", base64.StdEncoding.EncodeToString(cb))
		var wantV string
		if without, ok := strings.CutSuffix(msg, ",p={p}"); ok {
			proof, v := scramProof(m.h, salted[strings.TrimSuffix(m.name, "-PLUS")], bare+","+serverFirst+","+without)
			msg = without + ",p=" + base64.StdEncoding.EncodeToString(proof)
			wantV = "v=" + base64.StdEncoding.EncodeToString(v)
		}

		out, done, err = ex.Step(ctx, []byte(msg))
		checkFailure(t, err)
		switch {
		case done && wantV == "":
			t.Fatalf("authenticated with a forged proof: %q / %q", first, msg)
		case done && string(out) != wantV:
			t.Fatalf("server-final %q, want %q", out, wantV)
		case done && ex.Username() != "alice":
			t.Fatalf("authenticated as %q", ex.Username())
		case done && strings.HasSuffix(m.name, "-PLUS") != (ex.ChannelBinding() != ""):
			t.Fatalf("%s succeeded with channel binding %q", m.name, ex.ChannelBinding())
		case !done && (ex.Username() != "" || out != nil):
			t.Fatalf("failed exchange: Username() = %q, out %q", ex.Username(), out)
		}
		_, _, err = ex.Step(ctx, []byte(msg))
		var fl *auth.Failure
		if !errors.As(err, &fl) || fl.Condition != "malformed-request" {
			t.Fatalf("Step after the end: %v", err)
		}
	})
}

// FuzzPLAIN feeds arbitrary PLAIN messages; only alice/pencil (after PRECIS
// preparation) may authenticate.
func FuzzPLAIN(f *testing.F) {
	tc := makeCert(f, x509.ECDSAWithSHA256)
	srv, _ := tlsPair(f, tls.VersionTLS13, tc)
	creds, _ := cheapCreds(f)
	lookup := fuzzLookup(creds)
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, in []byte) {
		ex, err := auth.NewExchange(auth.ExchangeConfig{
			Mechanism: "PLAIN", TLS: srv, Lookup: lookup, AllowPlain: true,
			Domain: testDomain, FakeIterations: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		out, done, err := ex.Step(ctx, in)
		checkFailure(t, err)
		if out != nil {
			t.Fatalf("PLAIN replied %q", out)
		}
		parts := bytes.Split(in, []byte{0})
		valid := false
		if len(parts) == 3 && len(in) <= auth.MaxMessage {
			u, errU := precis.UsernameCaseMapped.String(string(parts[1]))
			p, errP := precis.OpaqueString.String(string(parts[2]))
			valid = errU == nil && errP == nil && u == "alice" && p == alicePass
		}
		if done && !valid {
			t.Fatalf("authenticated %q as %q", in, ex.Username())
		}
		if valid && len(parts[0]) == 0 && !done {
			t.Fatalf("alice with the right password refused: %q: %v", in, err)
		}
		if done != (ex.Username() == "alice") {
			t.Fatalf("done %v but Username() = %q", done, ex.Username())
		}
		if len(in) == 0 {
			return // the empty challenge; the exchange goes on
		}
		if _, _, err := ex.Step(ctx, in); err == nil {
			t.Fatal("Step after the end succeeded")
		}
	})
}

// BenchmarkSCRAMSHA256 runs whole exchanges. The client reuses its
// SaltedPassword, as real clients do, so the figures are the server's cost
// plus a few client HMACs rather than the client's PBKDF2.
func BenchmarkSCRAMSHA256(b *testing.B) {
	tc := makeCert(b, x509.ECDSAWithSHA256)
	srv, cli := tlsPair(b, tls.VersionTLS13, tc)
	lookup := testLookup(b)
	for _, c := range []struct{ mech, flag string }{
		{"SCRAM-SHA-256", "n"},
		{"SCRAM-SHA-256-PLUS", "p=tls-exporter"},
	} {
		b.Run(c.mech, func(b *testing.B) {
			warm := newClient(sha256.New, "alice", alicePass)
			warm.flag = c.flag
			if c.flag != "n" {
				warm.cbData = exporter(b, cli)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				cl := *warm
				ex, err := auth.NewExchange(auth.ExchangeConfig{Mechanism: c.mech, TLS: srv, Lookup: lookup})
				if err != nil {
					b.Fatal(err)
				}
				_, first, _ := cl.Step(nil)
				sf, _, err := ex.Step(ctx, first)
				if err != nil {
					b.Fatal(err)
				}
				_, final, err := cl.Step(sf)
				if err != nil {
					b.Fatal(err)
				}
				v, done, err := ex.Step(ctx, final)
				if err != nil || !done {
					b.Fatal(done, err)
				}
				if _, _, err := cl.Step(v); err != nil {
					b.Fatal(err)
				}
				*warm = cl // keep the SaltedPassword cache
				warm.state = 0
			}
		})
	}
}

func BenchmarkNewCredentials(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := auth.NewCredentials(alicePass, auth.MinIterations); err != nil {
			b.Fatal(err)
		}
	}
}
