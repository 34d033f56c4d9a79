package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"gatehouse/s2s/s2stest"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/xmpptest"
)

// BenchmarkS2SMessage measures federated delivery end to end over real TLS
// sockets: alice@a writes chat messages as fast as her c2s stream takes
// them; a routes them over its s2s link to b, which delivers them to bob,
// who counts them. ns/op is per delivered message. The link is up before
// the timer starts; the inbound s2s rate limit is off (it exists to slow
// peers down).
//
// "passthrough" replaces the boundary with one that allows everything, so
// it measures routing and the s2s link; "archive" keeps the server's own
// boundary (policy and the compliance archive, sync full), where each
// crossing waits for its commit on both servers.
func BenchmarkS2SMessage(b *testing.B) {
	for _, tc := range []struct {
		name     string
		certs    bool
		boundary router.Boundary
	}{
		{"passthrough/dialback", false, router.PassThrough{}},
		{"passthrough/sasl-external-bidi", true, router.PassThrough{}},
		{"archive/dialback", false, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			// The link's send buffer must hold a burst: a flood that
			// outruns the link overflows limits.send_queue, and the
			// overflow bounces back to alice, who does not read.
			unlimited := func(c *config.Config) {
				c.S2S.RateLimit = 0
				c.Limits.SendQueue = 1 << 20
				c.Limits.SendQueueBytes = 1 << 30
			}
			optsA, optsB := []xmpptest.Option{unlimited}, []xmpptest.Option{unlimited}
			if tc.certs {
				ca := s2stest.NewCA(b)
				optsA = append(optsA, s2stest.WithCert(ca, ca.Issue(b, fedA)))
				optsB = append(optsB, s2stest.WithCert(ca, ca.Issue(b, fedB)))
			}
			a, _ := runWithBoundary(b, fedA, tc.boundary, optsA...)
			bs, _ := runWithBoundary(b, fedB, tc.boundary, optsB...)
			s2stest.Route(b, a, bs, false)
			s2stest.Route(b, bs, a, false)
			a.AddUser(b, "alice", fedPW)
			bs.AddUser(b, "bob", fedPW)
			alice := a.Dial(b, "alice", fedPW, xmpptest.ClientOptions{NoReader: true})
			bob := bs.Dial(b, "bob", fedPW, xmpptest.ClientOptions{NoReader: true, Resource: "r"})
			br := bufio.NewReaderSize(bob.Conn(), 64<<10)
			bob.Send(`<presence/>`)
			bob.SyncRaw(b, br)
			// Bring the link up: one message through, read by bob.
			alice.Send(`<message to='bob@b.localhost/r' id='warm'><body>warm-up</body></message>`)
			readUntil(b, br, "warm-up")

			msg := fmt.Sprintf(`<message to='bob@b.localhost/r' type='chat' id='m'><body>%s</body></message>`, strings.Repeat("x", 100))
			n := b.N
			done := make(chan error, 1)
			go func() { done <- countMessages(br, n) }()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			start := time.Now()
			alice.Flood(b, msg, n, 32)
			if err := <-done; err != nil && err != io.EOF {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// readUntil reads r until want has been seen.
func readUntil(b *testing.B, r io.Reader, want string) {
	b.Helper()
	var seen []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(seen, []byte(want)) {
		k, err := r.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		seen = append(seen, buf[:k]...)
	}
}

// countMessages reads r until n closing </message> tags have arrived,
// keeping a tail so that a tag split across reads is counted once.
func countMessages(r io.Reader, n int) error {
	const tag = "</message>"
	buf := make([]byte, 64<<10)
	var tail []byte
	for got := 0; got < n; {
		k, err := r.Read(buf)
		if err != nil {
			return err
		}
		data := append(tail, buf[:k]...)
		got += bytes.Count(data, []byte(tag))
		if i := bytes.LastIndex(data, []byte(tag)); i >= 0 {
			data = data[i+len(tag):]
		}
		if len(data) > len(tag) {
			data = data[len(data)-len(tag):]
		}
		tail = append(tail[:0], data...)
	}
	return nil
}
