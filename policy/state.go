package policy

import (
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// disclaimers remembers when each (local, outside) pair last got the
// disclaimer. It lives in the Gate, not the policy, so a reload does not
// repeat notices; it is not persisted, so a restart may repeat one (more
// notices, never fewer).
type disclaimers struct {
	mu   sync.Mutex
	max  int
	last map[pairKey]time.Time
}

// pairKey holds the parts of two bare JIDs.
type pairKey struct{ ll, ld, rl, rd string }

func newDisclaimers(max int) *disclaimers {
	return &disclaimers{max: max, last: map[pairKey]time.Time{}}
}

// due reports whether the pair needs a notice now, and if so records it.
func (d *disclaimers) due(local, remote jid.JID, now time.Time, period time.Duration) bool {
	if local.Localpart() == "" {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.lookup(local, remote); ok && now.Sub(t) < period && !now.Before(t) {
		return false
	}
	if len(d.last) >= d.max {
		for pk, t := range d.last {
			if now.Sub(t) >= period {
				delete(d.last, pk)
			}
		}
		if len(d.last) >= d.max {
			// Too many live pairs to remember: send the notice without
			// recording it (more notices, never fewer).
			return true
		}
	}
	d.last[pairKey{local.Localpart(), local.Domainpart(), remote.Localpart(), remote.Domainpart()}] = now
	return true
}

// lookup is kept apart from the insert in due so that the key it builds
// does not escape: looking up a pair allocates nothing.
func (d *disclaimers) lookup(local, remote jid.JID) (time.Time, bool) {
	t, ok := d.last[pairKey{local.Localpart(), local.Domainpart(), remote.Localpart(), remote.Domainpart()}]
	return t, ok
}

// ibbTracker follows XEP-0047 in-band bytestreams across their data
// stanzas: the total so far (for size limits) and, while scanning is on,
// the bytes so far (for the virus scan, which must see more than one
// chunk to catch a signature split across chunks).
type ibbTracker struct {
	mu       sync.Mutex
	max      int
	scanMax  int
	budget   int // bytes buffered across all streams at most
	buffered int
	streams  map[ibbKey]*ibbStream
}

// ibbKey names a stream by its two ends (in a fixed order, since either
// end may close it) and its sid.
type ibbKey struct{ a, b, sid string }

type ibbStream struct {
	total    int64
	buf      []byte // everything so far while total <= scanMax
	overflow bool   // past scanMax: buf holds only the tail
	last     time.Time
}

// ibbIdle is how long an unused stream is remembered.
const ibbIdle = 10 * time.Minute

// ibbTail is how much earlier data is scanned with each chunk once a
// stream is larger than the scan limit.
const ibbTail = 64 << 10

func newIBBTracker(max, scanMax int) *ibbTracker {
	return &ibbTracker{max: max, scanMax: scanMax, budget: 32 * scanMax, streams: map[ibbKey]*ibbStream{}}
}

func keyOf(st *stanza.Stanza, sid string) ibbKey {
	a, b := st.From.String(), st.To.String()
	if b < a {
		a, b = b, a
	}
	return ibbKey{a, b, sid}
}

// update records the IBB steps in offers and sets each data chunk's Size
// to the stream's total. keep buffers the data for scanning.
func (t *ibbTracker) update(st *stanza.Stanza, offers []FileOffer, now time.Time, keep bool) {
	for i := range offers {
		o := &offers[i]
		if o.Mechanism != MechIBB {
			continue
		}
		k := keyOf(st, o.SID)
		t.mu.Lock()
		switch o.IBB {
		case "open":
			t.remove(k)
			t.add(k, now)
		case "close":
			t.remove(k)
		case "data":
			s := t.streams[k]
			if s == nil {
				s = t.add(k, now)
			}
			if s != nil {
				s.last = now
				s.total += int64(len(o.Data))
				o.Size = s.total
				if keep {
					t.buffer(s, o.Data)
				}
			}
		}
		t.mu.Unlock()
	}
}

// add starts tracking a stream; nil when too many are tracked.
func (t *ibbTracker) add(k ibbKey, now time.Time) *ibbStream {
	if len(t.streams) >= t.max {
		for sk, s := range t.streams {
			if now.Sub(s.last) > ibbIdle {
				t.remove(sk)
			}
		}
		if len(t.streams) >= t.max {
			return nil
		}
	}
	s := &ibbStream{last: now}
	t.streams[k] = s
	return s
}

func (t *ibbTracker) remove(k ibbKey) {
	if s, ok := t.streams[k]; ok {
		t.buffered -= len(s.buf)
		delete(t.streams, k)
	}
}

func (t *ibbTracker) buffer(s *ibbStream, data []byte) {
	if !s.overflow && len(s.buf)+len(data) <= t.scanMax && t.buffered+len(data) <= t.budget {
		s.buf = append(s.buf, data...)
		t.buffered += len(data)
		return
	}
	// Past the limit: keep only a tail, so a signature that spans the
	// chunk boundary is still seen.
	s.overflow = true
	keep := append(s.buf[:0:0], tailOf(s.buf, data)...)
	t.buffered += len(keep) - len(s.buf)
	s.buf = keep
}

func tailOf(buf, data []byte) []byte {
	all := append(append([]byte(nil), buf...), data...)
	if len(all) > ibbTail {
		all = all[len(all)-ibbTail:]
	}
	return all
}

// window returns what to scan for the data chunk o: the whole stream so
// far while it fits the scan limit, else the earlier tail and the chunk.
func (t *ibbTracker) window(st *stanza.Stanza, o *FileOffer) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[keyOf(st, o.SID)]
	if s == nil {
		return o.Data
	}
	// buf is the whole stream so far, or past the limit the tail that
	// ends with this chunk. A copy: the next chunk may change buf.
	return append([]byte(nil), s.buf...)
}

// drop forgets the streams of a refused stanza: the transfer is over.
func (t *ibbTracker) drop(st *stanza.Stanza, offers []FileOffer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range offers {
		if offers[i].Mechanism == MechIBB {
			t.remove(keyOf(st, offers[i].SID))
		}
	}
}
