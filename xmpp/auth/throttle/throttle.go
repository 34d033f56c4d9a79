// Package throttle slows down password guessing: after a few failed
// authentications from one address or against one account, further
// attempts are refused for a delay that doubles with each failure, up to
// a maximum, and failures are forgotten after a quiet period.
//
// Per address stops one client hammering many accounts; per account stops
// many addresses (a botnet) hammering one account. A success clears the
// account's record, never the address's: one good password must not
// launder an address that guessed at others.
package throttle

import (
	"sort"
	"sync"
	"time"
)

// Config sets the back-off. The zero value is not usable; see Default.
type Config struct {
	// Free is how many failures a key may have before delays start.
	Free int
	// Base is the first delay; each further failure doubles it.
	Base time.Duration
	// Max caps the delay.
	Max time.Duration
	// Forget drops a key's failures after this long without one.
	Forget time.Duration
	// MaxKeys bounds memory under a flood of distinct keys; the entries
	// closest to being forgotten go first.
	MaxKeys int
}

// Default is 5 free failures, then 1s, 2s, 4s … up to 5 minutes;
// forgotten after 15 quiet minutes.
func Default() Config {
	return Config{Free: 5, Base: time.Second, Max: 5 * time.Minute, Forget: 15 * time.Minute, MaxKeys: 100000}
}

// Entry is one throttled key, for admins.
type Entry struct {
	Key      string    `json:"key"` // "ip:192.0.2.7" or "account:alice"
	Failures int       `json:"failures"`
	Last     time.Time `json:"last_failure"`
	Until    time.Time `json:"blocked_until"` // zero when not blocked
}

type entry struct {
	failures int
	last     time.Time
	until    time.Time
}

// Throttle records failures. It is safe for concurrent use.
type Throttle struct {
	cfg Config
	now func() time.Time

	mu sync.Mutex
	m  map[string]*entry
}

// New returns a throttle; now is the clock (nil: time.Now).
func New(cfg Config, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = Default().MaxKeys
	}
	return &Throttle{cfg: cfg, now: now, m: make(map[string]*entry)}
}

// IPKey and AccountKey name the two kinds of key.
func IPKey(ip string) string        { return "ip:" + ip }
func AccountKey(user string) string { return "account:" + user }

// Wait returns how long the caller must wait before trying again: the
// longest remaining delay of keys ("" keys are ignored), 0 when free.
func (t *Throttle) Wait(keys ...string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		e := t.m[k]
		if e == nil || k == "" {
			continue
		}
		if now.Sub(e.last) > t.cfg.Forget {
			delete(t.m, k)
			continue
		}
		if d := e.until.Sub(now); d > wait {
			wait = d
		}
	}
	return wait
}

// Fail records a failed attempt against every key.
func (t *Throttle) Fail(keys ...string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if k == "" {
			continue
		}
		e := t.m[k]
		if e == nil || now.Sub(e.last) > t.cfg.Forget {
			if e == nil && len(t.m) >= t.cfg.MaxKeys {
				t.evict(now)
			}
			e = &entry{}
			t.m[k] = e
		}
		e.failures++
		e.last = now
		if over := e.failures - t.cfg.Free; over > 0 {
			d := t.cfg.Base
			for i := 1; i < over && d < t.cfg.Max; i++ {
				d *= 2
			}
			e.until = now.Add(min(d, t.cfg.Max))
		}
	}
}

// Succeed clears an account's failures after a successful login.
func (t *Throttle) Succeed(user string) {
	t.mu.Lock()
	delete(t.m, AccountKey(user))
	t.mu.Unlock()
}

// Clear forgets a key (the admin's "unblock"); it reports whether the key
// was known.
func (t *Throttle) Clear(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[key]
	delete(t.m, key)
	return ok
}

// List returns the keys with failures, blocked ones first, then by key.
func (t *Throttle) List() []Entry {
	now := t.now()
	t.mu.Lock()
	out := make([]Entry, 0, len(t.m))
	for k, e := range t.m {
		if now.Sub(e.last) > t.cfg.Forget {
			delete(t.m, k)
			continue
		}
		en := Entry{Key: k, Failures: e.failures, Last: e.last}
		if e.until.After(now) {
			en.Until = e.until
		}
		out = append(out, en)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if bi, bj := !out[i].Until.IsZero(), !out[j].Until.IsZero(); bi != bj {
			return bi
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// evict drops forgotten entries, or else the oldest tenth. Called with mu.
func (t *Throttle) evict(now time.Time) {
	for k, e := range t.m {
		if now.Sub(e.last) > t.cfg.Forget {
			delete(t.m, k)
		}
	}
	if len(t.m) < t.cfg.MaxKeys {
		return
	}
	type kv struct {
		k    string
		last time.Time
	}
	all := make([]kv, 0, len(t.m))
	for k, e := range t.m {
		all = append(all, kv{k, e.last})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].last.Before(all[j].last) })
	for _, x := range all[:max(1, len(all)/10)] {
		delete(t.m, x.k)
	}
}
