package c2s_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/xmpptest"
)

// BenchmarkLocalMessageSM is xmpp/server's BenchmarkLocalMessage with and
// without stream management on both clients: one client writes chat
// messages as fast as it can, the other counts them and, with SM, answers
// every <r/> with <a h/> as a real client does. The difference is the cost
// of numbering and keeping unacknowledged stanzas, the acks on the wire
// and the inbound count. ns/op is per delivered message.
func BenchmarkLocalMessageSM(b *testing.B) {
	for _, sm := range []bool{false, true} {
		name := "off"
		if sm {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			// The users' archive is off: its SQLite write per message
			// would drown the difference being measured.
			// The unacked window at its maximum: a flood outruns the
			// reader's acks by more than the default 1000 on a busy machine,
			// and the server would (rightly) end the session.
			ts := xmpptest.RunServer(b, func(c *config.Config) {
				c.MAM.Enabled = false
				c.C2S.SMMaxUnacked = config.MaxSMUnacked
			})
			ts.AddUser(b, "alice", "correct horse")
			ts.AddUser(b, "bob", "battery staple")
			alice := ts.Dial(b, "alice", "correct horse", xmpptest.ClientOptions{NoReader: true, SM: sm})
			bob := ts.Dial(b, "bob", "battery staple", xmpptest.ClientOptions{NoReader: true, SM: sm})
			// alice's stream gets <r/> too; nobody reads it, so drain it.
			go func() { _, _ = io.Copy(io.Discard, alice.Conn()) }()
			br := bufio.NewReaderSize(bob.Conn(), 64<<10)
			bob.Send(`<presence/>`)
			bob.SyncRaw(b, br)
			msg := fmt.Sprintf(`<message to='%s' type='chat' id='m'><body>%s</body></message>`, bob.JID, strings.Repeat("x", 100))
			done := make(chan error, 1)
			n := b.N
			go func() {
				sc := scanner{}
				buf := make([]byte, 64<<10)
				for sc.messages < n {
					k, err := br.Read(buf)
					if err != nil {
						done <- err
						return
					}
					for _, r := range sc.feed(buf[:k]) {
						// h counts every stanza since <enabled/>: the
						// presence echo and the sync result came first.
						bob.Sendf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, r+2)
					}
				}
				done <- nil
			}()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
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

// scanner counts </message> in a byte stream and reports, for each ack
// request, how many messages preceded it. A tail is kept so markers split
// across reads are found.
type scanner struct {
	tail     []byte
	messages int
}

var (
	endMessage = []byte("</message>")
	ackRequest = []byte(`<r xmlns="urn:xmpp:sm:3"></r>`)
	ackShort   = []byte(`<r xmlns='urn:xmpp:sm:3'/>`)
)

func (s *scanner) feed(p []byte) (requests []int) {
	data := append(s.tail, p...)
	for {
		i, m := bytes.Index(data, endMessage), endMessage
		for _, r := range [][]byte{ackRequest, ackShort} {
			if j := bytes.Index(data, r); j >= 0 && (i < 0 || j < i) {
				i, m = j, r
			}
		}
		if i < 0 {
			break
		}
		if bytes.Equal(m, endMessage) {
			s.messages++
		} else {
			requests = append(requests, s.messages)
		}
		data = data[i+len(m):]
	}
	if keep := len(ackRequest); len(data) > keep {
		data = data[len(data)-keep:]
	}
	s.tail = append(s.tail[:0], data...)
	return requests
}
