// Package websocket carries client XMPP streams over WebSocket (RFC 7395)
// and publishes the connection methods of a domain (XEP-0156 host-meta).
//
// A WebSocket connection is turned into a net.Conn that reads and writes
// the same bytes as a TCP client stream: incoming <open/> and <close/>
// become the stream header and closing tag, and the server's outbound
// stream is cut into one namespace-complete element per message. So the
// c2s package serves it with the very code that serves TCP (SASL, binding,
// stream management, limits), and no stanza takes another path to the
// router.
//
// It must not import c2s, router, hook or any feature module.
package websocket

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ws "github.com/coder/websocket"
	"github.com/sirupsen/logrus"
)

// Subprotocol is the WebSocket subprotocol of RFC 7395.
const Subprotocol = "xmpp"

// Config configures the WebSocket endpoint.
type Config struct {
	// ReadLimit bounds one message; the stream's own stanza limit applies
	// too, with its proper stream error, so this sits above it.
	ReadLimit int64
	// OriginPatterns are the browser origins (host patterns as in
	// path.Match, e.g. "chat.example.com") allowed besides the server's
	// own; requests without an Origin header (native clients) always are.
	OriginPatterns []string
	// PingInterval is how often an idle connection gets a WebSocket ping
	// (RFC 7395 §3.4 replaces whitespace keepalives with them); 0 never.
	PingInterval time.Duration
}

// Handler accepts WebSocket upgrades and hands each as a *Conn to serve,
// which runs the whole stream and returns when it is over.
func Handler(cfg Config, log logrus.FieldLogger, serve func(ctx context.Context, nc *Conn)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, &ws.AcceptOptions{
			Subprotocols:   []string{Subprotocol},
			OriginPatterns: cfg.OriginPatterns,
		})
		if err != nil {
			log.WithError(err).WithField("remote", r.RemoteAddr).Debug("websocket upgrade refused")
			return
		}
		if c.Subprotocol() != Subprotocol {
			// RFC 7395 §3.2: without the xmpp subprotocol there is no
			// agreement on what the messages mean.
			_ = c.Close(ws.StatusProtocolError, "the 'xmpp' subprotocol is required")
			return
		}
		if cfg.ReadLimit > 0 {
			c.SetReadLimit(cfg.ReadLimit)
		}
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		nc := newConn(c, r.TLS, local, addr(r.RemoteAddr), cfg.PingInterval)
		defer nc.Close()
		// Not the request's context: it ends when this handler returns,
		// and a session kept for resumption (XEP-0198) outlives that.
		serve(context.WithoutCancel(r.Context()), nc)
	})
}

// Conn is one WebSocket connection as a byte stream.
type Conn struct {
	ws     *ws.Conn
	local  net.Addr
	remote net.Addr
	tls    *tls.ConnectionState

	ctx    context.Context // ends when the connection is closed
	cancel context.CancelFunc
	msgs   chan []byte   // translated incoming messages; closed on read error
	wake   chan struct{} // read deadline changed
	once   sync.Once
	done   chan struct{} // closed by Close

	rmu   sync.Mutex // Read
	rbuf  []byte
	rdead atomic.Pointer[time.Time]

	wmu   sync.Mutex // Write
	split splitter
	wdead atomic.Pointer[time.Time]
	wrote atomic.Int64 // unix nanoseconds of the last write, for pings
}

var _ net.Conn = (*Conn)(nil)

// Dial opens an RFC 7395 WebSocket to url (wss://host:port/path) as a
// client: the returned connection takes a client's TCP-style stream and
// yields the server's, so raw-XML test clients (xmpptest) and tools work
// over WebSocket unchanged.
func Dial(ctx context.Context, url string, tlsCfg *tls.Config) (*Conn, error) {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	c, resp, err := ws.Dial(ctx, url, &ws.DialOptions{HTTPClient: hc, Subprotocols: []string{Subprotocol}})
	if err != nil {
		return nil, fmt.Errorf("websocket: dial %s: %w", url, err)
	}
	if c.Subprotocol() != Subprotocol {
		_ = c.CloseNow()
		return nil, fmt.Errorf("websocket: %s did not agree to the xmpp subprotocol", url)
	}
	c.SetReadLimit(16 << 20)
	return newConn(c, resp.TLS, nil, nil, 0), nil
}

