// Package conn is the connection runtime shared by every peer kind (c2s,
// s2s, components): a bounded XML reader that enforces stanza size and depth
// limits and RFC 6120's restricted XML, and a writer goroutine that drains a
// bounded outbound buffer in batches. It knows nothing of routing.
//
// It must not import router, hook, c2s, s2s or transports.
package conn

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/xmpp/stanza"
)

// readBuffer is the read-ahead of the XML decoder; MaxStanzaBytes is
// enforced to within this many bytes.
const readBuffer = 4096

// Limits bound what one peer may send and queue.
type Limits struct {
	MaxStanzaBytes int // bytes in one top-level element (approximate to the read buffer)
	MaxDepth       int // element nesting inside one top-level element
	SendQueue      int // stanzas waiting to be written before the peer is cut off
	SendQueueBytes int // bytes waiting to be written before the peer is cut off
}

// Timeouts drive keepalive and idle detection.
type Timeouts struct {
	// Idle is how long the peer may be silent before OnIdle is called.
	Idle time.Duration
	// Answer is how long the peer then has to send anything at all.
	Answer time.Duration
	// Keepalive is the whitespace keepalive interval when nothing is written.
	Keepalive time.Duration
	// Write bounds one network write.
	Write time.Duration
}

// Errors from reading and writing.
var (
	ErrTooBig        = errors.New("conn: stanza exceeds the size limit")
	ErrTooDeep       = errors.New("conn: element nesting exceeds the depth limit")
	ErrRestricted    = errors.New("conn: restricted XML (comment, DTD or processing instruction)")
	ErrIdle          = errors.New("conn: peer idle past the timeout")
	ErrStreamClosed  = errors.New("conn: peer closed the stream")
	ErrQueueFull     = errors.New("conn: outbound queue full")
	ErrClosed        = errors.New("conn: connection closed")
	ErrNotWellFormed = errors.New("conn: XML not well-formed")
)

// Conn is one XML stream connection.
type Conn struct {
	ID     uint64
	limits Limits
	to     Timeouts
	ns     string // stream content namespace for Send

	nc net.Conn
	lr *limitReader
	br *bufio.Reader
	// final is set by the writer when the stream is ending: the reader
	// then only waits out the close deadline.
	final atomic.Bool
	dec   *xml.Decoder
	dr    depthReader
	// begun is set once the document's first element arrived; an XML
	// declaration is allowed only before it.
	begun bool

	mu      sync.Mutex
	buf     []byte
	pending int
	closing bool
	dead    bool
	// ended is set when this side ended the stream on purpose
	// (CloseStream), as opposed to the peer going away or a slow consumer.
	ended    bool
	acks     *Acks // XEP-0198 accounting; nil unless stream management is on
	signal   chan struct{}
	writerOn bool
	done     chan struct{}
	lastOut  time.Time

	// OnIdle is called from the reading goroutine when the peer has been
	// silent for Timeouts.Idle (e.g. to send a XEP-0199 ping).
	OnIdle func()
}

// New wraps nc. ns is the stream content namespace (stanza.NSClient, ...).
func New(nc net.Conn, id uint64, ns string, limits Limits, to Timeouts) *Conn {
	if to.Write == 0 {
		to.Write = 30 * time.Second
	}
	c := &Conn{ID: id, nc: nc, ns: ns, limits: limits, to: to, signal: make(chan struct{}, 1), done: make(chan struct{})}
	c.Reset()
	return c
}

// NetConn returns the current underlying connection (a *tls.Conn after
// StartTLS).
func (c *Conn) NetConn() net.Conn { return c.nc }

// TLS returns the TLS state, or nil before TLS.
func (c *Conn) TLS() *tls.ConnectionState {
	if tc, ok := c.nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return &cs
	}
	return nil
}

// Reset starts a new XML document on the current connection (stream
// restart, RFC 6120 §4.3.3).
func (c *Conn) Reset() {
	var hard time.Time
	if c.lr != nil {
		hard = c.lr.hard // a stream restart keeps the negotiation deadline
	}
	c.lr = &limitReader{c: c, r: c.nc, hard: hard, prolog: true}
	// Our own buffer (the decoder would add one anyway) lets Next see how
	// many bytes read ahead already belong to the next element.
	c.br = bufio.NewReaderSize(c.lr, readBuffer)
	c.dec = xml.NewDecoder(c.br)
	c.dec.Strict = true
	c.dr = depthReader{d: c.dec, max: c.limits.MaxDepth}
	c.begun = false
}

