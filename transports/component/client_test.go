package component_test

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/transports/component"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// compClient is a raw XEP-0114 component for tests: it speaks the accept
// protocol over a real TCP connection, as biboumi or Slidge would.
type compClient struct {
	t      testing.TB
	nc     net.Conn
	dec    *xml.Decoder
	Domain string
	ID     string // the stream id the server sent

	wmu       sync.Mutex
	in        chan *stanza.Stanza
	done      chan struct{} // closed when the server's stream ended
	mu        sync.Mutex
	streamErr string
	backlog   []*stanza.Stanza
}

// streamRefused is the stream error a server answered the header or the
// handshake with.
type streamRefused struct{ Condition string }

func (e *streamRefused) Error() string { return "stream error: " + e.Condition }

// openComponent sends the stream header for domain and returns the
// client once the server's header (and stream id) arrived.
func openComponent(t testing.TB, addr, header string) (*compClient, error) {
	nc, err := net.DialTimeout("tcp", addr, xmpptest.Timeout)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(xmpptest.Timeout))
	c := &compClient{t: t, nc: nc, dec: xml.NewDecoder(nc)}
	t.Cleanup(func() { _ = nc.Close() })
	c.raw(header)
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, fmt.Errorf("reading the server's header: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					c.ID = a.Value
				}
			}
			return c, nil
		}
	}
}

func header(domain string) string {
	return `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='` + domain + `'>`
}

// dialComponent connects and authenticates as domain with secret.
func dialComponent(t testing.TB, addr, domain, secret string) (*compClient, error) {
	c, err := openComponent(t, addr, header(domain))
	if err != nil {
		return nil, err
	}
	c.Domain = domain
	c.raw(`<handshake>` + component.Handshake(c.ID, []byte(secret)) + `</handshake>`)
	el, err := c.nextElement()
	if err != nil {
		return nil, err
	}
	if el.Name.Local != "handshake" {
		return nil, fmt.Errorf("expected <handshake/>, got %s", el)
	}
	_ = c.nc.SetDeadline(time.Time{})
	c.in = make(chan *stanza.Stanza, 256)
	c.done = make(chan struct{})
	go c.readLoop()
	return c, nil
}

// mustDial is dialComponent failing the test on error.
func mustDial(t testing.TB, addr, domain, secret string) *compClient {
	t.Helper()
	c, err := dialComponent(t, addr, domain, secret)
	if err != nil {
		t.Fatalf("component %s: %v", domain, err)
	}
	return c
}

// nextElement reads one top-level element during negotiation; a stream
// error becomes a *streamRefused.
func (c *compClient) nextElement() (*stanza.Element, error) {
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
			if el.Name.Local == "error" && el.Name.Space == stanza.NSStream {
				return nil, &streamRefused{Condition: condition(el)}
			}
			return el, nil
		case xml.EndElement:
			return nil, errors.New("stream closed")
		}
	}
}

func condition(el *stanza.Element) string {
	for _, e := range el.Elements() {
		if e.Name.Local != "text" {
			return e.Name.Local
		}
	}
	return ""
}

func (c *compClient) raw(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _ = c.nc.Write([]byte(s))
}

// Send writes raw XML on the component stream.
func (c *compClient) Send(format string, args ...any) { c.raw(fmt.Sprintf(format, args...)) }

func (c *compClient) readLoop() {
	defer close(c.done)
	defer close(c.in)
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			t = t.Copy()
			if stanza.KindOf(t.Name.Local) != 0 {
				s, err := stanza.Parse(c.dec, t)
				if err != nil {
					return
				}
				c.in <- s
				continue
			}
			el, err := stanza.ReadElement(c.dec, t)
			if err != nil {
				return
			}
			if el.Name.Local == "error" && el.Name.Space == stanza.NSStream {
				c.mu.Lock()
				c.streamErr = condition(el)
				c.mu.Unlock()
			}
		case xml.EndElement:
			// Answer the server's close as a real component does.
			c.raw(`</stream:stream>`)
			return
		}
	}
}

// Expect waits for a stanza matching f; earlier ones stay queued.
func (c *compClient) Expect(f func(*stanza.Stanza) bool) *stanza.Stanza {
	c.t.Helper()
	c.mu.Lock()
	for i, s := range c.backlog {
		if f(s) {
			c.backlog = append(c.backlog[:i], c.backlog[i+1:]...)
			c.mu.Unlock()
			return s
		}
	}
	c.mu.Unlock()
	timer := time.NewTimer(xmpptest.Timeout)
	defer timer.Stop()
	for {
		select {
		case s, ok := <-c.in:
			if !ok {
				c.t.Fatalf("component %s: stream closed while waiting (stream error %q)", c.Domain, c.StreamError())
			}
			if f(s) {
				return s
			}
			c.mu.Lock()
			c.backlog = append(c.backlog, s)
			c.mu.Unlock()
		case <-timer.C:
			c.mu.Lock()
			var seen []string
			for _, s := range c.backlog {
				seen = append(seen, s.String())
			}
			c.mu.Unlock()
			c.t.Fatalf("component %s: timed out; unmatched: %s", c.Domain, strings.Join(seen, "\n"))
		}
	}
}

// WaitClosed waits until the server ends the stream and returns the
// stream error condition it sent ("" for none).
func (c *compClient) WaitClosed() string {
	c.t.Helper()
	select {
	case <-c.done:
		return c.StreamError()
	case <-time.After(xmpptest.Timeout):
		c.t.Fatalf("component %s: stream not closed", c.Domain)
	}
	return ""
}

// StreamError returns the stream error condition received, if any.
func (c *compClient) StreamError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamErr
}

// Close ends the stream.
func (c *compClient) Close() {
	c.raw(`</stream:stream>`)
	select {
	case <-c.done:
	case <-time.After(xmpptest.Timeout):
	}
	_ = c.nc.Close()
}
