package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// TLSMode is how a connection is secured.
type TLSMode string

// TLS modes.
const (
	// StartTLS upgrades the plain connection with STARTTLS (RFC 6120 §5).
	StartTLS TLSMode = "starttls"
	// Plain stays unencrypted: for servers configured without TLS, so
	// that the cost of XMPP itself can be compared without TLS.
	Plain TLSMode = "plain"
)

// Target is the server under load.
type Target struct {
	// Addr is host:port of the c2s listener; it must be a loopback
	// address (see ResolveLoopback).
	Addr string
	// Domain is the XMPP domain (stream 'to', TLS server name, JIDs).
	Domain string
	// TLS selects STARTTLS or plain.
	TLS TLSMode
	// RootCAs verifies the server certificate; nil with Insecure skips
	// verification; nil without Insecure uses the system roots.
	RootCAs  *x509.CertPool
	Insecure bool
	// Mechanism is the SASL mechanism (default SCRAM-SHA-256).
	Mechanism string
	// SASL selects SASLCached (default) or SASLMellium.
	SASL string
	// Password is every bench account's password.
	Password string
	// HandshakeTimeout bounds one login (default 30s).
	HandshakeTimeout time.Duration

	dialAddr string
	cache    scramCache
	nextRes  atomic.Uint64
	info     atomic.Pointer[string]
}

// Negotiated describes the first login's TLS version, cipher suite and
// SASL mechanism with the server's SCRAM iteration count ("" before one).
func (t *Target) Negotiated() string {
	if p := t.info.Load(); p != nil {
		return *p
	}
	return ""
}

// Prepare checks and resolves the target. Every scenario calls it.
func (t *Target) Prepare(ctx context.Context) error {
	if t.Domain == "" {
		return errors.New("loadgen: target domain is empty")
	}
	switch t.TLS {
	case "":
		t.TLS = StartTLS
	case StartTLS, Plain:
	default:
		return fmt.Errorf("loadgen: tls mode %q (starttls or plain)", t.TLS)
	}
	if t.Mechanism == "" {
		t.Mechanism = "SCRAM-SHA-256"
	}
	switch t.SASL {
	case "":
		t.SASL = SASLCached
	case SASLCached, SASLMellium:
	default:
		return fmt.Errorf("loadgen: sasl client %q (cached or mellium)", t.SASL)
	}
	if t.HandshakeTimeout <= 0 {
		t.HandshakeTimeout = 30 * time.Second
	}
	a, err := ResolveLoopback(ctx, t.Addr)
	if err != nil {
		return err
	}
	t.dialAddr = a
	return nil
}

// JID returns user@domain.
func (t *Target) JID(user string) string { return user + "@" + t.Domain }

// Conn is one logged-in client stream. Reads belong to one goroutine;
// Write may be called from any goroutine (TCP and TLS writes are atomic
// per call).
type Conn struct {
	nc   net.Conn
	rd   *Reader
	JID  string // full JID from bind
	Bare string
	User string
}

// Write sends raw XML.
func (c *Conn) Write(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// WriteString sends raw XML.
func (c *Conn) WriteString(s string) error { return c.Write([]byte(s)) }

// Next returns the next top-level element from the server.
func (c *Conn) Next() (Elem, error) { return c.rd.Next() }

// SetDeadline sets the socket deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Close ends the stream and closes the socket without waiting.
func (c *Conn) Close() error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.nc.Write([]byte("</stream:stream>"))
	return c.nc.Close()
}

// Abort closes the socket.
func (c *Conn) Abort() error { return c.nc.Close() }

// NetConn is the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// LoginError says which phase of a login failed.
type LoginError struct {
	Phase string
	Err   error
}

func (e *LoginError) Error() string { return "loadgen: login " + e.Phase + ": " + e.Err.Error() }
func (e *LoginError) Unwrap() error { return e.Err }