// StartTLS upgrades the connection as a server (before the writer runs).
func (c *Conn) StartTLS(cfg *tls.Config, deadline time.Time) error {
	tc := tls.Server(c.nc, cfg)
	_ = tc.SetDeadline(deadline)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("conn: TLS handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.nc = tc
	c.Reset()
	return nil
}

// SetDeadline sets an absolute deadline for negotiation reads and writes;
// the zero time switches to idle/ping handling.
func (c *Conn) SetDeadline(t time.Time) {
	c.lr.hard = t
	c.lr.armed, c.lr.idle = time.Time{}, false // re-arm idle handling on the next read
	_ = c.nc.SetReadDeadline(t)
}

// Next returns the next top-level start element, skipping whitespace
// (keepalives). It returns ErrStreamClosed at </stream:stream>.
func (c *Conn) Next() (xml.StartElement, error) {
	c.lr.n = c.br.Buffered()
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return xml.StartElement{}, c.readErr(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			c.begun = true
			return t.Copy(), nil
		case xml.EndElement:
			return xml.StartElement{}, ErrStreamClosed
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return xml.StartElement{}, ErrNotWellFormed
			}
		case xml.ProcInst:
			if t.Target == "xml" && !c.begun {
				continue // XML declaration at document start
			}
			return xml.StartElement{}, ErrRestricted
		case xml.Comment, xml.Directive:
			return xml.StartElement{}, ErrRestricted
		}
	}
}

// ReadStanza reads the stanza opened by start.
func (c *Conn) ReadStanza(start xml.StartElement) (*stanza.Stanza, error) {
	c.dr.depth = 0
	st, err := stanza.Parse(&c.dr, start)
	if err != nil {
		var pe *stanza.ParseError
		if errors.As(err, &pe) {
			return st, err
		}
		if errors.Is(err, stanza.ErrNotStanza) {
			return nil, err
		}
		return nil, c.readErr(err)
	}
	return st, nil
}

// ReadElement reads the element opened by start.
func (c *Conn) ReadElement(start xml.StartElement) (*stanza.Element, error) {
	c.dr.depth = 0
	e, err := stanza.ReadElement(&c.dr, start)
	if err != nil {
		return nil, c.readErr(err)
	}
	return e, nil
}

