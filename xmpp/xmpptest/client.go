package xmpptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/websocket"
)

// ClientOptions tune Dial.
type ClientOptions struct {
	Mechanism string // default SCRAM-SHA-256
	Resource  string // "" lets the server choose
	DirectTLS bool
	TLS13     bool // force TLS 1.3 (default lets Go choose, which is 1.3)
	TLS12     bool // force TLS 1.2
	// NoReader leaves reading to the caller (benchmarks): Conn returns the
	// TLS connection and Expect must not be used.
	NoReader bool
	// SM enables stream management (XEP-0198) after binding, asking for
	// resumption unless SMNoResume. The client then counts the stanzas it
	// receives (Handled) and answers the server's <r/> unless NoAutoAck.
	SM         bool
	SMNoResume bool
	NoAutoAck  bool
	// Resume resumes the session with this XEP-0198 id instead of binding,
	// telling the server ResumeH stanzas were handled; Resource must name
	// the session's resource. If the server answers <failed/>, the client
	// binds a new session and ResumeFailed says why.
	Resume  string
	ResumeH uint32
	// WebSocket connects over RFC 7395 to the server's web listener
	// (start it with WithWeb) instead of TCP; the rest is the same.
	WebSocket bool
}

// Conn returns the client's TLS connection.
func (c *Client) Conn() net.Conn { return c.nc }

// Client is a raw XMPP client for tests.
type Client struct {
	t     testing.TB
	tcp   net.Conn // under TLS, for Drop
	nc    net.Conn
	dec   *xml.Decoder
	JID   jid.JID
	Mech  string
	wmu   sync.Mutex
	in    chan *stanza.Stanza
	nonza chan *stanza.Element
	errc  chan error
	// StreamError is set when the server sent <stream:error>.
	mu          sync.Mutex
	streamError string
	streamErrEl *stanza.Element
	backlog     []*stanza.Stanza
	nzBacklog   []*stanza.Element

	// Features are the stream features offered after authentication.
	Features *stanza.Element
	// SMID and SMMax are the <enabled/> id and max (ClientOptions.SM).
	SMID, SMMax string
	// Resumed is the server's <resumed/> (ClientOptions.Resume), nil if the
	// resumption failed; ResumeFailed is then the <failed/> condition.
	Resumed      *stanza.Element
	ResumeFailed string
	smOn         bool
	autoAck      bool
	handled      atomic.Uint32
}

var mechanisms = map[string]sasl.Mechanism{
	"SCRAM-SHA-1": sasl.ScramSha1, "SCRAM-SHA-1-PLUS": sasl.ScramSha1Plus,
	"SCRAM-SHA-256": sasl.ScramSha256, "SCRAM-SHA-256-PLUS": sasl.ScramSha256Plus,
	"PLAIN": sasl.Plain,
}

// Dial logs user in to ts and returns a bound client.
func (ts *TestServer) Dial(t testing.TB, user, password string, o ClientOptions) *Client {
	t.Helper()
	c, err := ts.TryDial(t, user, password, o)
	if err != nil {
		t.Fatalf("xmpptest: login %s: %v", user, err)
	}
	return c
}

// TryDial is Dial returning the error instead of failing the test.
func (ts *TestServer) TryDial(t testing.TB, user, password string, o ClientOptions) (*Client, error) {
	if o.Mechanism == "" {
		o.Mechanism = "SCRAM-SHA-256"
	}
	addr := ts.Addr
	if o.DirectTLS {
		addr = ts.TLSAddr
	}
	tc := &tls.Config{RootCAs: ts.Roots, ServerName: ts.Domain}
	if o.TLS12 {
		tc.MaxVersion = tls.VersionTLS12
	}
	if o.TLS13 {
		tc.MinVersion = tls.VersionTLS13
	}
	if o.WebSocket {
		return ts.dialWebSocket(t, user, password, o, tc)
	}
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(Timeout))
	c := &Client{t: t, tcp: nc, nc: nc, Mech: o.Mechanism, autoAck: !o.NoAutoAck}
	fail := func(err error) (*Client, error) {
		_ = nc.Close()
		return nil, err
	}
	if o.DirectTLS {
		tlsc := tls.Client(nc, tc)
		if err := tlsc.Handshake(); err != nil {
			return fail(err)
		}
		c.nc = tlsc
	} else {
		feats, err := c.open(ts.Domain)
		if err != nil {
			return fail(err)
		}
		if feats.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") == nil {
			return fail(errors.New("no starttls offered"))
		}
		c.raw(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
		if el, err := c.nextElement(); err != nil || el.Name.Local != "proceed" {
			return fail(fmt.Errorf("starttls: %v %v", el, err))
		}
		tlsc := tls.Client(nc, tc)
		if err := tlsc.Handshake(); err != nil {
			return fail(err)
		}
		c.nc = tlsc
	}
	return c.login(ts, user, password, o, fail)
}

