// Package sessions keeps the table of bound client resources and their
// presence state. Feature modules read it to fan stanzas out; c2s adds and
// removes entries. It must not import c2s, router or any module.
package sessions

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// Sender is the connection behind a session. Send enqueues (never blocks on
// the network); Close ends the stream with the given stream error condition.
type Sender interface {
	Send(st *stanza.Stanza) error
	Close(cond, text string)
}

// Info describes the connection for admins and the archive.
type Info struct {
	RemoteAddr string
	TLSVersion string
	Mechanism  string
	Started    time.Time
}

// Session is one bound resource.
type Session struct {
	JID  jid.JID // full JID
	Conn uint64  // connection id
	Info Info
	out  Sender

	lastActive atomic.Int64 // unix nanoseconds of the last stanza from the client

	mu         sync.Mutex
	available  bool
	priority   int
	presence   *stanza.Stanza
	interested bool // requested the roster: gets pushes and subscription requests
	carbons    bool
	directed   map[string]jid.JID
	values     map[string]any
}

// New returns a session for full JID j sending through out.
func New(j jid.JID, conn uint64, out Sender, info Info) *Session {
	return &Session{JID: j, Conn: conn, out: out, Info: info}
}

// Touch records that the client sent a stanza now.
func (s *Session) Touch() { s.lastActive.Store(time.Now().UnixNano()) }

// Idle is the time since the client last sent a stanza (since the session
// started when it has sent none).
func (s *Session) Idle() time.Duration {
	t := s.lastActive.Load()
	if t == 0 {
		return time.Since(s.Info.Started)
	}
	return time.Since(time.Unix(0, t))
}

// Queued returns the stanzas waiting to go to the client, when the
// connection can tell (0 otherwise).
func (s *Session) Queued() int {
	if q, ok := s.out.(interface{ Queued() int }); ok {
		return q.Queued()
	}
	return 0
}

// Send enqueues a stanza for the client.
func (s *Session) Send(st *stanza.Stanza) error { return s.out.Send(st) }

// Close ends the session's stream with a stream error condition.
func (s *Session) Close(cond, text string) { s.out.Close(cond, text) }

// SetPresence records the last broadcast presence: available with priority
// for type "", unavailable otherwise.
func (s *Session) SetPresence(p *stanza.Stanza, priority int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presence = p
	s.available = p != nil && p.Type == ""
	s.priority = priority
}

// Presence returns the last broadcast presence (nil before initial presence).
func (s *Session) Presence() *stanza.Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.presence
}

// Available reports whether the resource has sent available presence.
func (s *Session) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.available
}

// Priority returns the presence priority.
func (s *Session) Priority() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.priority
}

// SetInterested marks the resource as having requested the roster.
func (s *Session) SetInterested() {
	s.mu.Lock()
	s.interested = true
	s.mu.Unlock()
}

// Interested reports whether the resource requested the roster.
func (s *Session) Interested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.interested
}

// SetCarbons enables or disables message carbons (XEP-0280).
func (s *Session) SetCarbons(on bool) {
	s.mu.Lock()
	s.carbons = on
	s.mu.Unlock()
}

// Carbons reports whether carbons are enabled.
func (s *Session) Carbons() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.carbons
}

// AddDirected remembers that directed available presence went to j.
func (s *Session) AddDirected(j jid.JID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.directed == nil {
		s.directed = make(map[string]jid.JID)
	}
	s.directed[j.String()] = j
}

// RemoveDirected forgets j.
func (s *Session) RemoveDirected(j jid.JID) {
	s.mu.Lock()
	delete(s.directed, j.String())
	s.mu.Unlock()
}

// TakeDirected returns and clears the directed-presence recipients.
func (s *Session) TakeDirected() []jid.JID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]jid.JID, 0, len(s.directed))
	for _, j := range s.directed {
		out = append(out, j)
	}
	s.directed = nil
	return out
}

// Value returns a per-session value a module stored under key.
func (s *Session) Value(key string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// SetValue stores a per-session module value.
func (s *Session) SetValue(key string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = make(map[string]any)
	}
	s.values[key] = v
}

// Table indexes sessions by bare JID.
type Table struct {
	mu     sync.RWMutex
	byBare map[string][]*Session
	count  int
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{byBare: make(map[string][]*Session)} }

// Add registers s. If a session with the same full JID exists it is
// replaced and returned so the caller can close it.
func (t *Table) Add(s *Session) (replaced *Session) {
	key := s.JID.Bare().String()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.byBare[key]
	for i, o := range list {
		if o.JID.Resourcepart() == s.JID.Resourcepart() {
			list[i] = s
			return o
		}
	}
	t.byBare[key] = append(list, s)
	t.count++
	return nil
}

// Remove unregisters s (only if it is still the registered session).
func (t *Table) Remove(s *Session) bool {
	key := s.JID.Bare().String()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.byBare[key]
	for i, o := range list {
		if o == s {
			list = append(list[:i:i], list[i+1:]...)
			if len(list) == 0 {
				delete(t.byBare, key)
			} else {
				t.byBare[key] = list
			}
			t.count--
			return true
		}
	}
	return false
}

// Get returns the session bound to full JID j, or nil.
func (t *Table) Get(j jid.JID) *Session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, s := range t.byBare[j.Bare().String()] {
		if s.JID.Resourcepart() == j.Resourcepart() {
			return s
		}
	}
	return nil
}

// Exists reports whether full JID j has a bound session.
func (t *Table) Exists(j jid.JID) bool { return t.Get(j) != nil }

// Resources returns the sessions of bare JID j (a copy of the list).
func (t *Table) Resources(j jid.JID) []*Session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	list := t.byBare[j.Bare().String()]
	if len(list) == 0 {
		return nil
	}
	return append([]*Session(nil), list...)
}

// Available returns the available resources of bare JID j.
func (t *Table) Available(j jid.JID) []*Session {
	var out []*Session
	for _, s := range t.Resources(j) {
		if s.Available() {
			out = append(out, s)
		}
	}
	return out
}

// Top returns the available resources with non-negative priority, highest
// priority first (RFC 6121 §8.5.2.1).
func (t *Table) Top(j jid.JID) []*Session {
	var out []*Session
	for _, s := range t.Resources(j) {
		if s.Available() && s.Priority() >= 0 {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Priority() > out[b].Priority() })
	return out
}

// Count returns the number of bound sessions.
func (t *Table) Count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// All returns every session (for admin listings and shutdown).
func (t *Table) All() []*Session {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*Session, 0, t.count)
	for _, list := range t.byBare {
		out = append(out, list...)
	}
	return out
}
