package conn

import (
	"errors"
	"fmt"
	"time"

	"gatehouse/xmpp/stanza"
)

// ErrAckTooHigh is returned when the peer acknowledges more stanzas than
// were sent to it (XEP-0198 §5: handled-count-too-high).
var ErrAckTooHigh = errors.New("conn: peer acknowledged more stanzas than were sent")

// Unacked is a stanza sent to the peer and not yet acknowledged.
type Unacked struct {
	Stanza *stanza.Stanza
	Queued time.Time // when it was handed to the connection (for XEP-0203 delay stamps)
}

// Acks is the outbound side of XEP-0198 stream management: it numbers the
// stanzas written to the peer and keeps those the peer has not
// acknowledged, in order, in a ring that stops allocating once it has grown.
//
// An Acks attached to a Conn (AttachAcks) is guarded by the Conn's send lock,
// so numbering always matches the order of the bytes on the wire. Detached
// (DetachAcks), it belongs to whoever holds it, which is how a session's
// unacknowledged stanzas outlive a dead TCP connection until it is resumed
// on another one. The zero value is not usable; call NewAcks.
type Acks struct {
	sent uint32 // stanzas counted so far, modulo 2^32 like the peer's h
	ring []Unacked
	head int // index of the oldest unacknowledged stanza
	n    int // unacknowledged stanzas in the ring

	max       int    // more unacknowledged than this ends the stream
	every     int    // ask for an ack once this many are unacknowledged
	request   []byte // the request written to the wire (<r/>)
	requested bool   // a request is outstanding: don't send another
}

// NewAcks returns accounting that asks the peer for an acknowledgement
// (by writing request) whenever every stanzas are unacknowledged and no
// request is outstanding, and that ends the stream once more than max are
// unacknowledged. max <= 0 means no limit; every <= 0 means 1.
func NewAcks(max, every int, request []byte) *Acks {
	if every <= 0 {
		every = 1
	}
	return &Acks{max: max, every: every, request: request}
}

// Sent returns the number of stanzas counted so far, modulo 2^32.
func (a *Acks) Sent() uint32 { return a.sent }

// Len returns the number of unacknowledged stanzas.
func (a *Acks) Len() int { return a.n }

// Push counts st as sent and keeps it until acknowledged. It reports
// whether the peer is now past the limit of unacknowledged stanzas; the
// stanza is kept either way.
func (a *Acks) Push(st *stanza.Stanza, queued time.Time) (over bool) {
	if a.n == len(a.ring) {
		a.grow()
	}
	a.ring[(a.head+a.n)%len(a.ring)] = Unacked{Stanza: st, Queued: queued}
	a.n++
	a.sent++
	return a.max > 0 && a.n > a.max
}

func (a *Acks) grow() {
	size := 2 * len(a.ring)
	if size < 16 {
		size = 16
	}
	ring := make([]Unacked, size)
	for i := 0; i < a.n; i++ {
		ring[i] = a.ring[(a.head+i)%len(a.ring)]
	}
	a.ring, a.head = ring, 0
}

// Ack applies the peer's handled count h: every stanza up to h is dropped.
// h counts modulo 2^32, so it wraps as the XEP requires. An h below the
// last one (a stale ack) drops nothing; an h beyond what was sent is
// ErrAckTooHigh and changes nothing.
func (a *Acks) Ack(h uint32) error {
	acked := a.sent - uint32(a.n) // h of the last stanza already dropped
	d := h - acked
	if d > uint32(a.n) {
		if acked-h < 1<<31 {
			// An old or repeated ack (h behind what we already dropped):
			// harmless after a reordering of acks, so ignore it.
			a.requested = false
			return nil
		}
		return fmt.Errorf("%w: h=%d, sent=%d", ErrAckTooHigh, h, a.sent)
	}
	for i := 0; i < int(d); i++ {
		a.ring[a.head] = Unacked{} // let the stanza be collected
		a.head = (a.head + 1) % len(a.ring)
	}
	a.n -= int(d)
	a.requested = false
	return nil
}

// Pending returns the unacknowledged stanzas, oldest first.
func (a *Acks) Pending() []Unacked {
	out := make([]Unacked, a.n)
	for i := range out {
		out[i] = a.ring[(a.head+i)%len(a.ring)]
	}
	return out
}

// Drain returns the unacknowledged stanzas, oldest first, and forgets them
// (as if acknowledged), for a session that ends without being resumed.
func (a *Acks) Drain() []Unacked {
	out := a.Pending()
	for i := range a.ring {
		a.ring[i] = Unacked{}
	}
	a.head, a.n = 0, 0
	a.requested = false
	return out
}

// wantRequest reports whether an ack request should follow what was just
// queued, and marks it outstanding.
func (a *Acks) wantRequest(min int) bool {
	if a.requested || a.n < min || len(a.request) == 0 {
		return false
	}
	a.requested = true
	return true
}

// AttachAcks starts per-stanza accounting on c with a: raw (the
// <enabled/> or <resumed/> nonza followed by any stanzas being resent) is
// queued first, and every stanza Send queues after it is counted. Both
// happen under the send lock, so no stanza slips between raw and the start
// of counting. Before StartWriter the bytes wait in the buffer.
func (c *Conn) AttachAcks(a *Acks, raw []byte) error {
	c.mu.Lock()
	if c.closing || c.dead {
		c.mu.Unlock()
		return ErrClosed
	}
	c.buf = append(c.buf, raw...)
	c.pending++
	if a.wantRequest(1) {
		// A resumed session starts with stanzas in flight: ask at once.
		c.buf = append(c.buf, a.request...)
	}
	c.acks = a
	c.mu.Unlock()
	c.wake()
	return nil
}

// DetachAcks stops the accounting and returns it (nil if there was none).
// Call it after Close or CloseStream: a Send that was already counted stays
// in the returned Acks, and no later Send can be counted.
func (c *Conn) DetachAcks() *Acks {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.acks
	c.acks = nil
	return a
}

// Ack applies the peer's acknowledgement to the attached accounting.
func (c *Conn) Ack(h uint32) (sent uint32, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acks == nil {
		return 0, nil
	}
	return c.acks.sent, c.acks.Ack(h)
}