// DialUnauthenticated connects and negotiates STARTTLS, then stops before
// SASL: it returns the client and the stream features offered, for tests
// of what happens before authentication (in-band registration). Use Send
// and NextElement on it.
func (ts *TestServer) DialUnauthenticated(t testing.TB) (*Client, *stanza.Element) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.Addr, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(Timeout))
	c := &Client{t: t, tcp: nc, nc: nc}
	feats, err := c.open(ts.Domain)
	if err != nil || feats.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") == nil {
		t.Fatalf("xmpptest: no starttls: %v %v", feats, err)
	}
	c.raw(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if el, err := c.nextElement(); err != nil || el.Name.Local != "proceed" {
		t.Fatalf("xmpptest: starttls: %v %v", el, err)
	}
	tlsc := tls.Client(nc, &tls.Config{RootCAs: ts.Roots, ServerName: ts.Domain})
	if err := tlsc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc = tlsc
	feats, err = c.open(ts.Domain)
	if err != nil {
		t.Fatal(err)
	}
	return c, feats
}

// NextElement reads the next top-level element (clients made by
// DialUnauthenticated, which have no read loop).
func (c *Client) NextElement() (*stanza.Element, error) { return c.nextElement() }

// dialWebSocket is TryDial over RFC 7395: TLS is the HTTPS connection's,
// so the stream starts at SASL.
func (ts *TestServer) dialWebSocket(t testing.TB, user, password string, o ClientOptions, tc *tls.Config) (*Client, error) {
	if ts.WebAddr() == "" {
		return nil, errors.New("xmpptest: the web listener is off (use WithWeb)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	nc, err := websocket.Dial(ctx, "wss://"+ts.WebAddr()+ts.Config.Web.WebSocketPath, tc)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(Timeout))
	c := &Client{t: t, tcp: nc, nc: nc, Mech: o.Mechanism, autoAck: !o.NoAutoAck}
	return c.login(ts, user, password, o, func(err error) (*Client, error) {
		_ = nc.Close()
		return nil, err
	})
}

// login runs SASL, binding or resumption and SM on a secured stream.
func (c *Client) login(ts *TestServer, user, password string, o ClientOptions, fail func(error) (*Client, error)) (*Client, error) {
	t := c.t
	feats, err := c.open(ts.Domain)
	if err != nil {
		return fail(err)
	}
	if err := c.auth(feats, user, password, o.Mechanism); err != nil {
		return fail(err)
	}
	feats, err = c.open(ts.Domain)
	if err != nil {
		return fail(err)
	}
	c.Features = feats
	if feats.Child("urn:ietf:params:xml:ns:xmpp-bind", "bind") == nil {
		return fail(errors.New("no bind feature"))
	}
	if o.Resume != "" {
		if err := c.resume(ts, user, o); err != nil {
			return fail(err)
		}
	}
	if c.Resumed == nil {
		if err := c.bind(o.Resource); err != nil {
			return fail(err)
		}
	}
	if o.SM {
		if err := c.enableSM(!o.SMNoResume); err != nil {
			return fail(err)
		}
	}
	_ = c.nc.SetDeadline(time.Time{})
	if o.NoReader {
		t.Cleanup(func() { c.Close() })
		return c, nil
	}
	if c.in == nil {
		c.in = make(chan *stanza.Stanza, 1024)
	}
	c.nonza = make(chan *stanza.Element, 1024)
	c.errc = make(chan error, 1)
	go c.readLoop()
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func (c *Client) bind(resource string) error {
	res := ""
	if resource != "" {
		res = "<resource>" + resource + "</resource>"
	}
	c.raw(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>` + res + `</bind></iq>`)
	el, err := c.nextElement()
	if err != nil {
		return err
	}
	if el.AttrValue("type") != "result" {
		return fmt.Errorf("bind failed: %s", el)
	}
	j, err := jid.Parse(el.Child("", "bind").ChildText("", "jid"))
	if err != nil {
		return err
	}
	c.JID = j
	return nil
}

const nsSM = "urn:xmpp:sm:3"

// resume sends <resume/> (XEP-0198 §5) and reads the answer.
func (c *Client) resume(ts *TestServer, user string, o ClientOptions) error {
	c.raw(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, o.Resume, o.ResumeH))
	el, err := c.nextElement()
	if err != nil {
		return err
	}
	switch el.Name.Local {
	case "resumed":
		j, err := jid.New(user, ts.Domain, o.Resource)
		if err != nil {
			return err
		}
		c.JID, c.Resumed, c.SMID, c.smOn = j, el, o.Resume, true
		c.handled.Store(o.ResumeH)
	case "failed":
		c.ResumeFailed = firstChild(el)
	default:
		return fmt.Errorf("resume: unexpected %s", el)
	}
	return nil
}

// enableSM sends <enable/> and waits for <enabled/>; stanzas that arrive
// first are kept for Expect (they are not counted: counting starts with
// <enabled/>).
func (c *Client) enableSM(resume bool) error {
	if resume {
		c.raw(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	} else {
		c.raw(`<enable xmlns='urn:xmpp:sm:3'/>`)
	}
	for {
		el, err := c.nextElement()
		if err != nil {
			return err
		}
		switch {
		case el.Name.Space == nsSM && el.Name.Local == "enabled":
			c.SMID, c.SMMax, c.smOn = el.AttrValue("id"), el.AttrValue("max"), true
			return nil
		case el.Name.Space == nsSM && el.Name.Local == "failed":
			return fmt.Errorf("enable: %s", el)
		}
		if s, err := stanza.FromElement(el); err == nil {
			if c.in == nil {
				c.in = make(chan *stanza.Stanza, 1024)
			}
			c.in <- s
		}
	}
}

// Handled returns the number of stanzas received since stream management
// was enabled (or, after a resumption, ResumeH plus those since): the
// client's XEP-0198 h.
func (c *Client) Handled() uint32 { return c.handled.Load() }

// Ack sends <a h/> with Handled.
func (c *Client) Ack() { c.AckH(c.Handled()) }

// AckH sends <a h/> with any count (tests of bad counts).
func (c *Client) AckH(h uint32) { c.Sendf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h) }

// RequestAck sends <r/> and returns the h of the server's <a/>.
func (c *Client) RequestAck() uint32 {
	c.t.Helper()
	c.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	a := c.ExpectNonza(func(e *stanza.Element) bool { return e.Name.Space == nsSM && e.Name.Local == "a" })
	h, err := strconv.ParseUint(a.AttrValue("h"), 10, 32)
	if err != nil {
		c.t.Fatalf("xmpptest: bad ack %s", a)
	}
	return uint32(h)
}

// Drop cuts the TCP connection without closing the stream or TLS, as a
// lost network does.
func (c *Client) Drop() {
	if a, ok := c.tcp.(interface{ Abort() }); ok {
		a.Abort() // WebSocket: no closing handshake
		return
	}
	_ = c.tcp.Close()
}

// ExpectNonza waits for a top-level non-stanza element (stream management,
// ...) matching f; earlier ones stay queued for later calls.
func (c *Client) ExpectNonza(f func(*stanza.Element) bool) *stanza.Element {
	c.t.Helper()
	e, err := c.TryExpectNonza(f, Timeout)
	if err != nil {
		c.t.Fatalf("xmpptest: %s: %v", c.JID, err)
	}
	return e
}

// TryExpectNonza is ExpectNonza with a timeout and an error.
func (c *Client) TryExpectNonza(f func(*stanza.Element) bool, d time.Duration) (*stanza.Element, error) {
	c.mu.Lock()
	for i, e := range c.nzBacklog {
		if f(e) {
			c.nzBacklog = append(c.nzBacklog[:i], c.nzBacklog[i+1:]...)
			c.mu.Unlock()
			return e, nil
		}
	}
	c.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e := <-c.nonza:
			if f(e) {
				return e, nil
			}
			c.mu.Lock()
			c.nzBacklog = append(c.nzBacklog, e)
			c.mu.Unlock()
		case <-timer.C:
			return nil, fmt.Errorf("timed out waiting for a nonza (stream error %q)", c.StreamError())
		}
	}
}

// StreamErrorElement returns the <stream:error> received, if any.
func (c *Client) StreamErrorElement() *stanza.Element {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamErrEl
}

func (c *Client) open(domain string) (*stanza.Element, error) {
	c.dec = xml.NewDecoder(c.nc)
	c.raw(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + domain + `' version='1.0'>`)
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			break
		}
	}
	el, err := c.nextElement()
	if err != nil {
		return nil, err
	}
	if el.Name.Local != "features" {
		return nil, fmt.Errorf("expected features, got %s", el)
	}
	return el, nil
}

func (c *Client) nextElement() (*stanza.Element, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := stanza.ReadElement(c.dec, t.Copy())
			if err != nil {
				return nil, err
			}
			if el.Name.Local == "error" && el.Name.Space == "http://etherx.jabber.org/streams" {
				return nil, fmt.Errorf("stream error: %s", el)
			}
			return el, nil
		case xml.EndElement:
			return nil, errors.New("stream closed")
		}
	}
}

