package policy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Scanner scans file content for malware.
type Scanner interface {
	// Scan returns the name of the malware found, "" for clean content,
	// or an error (wrapping ErrScan) when the content could not be scanned.
	Scan(ctx context.Context, data []byte) (string, error)
}

// ErrScan wraps every failure to scan (clamd down, timeout, protocol
// error, size limit). What happens then is the configured on_scan_failure.
var ErrScan = errors.New("policy: virus scan failed")

// Clamd is a client of the ClamAV daemon. It speaks INSTREAM over a unix
// or TCP socket, one connection per scan (clamd closes INSTREAM
// connections after the reply unless IDSESSION is used, and a connection
// per scan keeps a stuck scan from blocking the others).
type Clamd struct {
	Network string // "unix" or "tcp"
	Addr    string
	// Timeout bounds one scan, connecting included; 0 means 30s.
	Timeout time.Duration
}

// chunkSize is the INSTREAM chunk length; clamd accepts any size up to
// its StreamMaxLength in total.
const chunkSize = 64 << 10

// ParseClamdAddr parses a clamd address: "unix:/run/clamav/clamd.ctl",
// "/run/clamav/clamd.ctl" (a path), "tcp:127.0.0.1:3310" or
// "127.0.0.1:3310".
func ParseClamdAddr(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "unix:"):
		network, addr = "unix", strings.TrimPrefix(s, "unix:")
	case strings.HasPrefix(s, "tcp:"):
		network, addr = "tcp", strings.TrimPrefix(s, "tcp:")
	case strings.HasPrefix(s, "/"):
		network, addr = "unix", s
	default:
		network, addr = "tcp", s
	}
	if addr == "" {
		return "", "", fmt.Errorf("policy: clamd address %q is empty", s)
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("policy: clamd address %q: %w (use unix:/path or tcp:host:port)", s, err)
		}
	}
	return network, addr, nil
}

func (c *Clamd) dial(ctx context.Context) (net.Conn, context.CancelFunc, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.Network, c.Addr)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%w: connect to clamd at %s: %w", ErrScan, c.Addr, err)
	}
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	// Closing the connection when ctx ends unblocks a read or write.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	return conn, func() { stop(); cancel(); _ = conn.Close() }, nil
}

// Ping checks that clamd answers.
func (c *Clamd) Ping(ctx context.Context) error {
	conn, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return fmt.Errorf("%w: clamd ping: %w", ErrScan, err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return fmt.Errorf("%w: clamd ping: %w", ErrScan, err)
	}
	if reply != "PONG" {
		return fmt.Errorf("%w: clamd ping: unexpected reply %q", ErrScan, reply)
	}
	return nil
}

// Scan sends data with INSTREAM and returns the signature name clamd
// reports, or "" when clean.
func (c *Clamd) Scan(ctx context.Context, data []byte) (string, error) {
	return c.ScanReader(ctx, bytes.NewReader(data))
}

// ScanReader streams r to clamd with INSTREAM, in chunks, so a large file
// is never held in memory. Content longer than clamd's StreamMaxLength is
// an error (ErrScan), not a clean result.
func (c *Clamd) ScanReader(ctx context.Context, r io.Reader) (string, error) {
	conn, done, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	w := bufio.NewWriterSize(conn, chunkSize+4)
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return "", fmt.Errorf("%w: %w", ErrScan, err)
	}
	var hdr [4]byte
	buf := make([]byte, chunkSize)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			if _, err := w.Write(hdr[:]); err != nil {
				return "", c.sendFailed(conn, err)
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return "", c.sendFailed(conn, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return "", fmt.Errorf("%w: reading the content: %w", ErrScan, rerr)
		}
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	if _, err := w.Write(hdr[:]); err != nil {
		return "", c.sendFailed(conn, err)
	}
	if err := w.Flush(); err != nil {
		return "", c.sendFailed(conn, err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return "", fmt.Errorf("%w: clamd reply: %w", ErrScan, err)
	}
	return parseScanReply(reply)
}

// sendFailed explains a failed write: clamd closes the stream when it is
// longer than StreamMaxLength, after saying so.
func (c *Clamd) sendFailed(conn net.Conn, err error) error {
	if reply, rerr := readReply(conn); rerr == nil && reply != "" {
		if _, perr := parseScanReply(reply); perr != nil {
			return perr
		}
	}
	return fmt.Errorf("%w: send to clamd: %w", ErrScan, err)
}

// maxReply bounds what is read from clamd.
const maxReply = 4096

func readReply(conn net.Conn) (string, error) {
	var buf bytes.Buffer
	r := bufio.NewReader(conn)
	for buf.Len() < maxReply {
		b, err := r.ReadByte()
		if err != nil {
			// A clamd that closed right after its reply, without the
			// terminator, still answered.
			if buf.Len() > 0 && errors.Is(err, io.EOF) {
				break
			}
			return "", err
		}
		if b == 0 || b == '\n' {
			break
		}
		buf.WriteByte(b)
	}
	return buf.String(), nil
}

// parseScanReply reads "stream: OK", "stream: <name> FOUND" or
// "<message> ERROR".
func parseScanReply(reply string) (string, error) {
	reply = strings.TrimSpace(reply)
	body := strings.TrimPrefix(reply, "stream: ")
	switch {
	case body == "OK":
		return "", nil
	case strings.HasSuffix(body, " FOUND"):
		name := strings.TrimSpace(strings.TrimSuffix(body, " FOUND"))
		if name == "" {
			name = "unknown"
		}
		return name, nil
	case strings.HasSuffix(body, " ERROR"):
		return "", fmt.Errorf("%w: clamd: %s", ErrScan, strings.TrimSuffix(body, " ERROR"))
	}
	return "", fmt.Errorf("%w: unexpected clamd reply %q", ErrScan, reply)
}
