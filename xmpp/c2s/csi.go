package c2s

import (
	"time"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/stanza"
)

// nsCSI is XEP-0352 client state indication.
const nsCSI = "urn:xmpp:csi:0"

const nsChatStates = "http://jabber.org/protocol/chatstates"

// CSIConfig configures XEP-0352 client state indication.
type CSIConfig struct {
	Enabled bool
	// MaxHeld bounds the stanzas held for an inactive client; reaching it
	// flushes them, so a long inactive period costs bounded memory.
	MaxHeld int
}

// csiNonza handles <active/> and <inactive/>.
func (st *Stream) csiNonza(el *stanza.Element) {
	l := st.link
	switch el.Name.Local {
	case "inactive":
		l.inactive.Store(true)
	case "active":
		l.mu.Lock()
		l.flushHeld()
		// Cleared only after the flush, under l.mu: a concurrent Send
		// that still sees inactive waits for the lock and then finds it
		// cleared, so nothing overtakes what was held.
		l.inactive.Store(false)
		l.mu.Unlock()
	}
}

// sendInactive applies XEP-0352 to a stanza for an inactive client: presence
// and chat states wait (only the latest per sender); anything else goes
// out at once, after what was held, so the client sees them in order. It
// reports false if the client turned active meanwhile.
func (l *link) sendInactive(s *stanza.Stanza) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.inactive.Load() {
		return false, nil
	}
	key, hold := holdKey(s)
	if !hold {
		l.flushHeld()
		return true, l.sendLocked(s)
	}
	if i, ok := l.heldBy[key]; ok {
		// A newer state from the same sender supersedes the held one;
		// it goes to the end so its relative order to others is kept.
		l.held[i].Stanza = nil
	}
	if l.heldBy == nil {
		l.heldBy = make(map[string]int)
	}
	l.heldBy[key] = len(l.held)
	l.held = append(l.held, conn.Unacked{Stanza: s, Queued: time.Now()})
	if max := l.srv.cfg.CSI.MaxHeld; max > 0 && len(l.held) >= max {
		l.flushHeld()
	}
	return true, nil
}

// holdKey reports whether s may wait for an inactive client and under which
// key a newer one replaces it: available and unavailable presence, and
// messages that carry nothing but a chat state (XEP-0085). Subscription
// requests, messages with content, receipts and every iq are urgent.
func holdKey(s *stanza.Stanza) (string, bool) {
	switch s.Kind {
	case stanza.KindPresence:
		if s.Type == "" || s.Type == "unavailable" {
			return "p\x00" + s.From.String(), true
		}
	case stanza.KindMessage:
		if s.Type == "error" {
			return "", false
		}
		state := false
		for _, e := range s.Elements() {
			switch {
			case e.Name.Space == nsChatStates:
				state = true
			case e.Name.Space == nsHints, e.Name.Space == stanza.NSDelay:
			case e.Name.Space == "" && e.Name.Local == "thread":
			default:
				return "", false // body, subject, receipts, encryption ...
			}
		}
		if state {
			return "m\x00" + s.From.String(), true
		}
	}
	return "", false
}

// flushHeld sends what was held, oldest first. l.mu is held.
func (l *link) flushHeld() {
	for _, u := range l.takeHeld() {
		// Sent as they were: a client catching up wants the current
		// state, and a stamp on a chat state would only confuse it.
		_ = l.sendLocked(u.Stanza)
	}
}

// takeHeld empties the held queue. l.mu is held.
func (l *link) takeHeld() []conn.Unacked {
	out := make([]conn.Unacked, 0, len(l.held))
	for _, u := range l.held {
		if u.Stanza != nil {
			out = append(out, u)
		}
	}
	l.held = l.held[:0]
	clear(l.heldBy)
	return out
}