func (c *Client) auth(feats *stanza.Element, user, password, mech string) error {
	m, ok := mechanisms[mech]
	if !ok {
		return fmt.Errorf("xmpptest: unknown mechanism %s", mech)
	}
	var offered []string
	if ms := feats.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms"); ms != nil {
		for _, e := range ms.Elements() {
			offered = append(offered, e.Text())
		}
	}
	tc, ok := c.nc.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return errors.New("xmpptest: SASL before TLS")
	}
	cs := tc.ConnectionState()
	client := sasl.NewClient(m, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(password), nil
	}), sasl.TLSState(cs), sasl.RemoteMechanisms(offered...))
	_, resp, err := client.Step(nil)
	if err != nil {
		return err
	}
	c.raw(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='` + mech + `'>` + b64(resp) + `</auth>`)
	for {
		el, err := c.nextElement()
		if err != nil {
			return err
		}
		data, _ := base64.StdEncoding.DecodeString(el.Text())
		switch el.Name.Local {
		case "challenge":
			_, resp, err := client.Step(data)
			if err != nil {
				return err
			}
			c.raw(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64(resp) + `</response>`)
		case "success":
			if len(data) > 0 {
				if _, _, err := client.Step(data); err != nil {
					return fmt.Errorf("server signature: %w", err)
				}
			}
			return nil
		default:
			return &AuthError{Condition: firstChild(el)}
		}
	}
}

// AuthError is a SASL failure.
type AuthError struct{ Condition string }

func (e *AuthError) Error() string { return "sasl failure: " + e.Condition }

func firstChild(el *stanza.Element) string {
	for _, e := range el.Elements() {
		if e.Name.Local != "text" {
			return e.Name.Local
		}
	}
	return ""
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (c *Client) raw(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _ = c.nc.Write([]byte(s))
}

// Send writes raw XML.
func (c *Client) Send(xmlText string) {
	c.raw(xmlText)
}

// Sendf writes formatted raw XML.
func (c *Client) Sendf(format string, args ...any) { c.raw(fmt.Sprintf(format, args...)) }

func (c *Client) readLoop() {
	defer close(c.in)
	for {
		tok, err := c.dec.Token()
		if err != nil {
			c.errc <- err
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			t = t.Copy()
			if stanza.KindOf(t.Name.Local) != 0 && t.Name.Space == stanza.NSClient {
				s, err := stanza.Parse(c.dec, t)
				if err != nil {
					c.errc <- err
					return
				}
				if c.smOn {
					c.handled.Add(1)
				}
				c.in <- s
				continue
			}
			el, err := stanza.ReadElement(c.dec, t)
			if err != nil {
				c.errc <- err
				return
			}
			if el.Name.Local == "error" && el.Name.Space == "http://etherx.jabber.org/streams" {
				c.mu.Lock()
				c.streamError = firstChild(el)
				c.streamErrEl = el
				c.mu.Unlock()
				continue
			}
			if c.smOn && c.autoAck && el.Name.Space == nsSM && el.Name.Local == "r" {
				// Answered here, in stream order, so h is exact.
				c.Ack()
			}
			select {
			case c.nonza <- el:
			default:
			}
		case xml.EndElement:
			// Close our side too, as RFC 6120 §4.4 asks of a peer, so
			// the server need not wait for its close timeout.
			c.raw(`</stream:stream>`)
			_ = c.nc.Close()
			c.errc <- errors.New("stream closed by server")
			return
		}
	}
}

// Expect waits for a stanza matching f (earlier non-matching stanzas stay
// queued for later Expect calls) and fails the test after Timeout.
func (c *Client) Expect(f func(*stanza.Stanza) bool) *stanza.Stanza {
	c.t.Helper()
	s, err := c.TryExpect(f, Timeout)
	if err != nil {
		c.t.Fatalf("xmpptest: %s: %v", c.JID, err)
	}
	return s
}

// TryExpect is Expect with a timeout and an error instead of a failure.
func (c *Client) TryExpect(f func(*stanza.Stanza) bool, d time.Duration) (*stanza.Stanza, error) {
	c.mu.Lock()
	for i, s := range c.backlog {
		if f(s) {
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			c.mu.Unlock()
			return s, nil
		}
	}
	c.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case s, ok := <-c.in:
			if !ok {
				return nil, fmt.Errorf("connection closed while waiting (stream error %q)", c.StreamError())
			}
			if f(s) {
				return s, nil
			}
			c.mu.Lock()
			c.backlog = append(c.backlog, s)
			c.mu.Unlock()
		case <-timer.C:
			var seen []string
			c.mu.Lock()
			for _, s := range c.backlog {
				seen = append(seen, s.String())
			}
			c.mu.Unlock()
			return nil, fmt.Errorf("timed out; unmatched stanzas: %s", strings.Join(seen, "\n"))
		}
	}
}

// ExpectNone checks that no stanza matching f arrives within d. Use it only
// after a later stanza proves ordering (e.g. an iq round trip), so it never
// stands in for synchronisation.
func (c *Client) ExpectNone(f func(*stanza.Stanza) bool, d time.Duration) {
	c.t.Helper()
	if s, err := c.TryExpect(f, d); err == nil {
		c.t.Fatalf("xmpptest: %s: unexpected stanza %s", c.JID, s)
	}
}

// Ping does an iq round trip to the server; since the server handles a
// connection's stanzas in order, everything sent before it has been
// processed when it returns.
func (c *Client) Ping() {
	c.t.Helper()
	id := fmt.Sprintf("sync-%d", time.Now().UnixNano())
	c.Sendf(`<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, id)
	c.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindIQ && s.ID == id })
}

