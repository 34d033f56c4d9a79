package s2s_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"gatehouse/s2s"
	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// rawPeer is a hand-driven remote server for protocol tests.
type rawPeer struct {
	t   *testing.T
	nc  net.Conn
	dec *xml.Decoder
	id  string // the stream id the server gave us
}

func dialRaw(t *testing.T, addr string) *rawPeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, xmpptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(xmpptest.Timeout))
	t.Cleanup(func() { _ = nc.Close() })
	return &rawPeer{t: t, nc: nc}
}

func (p *rawPeer) send(s string) {
	p.t.Helper()
	if _, err := p.nc.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// open sends a stream header and returns the features (or the stream
// error the server answered with).
func (p *rawPeer) open(from, to string) (*stanza.Element, error) {
	p.t.Helper()
	p.dec = xml.NewDecoder(p.nc)
	fromAttr := ""
	if from != "" {
		fromAttr = " from='" + from + "'"
	}
	p.send(`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='` + to + `'` + fromAttr + ` version='1.0'>`)
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					p.id = a.Value
				}
			}
			break
		}
	}
	return p.next()
}

// next reads one top-level element; a stream error is returned as an
// error whose text is the condition.
func (p *rawPeer) next() (*stanza.Element, error) {
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := stanza.ReadElement(p.dec, t.Copy())
			if err != nil {
				return nil, err
			}
			el.Name = t.Name
			if t.Name.Local == "error" && t.Name.Space == stanza.NSStream {
				for _, c := range el.Elements() {
					if c.Name.Local != "text" {
						return nil, &streamErr{cond: c.Name.Local}
					}
				}
			}
			return el, nil
		case xml.EndElement:
			return nil, errors.New("stream closed")
		}
	}
}

type streamErr struct{ cond string }

func (e *streamErr) Error() string { return "stream error " + e.cond }

// expectStreamError reads until the server's stream error.
func (p *rawPeer) expectStreamError(cond string) {
	p.t.Helper()
	for {
		el, err := p.next()
		var se *streamErr
		if errors.As(err, &se) {
			if se.cond != cond {
				p.t.Fatalf("stream error %s, want %s", se.cond, cond)
			}
			return
		}
		if err != nil {
			p.t.Fatalf("waiting for stream error %s: %v", cond, err)
		}
		_ = el
	}
}

// startTLS negotiates STARTTLS presenting cert (may be nil) and reopens.
func (p *rawPeer) startTLS(from, to string, cert *tls.Certificate) *stanza.Element {
	p.t.Helper()
	p.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if el, err := p.next(); err != nil || el.Name.Local != "proceed" {
		p.t.Fatalf("starttls: %v %v", el, err)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: to} //nolint:gosec // test peer
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(p.nc, cfg)
	if err := tc.Handshake(); err != nil {
		p.t.Fatal(err)
	}
	p.nc = tc
	feats, err := p.open(from, to)
	if err != nil {
		p.t.Fatal(err)
	}
	return feats
}

// saslExternal authenticates as from with its certificate.
func (p *rawPeer) saslExternal(from, to string) {
	p.t.Helper()
	p.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte(from)) + `</auth>`)
	if el, err := p.next(); err != nil || el.Name.Local != "success" {
		p.t.Fatalf("SASL EXTERNAL: %v %v", el, err)
	}
	if _, err := p.open(from, to); err != nil {
		p.t.Fatal(err)
	}
}

// certPeer starts a federated server b.localhost that trusts a test CA
// and returns a raw peer authenticated as evil.localhost.
func certPeer(t *testing.T, opts ...xmpptest.Option) (*xmpptest.TestServer, *rawPeer) {
	t.Helper()
	ca := s2stest.NewCA(t)
	b := xmpptest.RunServer(t, append([]xmpptest.Option{s2stest.Federated(domB), func(c *config.Config) { c.S2S.CAFile = ca.File }}, opts...)...)
	b.AddUser(t, "bob", pw)
	issued := ca.Issue(t, "evil.localhost")
	cert, err := tls.LoadX509KeyPair(issued.CertFile, issued.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := b.S2SAddrs()
	p := dialRaw(t, addr[0])
	if _, err := p.open("evil.localhost", domB); err != nil {
		t.Fatal(err)
	}
	feats := p.startTLS("evil.localhost", domB, &cert)
	if ms := feats.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms"); ms == nil {
		t.Fatalf("no SASL EXTERNAL offered: %s", feats)
	}
	p.saslExternal("evil.localhost", domB)
	return b, p
}