func (c *Conn) readErr(err error) error {
	switch {
	case errors.Is(err, ErrTooBig), errors.Is(err, ErrTooDeep), errors.Is(err, ErrIdle), errors.Is(err, ErrRestricted):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		if se.Msg == "unexpected EOF" {
			// The peer went away mid-stream: nothing to tell it.
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return fmt.Errorf("%w: %w", ErrNotWellFormed, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return fmt.Errorf("%w: %w", ErrNotWellFormed, err)
}

// WriteNow writes b synchronously (negotiation, before StartWriter).
func (c *Conn) WriteNow(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.to.Write))
	_, err := c.nc.Write(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

// StartWriter starts the writer goroutine; after it, use Send/SendRaw.
func (c *Conn) StartWriter() {
	c.mu.Lock()
	c.writerOn = true
	c.lastOut = time.Now()
	c.mu.Unlock()
	go c.writeLoop()
}

// Queued returns the stanzas waiting in the outbound buffer (metrics).
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending
}

// Send serializes st into the outbound buffer. A peer whose queue exceeds
// the limits is cut off with resource-constraint.
func (c *Conn) Send(st *stanza.Stanza) error {
	c.mu.Lock()
	if c.closing || c.dead {
		c.mu.Unlock()
		return ErrClosed
	}
	if (c.limits.SendQueue > 0 && c.pending >= c.limits.SendQueue) || (c.limits.SendQueueBytes > 0 && len(c.buf) >= c.limits.SendQueueBytes) {
		c.mu.Unlock()
		c.kill()
		return ErrQueueFull
	}
	c.buf = st.AppendXML(c.buf, c.ns)
	c.pending++
	over := false
	if a := c.acks; a != nil {
		// Counting under the send lock keeps the numbering identical to
		// the order on the wire; without stream management this costs
		// one nil check.
		over = a.Push(st, time.Now())
		if a.wantRequest(a.every) {
			c.buf = append(c.buf, a.request...)
		}
	}
	c.mu.Unlock()
	if over {
		// The stanza is kept (the owner re-routes it when the session
		// ends); a peer that stops acknowledging is not fed more.
		c.CloseStream("resource-constraint", "too many unacknowledged stanzas")
		return nil
	}
	c.wake()
	return nil
}

// SendRaw queues raw bytes (nonzas such as SM acks). Synchronous before
// StartWriter.
func (c *Conn) SendRaw(b []byte) error {
	c.mu.Lock()
	if !c.writerOn {
		c.mu.Unlock()
		return c.WriteNow(b)
	}
	if c.closing || c.dead {
		c.mu.Unlock()
		return ErrClosed
	}
	c.buf = append(c.buf, b...)
	c.pending++
	c.mu.Unlock()
	c.wake()
	return nil
}

func (c *Conn) wake() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// CloseStream queues a stream error (if cond is not empty) and the closing
// tag, then ends the connection once they are written.
func (c *Conn) CloseStream(cond, text string) { c.CloseStreamWith(cond, text, nil) }

// CloseStreamWith is CloseStream with an application-specific condition
// element inside <stream:error> (RFC 6120 §4.9.4), e.g. XEP-0198's
// <handled-count-too-high/>.
func (c *Conn) CloseStreamWith(cond, text string, app *stanza.Element) {
	tail := StreamErrorXML(cond, text)
	if app != nil && len(tail) > 0 {
		end := len(tail) - len("</stream:error>")
		tail = append(app.AppendXML(append([]byte(nil), tail[:end]...), "", ""), tail[end:]...)
	}
	tail = append(tail, "</stream:stream>"...)
	c.mu.Lock()
	if c.closing || c.dead {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.ended = true
	if !c.writerOn {
		c.mu.Unlock()
		_ = c.WriteNow(tail)
		c.finish()
		return
	}
	c.buf = append(c.buf, tail...)
	c.mu.Unlock()
	c.wake()
}

// StreamClosed reports whether this side ended the stream on purpose with
// CloseStream (a stream error or a clean close), rather than the peer
// going away, a network failure or a slow-consumer cut-off.
func (c *Conn) StreamClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// kill drops the connection at once (slow consumer): the queue cannot take
// a stream error, so one is attempted with a short deadline.
func (c *Conn) kill() {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.closing = true
	c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.nc.Write(append(StreamErrorXML("resource-constraint", "outbound queue overflow"), "</stream:stream>"...))
	_ = c.nc.Close()
}

// finish closes the connection after the final write: half-close so the
// peer sees the end, and give the reader a moment to see the peer's close.
func (c *Conn) finish() {
	_ = c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	c.final.Store(true) // the reader must not re-arm idle deadlines now
	switch nc := c.nc.(type) {
	case *tls.Conn:
		_ = nc.CloseWrite()
	case *net.TCPConn:
		_ = nc.CloseWrite()
	default:
		_ = c.nc.Close()
	}
}

// Close releases the connection (called by the owner when its read loop
// ends). It does not wait for queued output: call CloseStream first.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
	c.wake()
	return c.nc.Close()
}

// Done is closed when the writer goroutine has exited.
func (c *Conn) Done() <-chan struct{} { return c.done }

func (c *Conn) writeLoop() {
	defer close(c.done)
	var ka *time.Ticker
	var kaC <-chan time.Time
	if c.to.Keepalive > 0 {
		ka = time.NewTicker(c.to.Keepalive)
		defer ka.Stop()
		kaC = ka.C
	}
	var out []byte
	for {
		c.mu.Lock()
		for len(c.buf) == 0 && !c.closing && !c.dead {
			c.mu.Unlock()
			select {
			case <-c.signal:
			case <-kaC:
				c.mu.Lock()
				if len(c.buf) == 0 && time.Since(c.lastOut) >= c.to.Keepalive {
					c.buf = append(c.buf, ' ')
				}
				if a := c.acks; a != nil && a.wantRequest(1) {
					// Periodic request, so stanzas below the
					// request threshold are acknowledged too.
					c.buf = append(c.buf, a.request...)
				}
				c.mu.Unlock()
			}
			c.mu.Lock()
		}
		if c.dead {
			c.mu.Unlock()
			return
		}
		out, c.buf = c.buf, out[:0]
		c.pending = 0
		closing := c.closing
		c.lastOut = time.Now()
		c.mu.Unlock()
		if len(out) > 0 {
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.to.Write))
			if _, err := c.nc.Write(out); err != nil {
				c.mu.Lock()
				c.dead = true
				c.mu.Unlock()
				_ = c.nc.Close()
				return
			}
		}
		if cap(out) > 64<<10 {
			out = nil // let a burst's buffer go
		}
		if closing {
			c.mu.Lock()
			empty := len(c.buf) == 0
			c.mu.Unlock()
			if empty {
				c.finish()
				return
			}
		}
	}
}