// WaitClosed waits for the server to close the stream and returns the
// stream error condition it sent ("" for none).
func (c *Client) WaitClosed() string {
	c.t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return c.StreamError()
			}
		case <-timer.C:
			c.t.Fatalf("xmpptest: %s: stream not closed", c.JID)
		}
	}
}

// StreamError returns the stream error condition received, if any.
func (c *Client) StreamError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamError
}

// Close ends the stream and the connection.
func (c *Client) Close() {
	c.raw(`</stream:stream>`)
	_ = c.nc.Close()
}

// Kind matchers.

// IsMessage matches messages with the given body.
func IsMessage(body string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() == body }
}

// IsIQResult matches the result or error for iq id.
func IsIQ(id string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Kind == stanza.KindIQ && s.ID == id }
}

// IsPresence matches presence of the given type from the bare JID from.
func IsPresence(typ string, from string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.Type == typ && (from == "" || s.From.Bare().String() == from)
	}
}

// Raw helpers for benchmarks (ClientOptions.NoReader), where the caller
// reads the connection itself.

// SyncRaw does a ping round trip on a NoReader client, reading r (which
// wraps Conn) until the answer: everything sent before has been handled.
func (c *Client) SyncRaw(tb testing.TB, r io.Reader) {
	tb.Helper()
	id := fmt.Sprintf("rawsync-%d", time.Now().UnixNano())
	c.Sendf(`<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, id)
	var seen []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(seen, []byte(id)) {
		n, err := r.Read(buf)
		if err != nil {
			tb.Fatal(err)
		}
		seen = append(seen, buf[:n]...)
	}
}

// Flood writes n copies of stanza, batch at a time, as fast as the
// connection takes them.
func (c *Client) Flood(tb testing.TB, stanza string, n, batch int) {
	tb.Helper()
	chunk := []byte(strings.Repeat(stanza, batch))
	for sent := 0; sent < n; sent += batch {
		b := chunk
		if n-sent < batch {
			b = chunk[:len(stanza)*(n-sent)]
		}
		if _, err := c.nc.Write(b); err != nil {
			tb.Fatal(err)
		}
	}
}
