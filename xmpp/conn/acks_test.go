package conn_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/stanza"
)

const request = `<r xmlns='urn:xmpp:sm:3'/>`

// TestAttachAcks: stanzas sent after AttachAcks are counted in wire order,
// an ack request follows every N unacknowledged ones, and after Close the
// detached accounting keeps what was never acknowledged.
func TestAttachAcks(t *testing.T) {
	cl, sv := tcpPair(t)
	c := conn.New(sv, 1, stanza.NSClient, conn.Limits{SendQueue: 100}, conn.Timeouts{Write: time.Second})
	if err := c.Send(&stanza.Stanza{Kind: stanza.KindMessage, ID: "before"}); err != nil {
		t.Fatal(err)
	}
	a := conn.NewAcks(100, 2, []byte(request))
	if err := c.AttachAcks(a, []byte("<enabled/>")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2", "3"} {
		if err := c.Send(&stanza.Stanza{Kind: stanza.KindMessage, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if sent, err := c.Ack(1); err != nil || sent != 3 {
		t.Fatalf("Ack(1): sent %d, err %v", sent, err)
	}
	if _, err := c.Ack(4); !errors.Is(err, conn.ErrAckTooHigh) {
		t.Fatalf("Ack(4) after 3 sent: %v", err)
	}
	c.StartWriter()
	c.CloseStream("", "")
	got, err := io.ReadAll(cl)
	if err != nil {
		t.Fatal(err)
	}
	// "before" precedes <enabled/> and is not counted; one request after
	// the second counted stanza, none after the third (one is outstanding).
	want := []string{`id="before"`, "<enabled/>", `id="1"`, `id="2"`, request, `id="3"`, "</stream:stream>"}
	s := string(got)
	pos := 0
	for _, w := range want {
		i := strings.Index(s[pos:], w)
		if i < 0 {
			t.Fatalf("wire %q: %q missing or out of order", s, w)
		}
		pos += i + len(w)
	}
	if strings.Count(s, request) != 1 {
		t.Fatalf("wire %q: want exactly one request", s)
	}
	if c.DetachAcks() != a || c.DetachAcks() != nil {
		t.Fatal("DetachAcks must hand the accounting over once")
	}
	if err := c.Send(&stanza.Stanza{Kind: stanza.KindMessage, ID: "late"}); !errors.Is(err, conn.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	var pending []string
	for _, u := range a.Pending() {
		pending = append(pending, u.Stanza.ID)
	}
	if strings.Join(pending, ",") != "2,3" {
		t.Fatalf("pending %v, want 2,3", pending)
	}
}

// TestAcksOverLimit: a peer that never acknowledges is cut off with
// resource-constraint, and the stanza that crossed the limit is kept.
func TestAcksOverLimit(t *testing.T) {
	cl, sv := tcpPair(t)
	c := conn.New(sv, 1, stanza.NSClient, conn.Limits{SendQueue: 100}, conn.Timeouts{Write: time.Second})
	a := conn.NewAcks(2, 10, []byte(request))
	if err := c.AttachAcks(a, nil); err != nil {
		t.Fatal(err)
	}
	c.StartWriter()
	for i := 0; i < 3; i++ {
		if err := c.Send(&stanza.Stanza{Kind: stanza.KindMessage}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := io.ReadAll(cl)
	if !strings.Contains(string(got), "resource-constraint") || !c.StreamClosed() {
		t.Fatalf("peer got %q, want resource-constraint", got)
	}
	if a.Len() != 3 {
		t.Fatalf("kept %d stanzas, want 3", a.Len())
	}
}

func TestCloseStreamWithApp(t *testing.T) {
	cl, sv := tcpPair(t)
	c := conn.New(sv, 1, stanza.NSClient, limits, conn.Timeouts{Write: time.Second})
	c.StartWriter()
	c.CloseStreamWith("undefined-condition", "bad count", stanza.NewElement("urn:xmpp:sm:3", "handled-count-too-high", "h", "5", "send-count", "3"))
	got, _ := io.ReadAll(cl)
	want := `<stream:error><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>`
	s := string(got)
	if !strings.HasPrefix(s, want) || !strings.Contains(s, `<handled-count-too-high xmlns="urn:xmpp:sm:3" h="5" send-count="3"/>`) ||
		strings.Index(s, "handled-count-too-high") > strings.Index(s, "</stream:error>") {
		t.Fatalf("wrote %q", s)
	}
}

// BenchmarkSend measures Send (serialising into the outbound buffer, the
// writer draining it to a real socket) without and with XEP-0198
// accounting; with it, the peer acknowledges every 64 stanzas.
func BenchmarkSend(b *testing.B) {
	st := &stanza.Stanza{Kind: stanza.KindMessage, Type: "chat", ID: "m",
		Children: []stanza.Node{{El: stanza.NewElement("", "body").AppendText(strings.Repeat("x", 100))}}}
	for _, sm := range []bool{false, true} {
		name := "plain"
		if sm {
			name = "acks"
		}
		b.Run(name, func(b *testing.B) {
			cl, sv := tcpPair(b)
			go func() { _, _ = io.Copy(io.Discard, cl) }()
			c := conn.New(sv, 1, stanza.NSClient, conn.Limits{SendQueue: 1 << 20, SendQueueBytes: 1 << 30}, conn.Timeouts{Write: 10 * time.Second})
			if sm {
				if err := c.AttachAcks(conn.NewAcks(1<<20, 5, []byte(request)), nil); err != nil {
					b.Fatal(err)
				}
			}
			c.StartWriter()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				if err := c.Send(st); err != nil {
					b.Fatal(err)
				}
				if sm && i%64 == 0 {
					if _, err := c.Ack(uint32(i)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			c.CloseStream("", "")
			<-c.Done()
		})
	}
}
