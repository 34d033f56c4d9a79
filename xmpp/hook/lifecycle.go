package hook

import (
	"context"
	"sort"

	"gatehouse/xmpp/sessions"
)

// SessionHandler runs when a client session is bound or ends.
type SessionHandler func(ctx context.Context, s *sessions.Session)

type sessionEntry struct {
	prio int
	h    SessionHandler
}

type lifecycle struct {
	bound []sessionEntry
	ended []sessionEntry
}

func addSessionHandler(list []sessionEntry, prio int, h SessionHandler) []sessionEntry {
	list = append(list, sessionEntry{prio, h})
	sort.SliceStable(list, func(i, j int) bool { return list[i].prio > list[j].prio })
	return list
}

// OnSessionBound registers h to run after a resource is bound.
func (b *Bus) OnSessionBound(prio int, h SessionHandler) {
	b.mu.Lock()
	b.life.bound = addSessionHandler(b.life.bound, prio, h)
	b.mu.Unlock()
}

// OnSessionEnded registers h to run after a session ended and was removed
// from the table (e.g. to broadcast unavailable presence).
func (b *Bus) OnSessionEnded(prio int, h SessionHandler) {
	b.mu.Lock()
	b.life.ended = addSessionHandler(b.life.ended, prio, h)
	b.mu.Unlock()
}

// SessionBound runs the bound handlers.
func (b *Bus) SessionBound(ctx context.Context, s *sessions.Session) {
	b.mu.RLock()
	list := b.life.bound
	b.mu.RUnlock()
	for _, e := range list {
		e.h(ctx, s)
	}
}

// SessionEnded runs the ended handlers.
func (b *Bus) SessionEnded(ctx context.Context, s *sessions.Session) {
	b.mu.RLock()
	list := b.life.ended
	b.mu.RUnlock()
	for _, e := range list {
		e.h(ctx, s)
	}
}
