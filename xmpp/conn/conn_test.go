package conn_test

import (
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/stanza"
)

const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`

var limits = conn.Limits{MaxStanzaBytes: 4096, MaxDepth: 8, SendQueue: 3, SendQueueBytes: 1 << 20}

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// readAll opens the stream and reads stanzas until an error, returning
// how many were read and the error.
func readAll(c *conn.Conn) (int, error) {
	start, err := c.Next()
	if err != nil {
		return 0, err
	}
	if start.Name.Local != "stream" {
		return 0, errors.New("no stream header")
	}
	n := 0
	for {
		start, err := c.Next()
		if err != nil {
			return n, err
		}
		if _, err := c.ReadStanza(start); err != nil {
			return n, err
		}
		n++
	}
}

func TestReadLimits(t *testing.T) {
	msg := `<message to='a@localhost'><body>hi</body></message>`
	tests := []struct {
		name  string
		input string
		close bool // close the write side after the input
		n     int
		want  error
	}{
		{"two stanzas and close", header + msg + "\n \t" + msg + "</stream:stream>", false, 2, conn.ErrStreamClosed},
		{"too big", header + `<message><body>` + strings.Repeat("x", 10000) + `</body></message>`, false, 0, conn.ErrTooBig},
		{"too deep", header + `<message>` + strings.Repeat("<a>", 20) + strings.Repeat("</a>", 20) + `</message>`, false, 0, conn.ErrTooDeep},
		{"comment", header + `<message><!-- hi --></message>`, false, 0, conn.ErrRestricted},
		{"processing instruction", header + msg + `<?php echo 1 ?>`, false, 1, conn.ErrRestricted},
		{"doctype", `<!DOCTYPE x [<!ENTITY a 'b'>]>` + header, false, 0, conn.ErrRestricted},
		{"declaration after start", header + `<?xml version='1.0'?>`, false, 0, conn.ErrRestricted},
		{"not xml", "GET / HTTP/1.1\r\n\r\n", false, 0, conn.ErrNotWellFormed},
		{"text between stanzas", header + msg + `junk` + msg, false, 1, conn.ErrNotWellFormed},
		{"bad utf-8", header + "<message><body>\xff\xfe</body></message>", false, 0, conn.ErrNotWellFormed},
		{"mismatched tags", header + `<message><body></message>`, false, 0, conn.ErrNotWellFormed},
		{"peer gone mid-stanza", header + `<message><bo`, true, 0, conn.ErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, sv := tcpPair(t)
			c := conn.New(sv, 1, stanza.NSClient, limits, conn.Timeouts{Write: time.Second})
			c.SetDeadline(time.Now().Add(5 * time.Second))
			go func() {
				_, _ = io.WriteString(cl, tc.input)
				if tc.close {
					_ = cl.(*net.TCPConn).CloseWrite()
				}
			}()
			n, err := readAll(c)
			if n != tc.n || !errors.Is(err, tc.want) {
				t.Fatalf("read %d stanzas, err %v; want %d, %v", n, err, tc.n, tc.want)
			}
		})
	}
}

// TestIdle: OnIdle fires after Timeouts.Idle of silence, and a peer that
// stays silent for Answer more gets ErrIdle; any byte resets it.
func TestIdle(t *testing.T) {
	cl, sv := tcpPair(t)
	c := conn.New(sv, 1, stanza.NSClient, limits, conn.Timeouts{Idle: 100 * time.Millisecond, Answer: 100 * time.Millisecond, Write: time.Second})
	idle := make(chan struct{}, 4)
	c.OnIdle = func() {
		idle <- struct{}{}
		if len(idle) == 1 {
			_, _ = io.WriteString(cl, " ") // the peer answers the first time only
		}
	}
	if _, err := io.WriteString(cl, header); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	_, err := c.Next()
	if !errors.Is(err, conn.ErrIdle) {
		t.Fatalf("err %v, want ErrIdle", err)
	}
	if len(idle) < 2 {
		t.Fatalf("OnIdle ran %d times, want at least 2 (answered once, then silent)", len(idle))
	}
}

// TestWriter: queued stanzas are written in order; a peer that does not
// drain its queue is cut off with resource-constraint.
func TestWriter(t *testing.T) {
	cl, sv := tcpPair(t)
	c := conn.New(sv, 1, stanza.NSClient, limits, conn.Timeouts{Write: time.Second})
	c.StartWriter()
	for _, id := range []string{"a", "b"} {
		if err := c.Send(&stanza.Stanza{Kind: stanza.KindMessage, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	c.CloseStream("", "")
	got, err := io.ReadAll(cl)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	if strings.Index(s, `id="a"`) < 0 || strings.Index(s, `id="a"`) > strings.Index(s, `id="b"`) || !strings.HasSuffix(s, "</stream:stream>") {
		t.Fatalf("wrote %q", s)
	}
}

func TestQueueOverflow(t *testing.T) {
	cl, sv := tcpPair(t)
	c := conn.New(sv, 1, stanza.NSClient, limits, conn.Timeouts{Write: time.Second})
	// The writer is not started, so nothing drains: the fourth stanza
	// exceeds SendQueue=3.
	var err error
	for i := 0; i < 4 && err == nil; i++ {
		err = c.Send(&stanza.Stanza{Kind: stanza.KindMessage})
	}
	if !errors.Is(err, conn.ErrQueueFull) {
		t.Fatalf("err %v, want ErrQueueFull", err)
	}
	got, _ := io.ReadAll(cl)
	if !strings.Contains(string(got), "resource-constraint") {
		t.Fatalf("peer got %q, want a resource-constraint stream error", got)
	}
}

func TestStreamErrorXML(t *testing.T) {
	b := conn.StreamErrorXML("policy-violation", "a < b & c")
	var v struct {
		XMLName xml.Name
		Inner   []byte `xml:",innerxml"`
	}
	if err := xml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !strings.Contains(string(b), "policy-violation") || !strings.Contains(string(b), "a &lt; b &amp; c") {
		t.Fatalf("%s", b)
	}
}

// FuzzRead feeds arbitrary bytes after a stream header through the read
// path: it must never panic, and every failure must be one of the errors
// the stream layer maps to a stream or stanza error.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		`<message to='a@b'><body>x</body></message>`,
		`<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<presence><show>away</show></presence></stream:stream>`,
		`<message><!-- c --></message>`,
		`<message>` + strings.Repeat("<a>", 12),
		"<message><body>\xff</body></message>",
		`<?pi x?>`,
		`junk`,
		`<message xmlns:x='urn:x'><x:y x:z='1'/></message>`,
		`<unknown xmlns='urn:foo'/>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go func() {
			_, _ = a.Write([]byte(header))
			_, _ = a.Write(in)
			_ = a.Close()
		}()
		c := conn.New(b, 1, stanza.NSClient, conn.Limits{MaxStanzaBytes: 4096, MaxDepth: 8}, conn.Timeouts{Write: time.Second})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := readAll(c)
		var pe *stanza.ParseError
		switch {
		case err == nil:
			t.Fatal("readAll returned without error")
		case errors.Is(err, conn.ErrStreamClosed), errors.Is(err, conn.ErrClosed), errors.Is(err, conn.ErrTooBig),
			errors.Is(err, conn.ErrTooDeep), errors.Is(err, conn.ErrRestricted), errors.Is(err, conn.ErrNotWellFormed),
			errors.Is(err, stanza.ErrNotStanza), errors.As(err, &pe):
		default:
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
	})
}