func newConn(c *ws.Conn, state *tls.ConnectionState, local, remote net.Addr, ping time.Duration) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	nc := &Conn{ws: c, tls: state, ctx: ctx, cancel: cancel, local: local, remote: remote,
		msgs: make(chan []byte), wake: make(chan struct{}, 1), done: make(chan struct{})}
	if nc.local == nil {
		nc.local = &net.TCPAddr{}
	}
	if nc.remote == nil {
		nc.remote = &net.TCPAddr{}
	}
	nc.wrote.Store(time.Now().UnixNano())
	go nc.readLoop()
	if ping > 0 {
		go nc.pingLoop(ping)
	}
	return nc
}

func addr(s string) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", s); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

func (c *Conn) readLoop() {
	defer close(c.msgs)
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		if typ != ws.MessageText {
			_ = c.ws.Close(ws.StatusUnsupportedData, "RFC 7395 uses text messages only")
			return
		}
		select {
		case c.msgs <- inbound(data):
		case <-c.done:
			return
		}
	}
}

func (c *Conn) pingLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if time.Since(time.Unix(0, c.wrote.Load())) < every {
				continue
			}
			ctx, cancel := context.WithTimeout(c.ctx, every)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil {
				return // the reader sees the connection end
			}
		}
	}
}

// Read implements net.Conn: the translated incoming stream.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.rbuf) == 0 {
		var timeout <-chan time.Time
		if dl := c.rdead.Load(); dl != nil && !dl.IsZero() {
			d := time.Until(*dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return 0, io.EOF
			}
			c.rbuf = m
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-c.wake:
		case <-c.done:
			return 0, net.ErrClosed
		}
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

// Write implements net.Conn: p continues the outbound stream; every
// element it completes goes out as one message.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	msgs, err := c.split.feed(p)
	if err != nil {
		return 0, fmt.Errorf("websocket: outbound stream: %w", err)
	}
	if len(msgs) == 0 {
		return len(p), nil
	}
	ctx := c.ctx
	if dl := c.wdead.Load(); dl != nil && !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, *dl)
		defer cancel()
	}
	for _, m := range msgs {
		if err := c.ws.Write(ctx, ws.MessageText, m); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return 0, os.ErrDeadlineExceeded
			}
			return 0, fmt.Errorf("websocket: write: %w", err)
		}
	}
	c.wrote.Store(time.Now().UnixNano())
	return len(p), nil
}

// Close implements net.Conn with the WebSocket closing handshake, which
// runs in the background so the stream's owner is not held up by a peer
// that never answers (the library bounds the wait).
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.done)
		go func() {
			_ = c.ws.Close(ws.StatusNormalClosure, "")
			c.cancel()
		}()
	})
	return nil
}

// Abort drops the connection without a closing handshake, as a network
// failure would.
func (c *Conn) Abort() {
	c.once.Do(func() { close(c.done) })
	_ = c.ws.CloseNow()
	c.cancel()
}

// ConnectionState returns the TLS state of the HTTPS connection the
// WebSocket runs on (for SASL channel binding); the zero value over
// plain HTTP.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return *c.tls
}

// Secure reports whether the WebSocket runs over TLS.
func (c *Conn) Secure() bool { return c.tls != nil }

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr implements net.Conn: the HTTP peer.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn. Unlike the library's own NetConn,
// an expired deadline does not close the connection: c2s uses it for idle
// detection and then pings.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdead.Store(&t)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdead.Store(&t)
	return nil
}
