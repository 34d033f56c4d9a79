package s2s

import (
	"strings"
	"sync"
)

// Federation modes.
const (
	ModeOpen      = "open"
	ModeAllowlist = "allowlist"
	ModeDenylist  = "denylist"
)

// List names the list a domain entry belongs to.
type List string

// Lists.
const (
	ListAllow List = "allow"
	ListDeny  List = "deny"
)

// Policy decides which remote domains we federate with. The configured
// lists are the base; entries from the federation store (the CLI) override
// the configured entry for the same domain. It is safe for concurrent use.
type Policy struct {
	mode string
	cfg  map[string]List

	mu     sync.RWMutex
	stored map[string]List
}

// NewPolicy returns the policy of mode with the configured lists; entries
// must be canonical (config.NormalizeDomain).
func NewPolicy(mode string, allow, deny []string) *Policy {
	p := &Policy{mode: mode, cfg: make(map[string]List, len(allow)+len(deny)), stored: map[string]List{}}
	for _, d := range allow {
		p.cfg[d] = ListAllow
	}
	for _, d := range deny {
		p.cfg[d] = ListDeny
	}
	return p
}

// Mode returns the federation mode.
func (p *Policy) Mode() string { return p.mode }

// SetStored replaces the stored entries.
func (p *Policy) SetStored(entries []Entry) {
	m := make(map[string]List, len(entries))
	for _, e := range entries {
		m[e.Domain] = e.List
	}
	p.mu.Lock()
	p.stored = m
	p.mu.Unlock()
}

// Allowed reports whether federation with domain is allowed and, when it
// is not, why (for logs and error texts).
func (p *Policy) Allowed(domain string) (bool, string) {
	if p.mode == ModeOpen {
		return true, ""
	}
	l, ok := p.lookup(domain)
	switch p.mode {
	case ModeDenylist:
		if ok && l == ListDeny {
			return false, "federation with " + domain + " is denied"
		}
		return true, ""
	default: // allowlist, the safe reading of anything else
		if ok && l == ListAllow {
			return true, ""
		}
		return false, "federation with " + domain + " is not allowed"
	}
}

// lookup finds the entry that governs domain: the domain itself, then
// "*.parent" entries from the nearest parent up; at each step a stored
// entry wins over a configured one.
func (p *Policy) lookup(domain string) (List, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	get := func(k string) (List, bool) {
		if l, ok := p.stored[k]; ok {
			return l, true
		}
		l, ok := p.cfg[k]
		return l, ok
	}
	if l, ok := get(domain); ok {
		return l, true
	}
	for d := domain; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return "", false
		}
		d = d[i+1:]
		if l, ok := get("*." + d); ok {
			return l, true
		}
	}
}