// TestInboundStanzaChecks: every stanza's 'from' must be authenticated on
// the stream and its 'to' ours (RFC 6120 §4.9.3, §8.1.1.2, §8.1.2.2).
func TestInboundStanzaChecks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, stanza, cond string
	}{
		{"spoofed from", `<message from='ceo@a.localhost' to='bob@b.localhost'><body>pay this invoice</body></message>`, "invalid-from"},
		{"no from", `<message to='bob@b.localhost'><body>x</body></message>`, "improper-addressing"},
		{"no to", `<message from='m@evil.localhost'><body>x</body></message>`, "improper-addressing"},
		{"malformed from", `<message from='@evil.localhost' to='bob@b.localhost'><body>x</body></message>`, "improper-addressing"},
		{"relay", `<message from='m@evil.localhost' to='x@c.example'><body>x</body></message>`, "host-unknown"},
		{"unknown element", `<foo xmlns='urn:example'/>`, "unsupported-stanza-type"},
		// The limits of c2s hold on s2s too (limits.max_stanza_bytes 256 KiB,
		// max_depth 32 by default).
		{"oversized stanza", `<message from='m@evil.localhost' to='bob@b.localhost'><body>` + strings.Repeat("x", 300<<10) + `</body></message>`, "policy-violation"},
		{"nested too deeply", `<message from='m@evil.localhost' to='bob@b.localhost'>` + strings.Repeat("<x>", 40) + strings.Repeat("</x>", 40) + `</message>`, "policy-violation"},
		{"not well-formed", `<message from='m@evil.localhost' to='bob@b.localhost'><body>x</bogus></message>`, "not-well-formed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, p := certPeer(t)
			bob := online(t, b, "bob")
			p.send(`<message from='m@evil.localhost' to='bob@b.localhost' id='ok'><body>legit</body></message>`)
			bob.Expect(xmpptest.IsMessage("legit"))
			p.send(tc.stanza)
			p.expectStreamError(tc.cond)
			bob.Ping()
			bob.ExpectNone(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() != "legit" }, 0)
		})
	}
}