// Dial connects and logs user in: stream, STARTTLS (or plain), SASL,
// bind (and RFC 3921 session when the server requires it). resource ""
// picks a unique one. It sends no presence.
func (t *Target) Dial(ctx context.Context, user, resource string) (*Conn, error) {
	if t.dialAddr == "" {
		return nil, errors.New("loadgen: Target.Prepare was not called")
	}
	if resource == "" {
		resource = "lg" + strconv.FormatUint(t.nextRes.Add(1), 36)
	}
	ctx, cancel := context.WithTimeout(ctx, t.HandshakeTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.dialAddr)
	if err != nil {
		return nil, &LoginError{"connect", err}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &Conn{nc: nc, rd: NewReader(nc), User: user}
	fail := func(phase string, err error) (*Conn, error) {
		_ = nc.Close()
		if ctx.Err() != nil && !errors.Is(err, ErrAuth) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, &LoginError{phase, err}
	}
	feats, err := c.open(t.Domain)
	if err != nil {
		return fail("stream", err)
	}
	tlsOffered := bytes.Contains(feats.Raw, []byte("urn:ietf:params:xml:ns:xmpp-tls"))
	var cs *tls.ConnectionState
	if t.TLS == StartTLS {
		if !tlsOffered {
			return fail("starttls", errors.New("server does not offer STARTTLS"))
		}
		if err := c.WriteString(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`); err != nil {
			return fail("starttls", err)
		}
		el, err := c.rd.Next()
		if err != nil {
			return fail("starttls", err)
		}
		if !el.Is("proceed") {
			return fail("starttls", fmt.Errorf("server answered %s", clip(el.Raw)))
		}
		tc := tls.Client(nc, &tls.Config{
			ServerName:         t.Domain,
			RootCAs:            t.RootCAs,
			InsecureSkipVerify: t.Insecure, //nolint:gosec // loopback benchmark against a test certificate, opt-in
			MinVersion:         tls.VersionTLS12,
			// X25519 only: Go would also offer the hybrid X25519MLKEM768,
			// which a Go server (Gatehouse) accepts and OpenSSL 3.0
			// (Prosody, ejabberd on Debian 12) does not, so servers would
			// pay for different key exchanges (ML-KEM costs about as much
			// again as X25519 on both sides).
			CurvePreferences: []tls.CurveID{tls.X25519},
		})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("tls", err)
		}
		c.nc = tc
		c.rd.Reset(tc)
		st := tc.ConnectionState()
		cs = &st
		if feats, err = c.open(t.Domain); err != nil {
			return fail("stream", err)
		}
	} else if st, ok := feats.Child("starttls"); ok && st.Has("required") {
		return fail("starttls", errors.New("server requires STARTTLS; use tls mode starttls"))
	}
	iter, err := c.authenticate(t, feats, user, cs)
	if err != nil {
		return fail("sasl", err)
	}
	if t.info.Load() == nil {
		s := "plain TCP"
		if cs != nil {
			s = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
		}
		s += ", " + t.Mechanism
		if iter > 0 {
			s += " i=" + strconv.Itoa(iter)
		}
		t.info.CompareAndSwap(nil, &s)
	}
	feats, err = c.open(t.Domain)
	if err != nil {
		return fail("stream", err)
	}
	if !feats.Has("bind") {
		return fail("bind", fmt.Errorf("no bind feature in %s", clip(feats.Raw)))
	}
	if err := c.WriteString(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + escape(resource) + `</resource></bind></iq>`); err != nil {
		return fail("bind", err)
	}
	res, err := c.awaitIQ("bind1")
	if err != nil {
		return fail("bind", err)
	}
	j, ok := res.Child("jid")
	if !ok {
		return fail("bind", fmt.Errorf("no jid in %s", clip(res.Raw)))
	}
	c.JID = unescape(j.Text())
	c.Bare, _, _ = strings.Cut(c.JID, "/")
	if s, ok := feats.Child("session"); ok && !s.Has("optional") {
		if err := c.WriteString(`<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`); err != nil {
			return fail("session", err)
		}
		if _, err := c.awaitIQ("sess1"); err != nil {
			return fail("session", err)
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// open sends a stream header and returns the stream features.
func (c *Conn) open(domain string) (Elem, error) {
	if err := c.WriteString(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + escape(domain) + `' version='1.0'>`); err != nil {
		return Elem{}, err
	}
	if _, err := c.rd.StreamHeader(); err != nil {
		return Elem{}, err
	}
	el, err := c.rd.Next()
	if err != nil {
		return Elem{}, err
	}
	if !el.Is("features") {
		return Elem{}, fmt.Errorf("expected stream features, got %s", clip(el.Raw))
	}
	return el, nil
}

// awaitIQ reads until the iq with the given id; a type='error' reply is
// an error. Other stanzas before it are dropped (none are expected during
// negotiation).
func (c *Conn) awaitIQ(id string) (Elem, error) {
	for {
		el, err := c.rd.Next()
		if err != nil {
			return Elem{}, err
		}
		if el.Is("error") && bytes.HasPrefix(el.Name(), []byte("stream")) {
			return Elem{}, fmt.Errorf("stream error: %s", clip(el.Raw))
		}
		if !el.Is("iq") || el.AttrString("id") != id {
			continue
		}
		if typ, _ := el.Attr("type"); string(typ) != "result" {
			return el, fmt.Errorf("iq %s: %s", id, clip(el.Raw))
		}
		return el, nil
	}
}

// authenticate runs SASL and returns the SCRAM iteration count the
// server asked for (0 when unknown).
func (c *Conn) authenticate(t *Target, feats Elem, user string, cs *tls.ConnectionState) (int, error) {
	iter := 0
	err := c.sasl(t, feats, user, cs, &iter)
	return iter, err
}

func (c *Conn) sasl(t *Target, feats Elem, user string, cs *tls.ConnectionState, iter *int) error {
	ms, ok := feats.Child("mechanisms")
	if !ok {
		return errors.New("server offers no SASL mechanisms")
	}
	var offered []string
	ms.Children(func(m Elem) { offered = append(offered, string(m.Text())) })
	found := false
	for _, m := range offered {
		found = found || m == t.Mechanism
	}
	if !found {
		return fmt.Errorf("mechanism %s not offered (offered: %s)", t.Mechanism, strings.Join(offered, " "))
	}
	var sc saslClient
	var err error
	switch {
	case t.Mechanism == "PLAIN" && t.SASL != SASLMellium:
		sc = plainClient{user, t.Password}
	case t.SASL == SASLMellium:
		sc, err = newMelliumClient(t.Mechanism, user, t.Password, cs, offered)
	default:
		sc, err = newCachedSCRAM(t.Mechanism, user, t.Password, &t.cache)
	}
	if err != nil {
		return err
	}
	resp, err := sc.Step(nil)
	if err != nil {
		return err
	}
	if err := c.WriteString(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='` + t.Mechanism + `'>` + b64(resp) + `</auth>`); err != nil {
		return err
	}
	for {
		el, err := c.rd.Next()
		if err != nil {
			return err
		}
		data, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(el.Text())))
		if derr != nil && !el.Is("failure") {
			return fmt.Errorf("bad base64 in %s", clip(el.Raw))
		}
		switch {
		case el.Is("challenge"):
			if *iter == 0 {
				*iter = scramIterations(data)
			}
			resp, err := sc.Step(data)
			if err != nil {
				return err
			}
			if err := c.WriteString(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64(resp) + `</response>`); err != nil {
				return err
			}
		case el.Is("success"):
			return sc.Verify(data)
		case el.Is("failure"):
			cond := ""
			el.Children(func(e Elem) {
				if cond == "" && !e.Is("text") {
					cond = string(e.Name())
				}
			})
			return fmt.Errorf("%w: %s", ErrAuth, cond)
		default:
			return fmt.Errorf("unexpected %s during SASL", clip(el.Raw))
		}
	}
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// scramIterations reads i= from a SCRAM server-first message.
func scramIterations(b []byte) int {
	for _, f := range strings.Split(string(b), ",") {
		if v, ok := strings.CutPrefix(f, "i="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}
