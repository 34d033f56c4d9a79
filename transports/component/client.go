package component

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"gatehouse/xmpp/stanza"
)

// Client is the connecting side of XEP-0114: what a transport (Gatehouse's
// own IRC transport, in-process or as its own process) uses to serve its
// domain through a server's component listener.
type Client struct {
	nc     net.Conn
	dec    *xml.Decoder
	Domain string

	wmu sync.Mutex
	bw  *bufio.Writer
}

// ErrRefused: the server answered the header or handshake with a stream
// error (its condition is in the message: host-unknown, not-authorized,
// conflict).
var ErrRefused = errors.New("component: server refused the stream")

// Dial connects to the component listener at addr and authenticates as
// domain with secret.
func Dial(ctx context.Context, addr, domain string, secret []byte) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("component: dial %s: %w", addr, err)
	}
	c, err := handshake(ctx, nc, domain, secret)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

func handshake(ctx context.Context, nc net.Conn, domain string, secret []byte) (*Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = nc.SetDeadline(deadline)
	c := &Client{nc: nc, dec: xml.NewDecoder(nc), Domain: domain, bw: bufio.NewWriter(nc)}
	hdr := `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='` + xmlEscape(domain) + `'>`
	if err := c.write([]byte(hdr)); err != nil {
		return nil, fmt.Errorf("component: header: %w", err)
	}
	var id string
	for id == "" {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, fmt.Errorf("component: reading the server's header: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return nil, fmt.Errorf("component: unexpected <%s> instead of a stream header", se.Name.Local)
			}
			for _, a := range se.Attr {
				if a.Name.Local == "id" && a.Name.Space == "" {
					id = a.Value
				}
			}
			if id == "" {
				return nil, errors.New("component: the server's header has no stream id")
			}
		}
	}
	if err := c.write([]byte("<handshake>" + Handshake(id, secret) + "</handshake>")); err != nil {
		return nil, fmt.Errorf("component: handshake: %w", err)
	}
	el, err := c.nextElement()
	if err != nil {
		return nil, err
	}
	if el.Name.Local != "handshake" {
		return nil, fmt.Errorf("component: unexpected <%s> after the handshake", el.Name.Local)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func xmlEscape(s string) string {
	var b []byte
	for _, r := range s {
		switch r {
		case '&':
			b = append(b, "&amp;"...)
		case '<':
			b = append(b, "&lt;"...)
		case '\'':
			b = append(b, "&apos;"...)
		case '"':
			b = append(b, "&quot;"...)
		default:
			b = append(b, string(r)...)
		}
	}
	return string(b)
}

// nextElement reads one top-level element; a stream error becomes
// ErrRefused.
func (c *Client) nextElement() (*stanza.Element, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, fmt.Errorf("component: read: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := stanza.ReadElement(c.dec, t.Copy())
			if err != nil {
				return nil, fmt.Errorf("component: read: %w", err)
			}
			if el.Name.Local == "error" && el.Name.Space == stanza.NSStream {
				cond := ""
				for _, e := range el.Elements() {
					if e.Name.Local != "text" {
						cond = e.Name.Local
						break
					}
				}
				return nil, fmt.Errorf("%w: %s", ErrRefused, cond)
			}
			return el, nil
		case xml.EndElement:
			return nil, fmt.Errorf("component: %w", errStreamClosed)
		}
	}
}

// Recv returns the next stanza from the server. Non-stanza elements are
// skipped; a stream error or the end of the stream is an error.
func (c *Client) Recv() (*stanza.Stanza, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, fmt.Errorf("component: read: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			t = t.Copy()
			if stanza.KindOf(t.Name.Local) != 0 {
				s, err := stanza.Parse(c.dec, t)
				var pe *stanza.ParseError
				if errors.As(err, &pe) {
					continue // bad addressing from the server: nothing to answer
				}
				if errors.Is(err, stanza.ErrNotStanza) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("component: read: %w", err)
				}
				return s, nil
			}
			el, err := stanza.ReadElement(c.dec, t)
			if err != nil {
				return nil, fmt.Errorf("component: read: %w", err)
			}
			if el.Name.Local == "error" && el.Name.Space == stanza.NSStream {
				return nil, fmt.Errorf("%w: %s", ErrRefused, el.String())
			}
		case xml.EndElement:
			_ = c.write([]byte("</stream:stream>"))
			return nil, fmt.Errorf("component: %w", errStreamClosed)
		}
	}
}

// Send writes one stanza.
func (c *Client) Send(s *stanza.Stanza) error {
	return c.write(s.AppendXML(nil, stanza.NSComponent))
}

func (c *Client) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.bw.Write(b); err != nil {
		return fmt.Errorf("component: write: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("component: write: %w", err)
	}
	return nil
}

// Close ends the stream and the connection.
func (c *Client) Close() error {
	_ = c.write([]byte("</stream:stream>"))
	return c.nc.Close()
}