// StreamErrorXML renders <stream:error> for an RFC 6120 §4.9.3 condition;
// an empty cond renders nothing.
func StreamErrorXML(cond, text string) []byte {
	if cond == "" {
		return nil
	}
	e := stanza.NewElement(stanza.NSStreamErr, cond)
	b := []byte("<stream:error>")
	b = e.AppendXML(b, "", "")
	if text != "" {
		t := stanza.NewElement(stanza.NSStreamErr, "text")
		t.AppendText(text)
		b = t.AppendXML(b, "", "")
	}
	return append(b, "</stream:error>"...)
}

// limitReader counts bytes per top-level element and turns read timeouts
// into idle handling without breaking the XML decoder's state.
type limitReader struct {
	c     *Conn
	r     io.Reader
	n     int
	hard  time.Time // negotiation deadline: a timeout then is final
	idle  bool      // OnIdle fired; the next timeout is final
	armed time.Time
	// prolog is true until the first '<': anything but whitespace (or a
	// UTF-8 BOM) before it is not XML, and the decoder would otherwise
	// wait for a '<' that never comes (e.g. an HTTP request).
	prolog bool
}

func (l *limitReader) checkProlog(p []byte) error {
	for i, b := range p {
		switch {
		case b == '<':
			l.prolog = false
			return nil
		case b == ' ' || b == '\t' || b == '\r' || b == '\n':
		case (b == 0xEF || b == 0xBB || b == 0xBF) && l.n-len(p)+i < 3:
		default:
			return ErrNotWellFormed
		}
	}
	return nil
}

func (l *limitReader) Read(p []byte) (int, error) {
	if max := l.c.limits.MaxStanzaBytes; max > 0 && l.n > max {
		return 0, ErrTooBig
	}
	for {
		if l.hard.IsZero() && l.c.to.Idle > 0 && !l.c.final.Load() {
			now := time.Now()
			if !l.idle && now.Sub(l.armed) > l.c.to.Idle/8 {
				_ = l.c.nc.SetReadDeadline(now.Add(l.c.to.Idle))
				l.armed = now
			}
		}
		n, err := l.r.Read(p)
		if n > 0 {
			l.n += n
			if l.prolog {
				if err := l.checkProlog(p[:n]); err != nil {
					return 0, err
				}
			}
			if l.idle {
				l.idle = false
				l.armed = time.Time{}
			}
			return n, nil
		}
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() && l.hard.IsZero() && l.c.to.Idle > 0 && !l.c.final.Load() {
			if l.idle {
				return 0, ErrIdle
			}
			l.idle = true
			_ = l.c.nc.SetReadDeadline(time.Now().Add(l.c.to.Answer))
			if l.c.OnIdle != nil {
				l.c.OnIdle()
			}
			continue
		}
		return n, err
	}
}

// depthReader bounds element nesting and rejects restricted XML inside
// stanzas.
type depthReader struct {
	d     *xml.Decoder
	depth int
	max   int
}

func (r *depthReader) Token() (xml.Token, error) {
	tok, err := r.d.Token()
	if err != nil {
		return nil, err
	}
	switch tok.(type) {
	case xml.StartElement:
		r.depth++
		if r.max > 0 && r.depth > r.max {
			return nil, ErrTooDeep
		}
	case xml.EndElement:
		r.depth--
	case xml.Comment, xml.Directive, xml.ProcInst:
		return nil, ErrRestricted
	}
	return tok, nil
}
