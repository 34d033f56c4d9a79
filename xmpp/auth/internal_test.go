package auth

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"testing"
)

// TestRFCVectors replays the published exchanges of RFC 5802 §5 and
// RFC 7677 §3. It is internal because the server nonce is random: after
// the real client-first step the test substitutes the RFC's server-first.
func TestRFCVectors(t *testing.T) {
	cases := []struct {
		mech, first, serverFirst, final, serverFinal string
	}{
		{
			"SCRAM-SHA-1",
			"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
			"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
		},
		{
			"SCRAM-SHA-256",
			"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		},
	}
	for _, c := range cases {
		t.Run(c.mech, func(t *testing.T) {
			h := scramHashes[c.mech]
			salt := map[string]string{"SCRAM-SHA-1": "QSXCR+Q6sek8bf92", "SCRAM-SHA-256": "W22ZaJ0SNY7soEsUEjb6gQ=="}[c.mech]
			s, err := base64.StdEncoding.DecodeString(salt)
			if err != nil {
				t.Fatal(err)
			}
			key, err := deriveKey(h, "pencil", s, 4096)
			if err != nil {
				t.Fatal(err)
			}
			var creds Credentials
			*creds.key(h) = key
			ex, err := NewExchange(ExchangeConfig{
				Mechanism: c.mech,
				TLS:       &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true},
				Lookup:    func(context.Context, string) (Credentials, error) { return creds, nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := ex.Step(context.Background(), []byte(c.first))
			if err != nil {
				t.Fatal(err)
			}
			if want := "s=" + salt + ",i=4096"; string(out[len(out)-len(want):]) != want {
				t.Fatalf("server-first %q does not end in %q", out, want)
			}
			ex.srvFirst, ex.nonce = c.serverFirst, c.serverFirst[2:len(c.serverFirst)-len(salt)-10]
			out, done, err := ex.Step(context.Background(), []byte(c.final))
			if err != nil || !done {
				t.Fatalf("client-final: done %v, err %v", done, err)
			}
			if string(out) != c.serverFinal {
				t.Errorf("server-final %q, want %q", out, c.serverFinal)
			}
			if ex.Username() != "user" {
				t.Errorf("Username() = %q", ex.Username())
			}
		})
	}
}
