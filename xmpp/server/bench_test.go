package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/xmpptest"
)

// syncRaw sends a ping on a raw client and reads until its answer.
func syncRaw(b *testing.B, c *xmpptest.Client, r *bufio.Reader) {
	b.Helper()
	c.Send(`<iq type='get' id='sync1'><ping xmlns='urn:xmpp:ping'/></iq>`)
	var seen []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(seen, []byte("sync1")) {
		n, err := r.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		seen = append(seen, buf[:n]...)
	}
}

// BenchmarkLocalMessage measures decode→route→encode between two local
// sessions over real TLS sockets: one client writes chat messages as fast
// as it can, the other counts them. ns/op is per delivered message.
func BenchmarkLocalMessage(b *testing.B) {
	for _, addr := range []string{"full", "bare"} {
		b.Run(addr, func(b *testing.B) {
			ts := xmpptest.RunServer(b)
			ts.AddUser(b, "alice", "correct horse")
			ts.AddUser(b, "bob", "battery staple")
			alice := ts.Dial(b, "alice", "correct horse", xmpptest.ClientOptions{NoReader: true})
			bob := ts.Dial(b, "bob", "battery staple", xmpptest.ClientOptions{NoReader: true})
			br := bufio.NewReaderSize(bob.Conn(), 64<<10)
			bob.Send(`<presence/>`)
			syncRaw(b, bob, br)
			to := bob.JID.String()
			if addr == "bare" {
				to = bob.JID.Bare().String()
			}
			msg := fmt.Sprintf(`<message to='%s' type='chat' id='m'><body>%s</body></message>`, to, strings.Repeat("x", 100))
			const batch = 32
			chunk := []byte(strings.Repeat(msg, batch))
			done := make(chan error, 1)
			n := b.N
			go func() {
				// Count closing tags; they cannot be split across reads
				// in a way that loses one because we keep a tail.
				buf := make([]byte, 64<<10)
				var tail []byte
				got := 0
				for got < n {
					k, err := br.Read(buf)
					if err != nil {
						done <- err
						return
					}
					data := append(tail, buf[:k]...)
					got += bytes.Count(data, []byte("</message>"))
					if i := bytes.LastIndex(data, []byte("</message>")); i >= 0 {
						data = data[i+len("</message>"):]
					}
					if len(data) > 16 {
						data = data[len(data)-16:]
					}
					tail = append(tail[:0], data...)
				}
				done <- nil
			}()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			start := time.Now()
			w := alice.Conn()
			for sent := 0; sent < n; sent += batch {
				c := chunk
				if n-sent < batch {
					c = chunk[:len(msg)*(n-sent)]
				}
				if _, err := w.Write(c); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil && err != io.EOF {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