func TestInboundNegotiation(t *testing.T) {
	t.Parallel()
	t.Run("TLS required", func(t *testing.T) {
		t.Parallel()
		b := xmpptest.RunServer(t, s2stest.Federated(domB))
		addr, _ := b.S2SAddrs()
		p := dialRaw(t, addr[0])
		feats, err := p.open("a.localhost", domB)
		if err != nil {
			t.Fatal(err)
		}
		if tlsEl := feats.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls"); tlsEl == nil || tlsEl.Child("urn:ietf:params:xml:ns:xmpp-tls", "required") == nil {
			t.Fatalf("features %s, want required STARTTLS", feats)
		}
		if feats.Child("urn:xmpp:features:dialback", "dialback") != nil {
			t.Fatalf("dialback offered before TLS: %s", feats)
		}
		p.send(`<db:result from='a.localhost' to='b.localhost'>0123</db:result>`)
		p.expectStreamError("policy-violation")
	})
	t.Run("unknown host", func(t *testing.T) {
		t.Parallel()
		b := xmpptest.RunServer(t, s2stest.Federated(domB))
		addr, _ := b.S2SAddrs()
		_, err := dialRaw(t, addr[0]).open("a.localhost", "c.localhost")
		var se *streamErr
		if !errors.As(err, &se) || se.cond != "host-unknown" {
			t.Fatalf("got %v, want host-unknown", err)
		}
	})
	t.Run("denied domain at the header", func(t *testing.T) {
		t.Parallel()
		b := xmpptest.RunServer(t, s2stest.Federated(domB), func(c *config.Config) {
			c.S2S.Mode = config.FederationAllowlist
			c.S2S.Allow = []string{"a.localhost"}
		})
		addr, _ := b.S2SAddrs()
		_, err := dialRaw(t, addr[0]).open("evil.localhost", domB)
		var se *streamErr
		if !errors.As(err, &se) || se.cond != "policy-violation" {
			t.Fatalf("got %v, want policy-violation", err)
		}
	})
	t.Run("forged dialback key", func(t *testing.T) {
		t.Parallel()
		// b calls a (the real a.localhost) back; a does not know the key.
		a, b := pair(t, nil, nil)
		_ = a
		addr, _ := b.S2SAddrs()
		p := dialRaw(t, addr[0])
		if _, err := p.open("a.localhost", domB); err != nil {
			t.Fatal(err)
		}
		p.startTLS("a.localhost", domB, nil)
		p.send(`<db:result from='a.localhost' to='b.localhost'>` + s2s.DialbackKey([]byte("guessed secret"), domB, domA, p.id) + `</db:result>`)
		el, err := p.next()
		if err != nil || el.Name.Local != "result" || el.AttrValue("type") != "invalid" {
			t.Fatalf("got %v %v, want db:result type=invalid", el, err)
		}
		p.send(`<message from='x@a.localhost' to='bob@b.localhost'><body>spoof</body></message>`)
		p.expectStreamError("invalid-from")
	})
	t.Run("authoritative answers", func(t *testing.T) {
		t.Parallel()
		// We ask b whether a key b issued is valid, as a receiving server
		// would: the right one is valid, another is not.
		b := xmpptest.RunServer(t, s2stest.Federated(domB), func(c *config.Config) {
			c.S2S.DialbackSecret = "a shared cluster secret"
		})
		addr, _ := b.S2SAddrs()
		p := dialRaw(t, addr[0])
		if _, err := p.open("a.localhost", domB); err != nil {
			t.Fatal(err)
		}
		p.startTLS("a.localhost", domB, nil)
		good := s2s.DialbackKey([]byte("a shared cluster secret"), "a.localhost", domB, "stream-1")
		bad := []byte(good)
		bad[0] = map[bool]byte{true: '1', false: '0'}[bad[0] == '0'] // another hex digit: a different key of the same form
		for _, tc := range []struct{ key, want string }{{good, "valid"}, {string(bad), "invalid"}} {
			p.send(fmt.Sprintf(`<db:verify from='a.localhost' to='b.localhost' id='stream-1'>%s</db:verify>`, tc.key))
			el, err := p.next()
			if err != nil || el.Name.Local != "verify" || el.AttrValue("type") != tc.want || el.AttrValue("id") != "stream-1" {
				t.Fatalf("got %v %v, want db:verify type=%s", el, err, tc.want)
			}
		}
	})
}

// TestInboundRateLimit: a peer over s2s.rate_limit is read more slowly, not
// cut off: everything arrives, in order, and no sooner than the limit
// allows (a lower bound, which only a missing limit can break).
func TestInboundRateLimit(t *testing.T) {
	t.Parallel()
	const rate, n = 4, 12
	b, p := certPeer(t, func(c *config.Config) { c.S2S.RateLimit = rate })
	bob := online(t, b, "bob")
	start := time.Now()
	var burst strings.Builder
	for i := range n {
		fmt.Fprintf(&burst, `<message from='m@evil.localhost' to='bob@b.localhost' id='r%d'><body>burst %d</body></message>`, i, i)
	}
	p.send(burst.String())
	for i := range n {
		m := bob.Expect(func(s *stanza.Stanza) bool { return strings.HasPrefix(s.Body(), "burst ") })
		if want := fmt.Sprintf("burst %d", i); m.Body() != want {
			t.Fatalf("got %q, want %q", m.Body(), want)
		}
	}
	// A bucket of one second's worth (rate) is spent at once; the other
	// n-rate stanzas come at rate per second.
	if d, want := time.Since(start), time.Duration(n-rate)*time.Second/rate; d < want*9/10 {
		t.Fatalf("%d stanzas read in %v, want at least %v at %d/s", n, d, want, rate)
	}
	p.send(`<message from='m@evil.localhost' to='bob@b.localhost' id='after'><body>still connected</body></message>`)
	bob.Expect(xmpptest.IsMessage("still connected"))
}
