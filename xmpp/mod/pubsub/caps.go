package pubsub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"sort"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// NSCaps is the XEP-0115 entity capabilities namespace.
const NSCaps = "http://jabber.org/protocol/caps"

// NSDiscoInfo is the XEP-0030 info namespace.
const (
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
)

// capsRef is what a presence says about its sender's capabilities.
type capsRef struct {
	Hash, Node, Ver string
}

func (r capsRef) zero() bool { return r.Ver == "" }

// key identifies the feature set in the cache: a verified hash is shared
// by every entity that announces it.
func (r capsRef) key() string { return r.Hash + "\x00" + r.Ver }

// parseCaps returns the caps element of a presence, if any (legacy caps
// without a hash attribute are not supported: their ver is not a hash).
func parseCaps(p *stanza.Stanza) capsRef {
	c := p.Child(NSCaps, "c")
	if c == nil || c.AttrValue("hash") == "" {
		return capsRef{}
	}
	return capsRef{Hash: c.AttrValue("hash"), Node: c.AttrValue("node"), Ver: c.AttrValue("ver")}
}

func newHash(name string) hash.Hash {
	switch name {
	case "sha-1":
		return sha1.New()
	case "sha-256":
		return sha256.New()
	}
	return nil
}

// verString computes the XEP-0115 §5.1 verification string of a
// disco#info result with the named hash; "" if the hash is unsupported or
// the result is not well-formed for §5.4 (duplicate identities or
// features, forms without FORM_TYPE).
func verString(hashName string, q *stanza.Element) string {
	h := newHash(hashName)
	if h == nil {
		return ""
	}
	var ids, feats []string
	type form struct {
		typ    string
		fields [][]string // var, values...
	}
	var forms []form
	for _, e := range q.Elements() {
		switch {
		case e.Name.Local == "identity":
			lang := ""
			for _, a := range e.Attr {
				if a.Name.Local == "lang" && (a.Name.Space == stanza.NSXML || a.Name.Space == "xml") {
					lang = a.Value
				}
			}
			ids = append(ids, e.AttrValue("category")+"/"+e.AttrValue("type")+"/"+lang+"/"+e.AttrValue("name"))
		case e.Name.Local == "feature":
			feats = append(feats, e.AttrValue("var"))
		case e.Name.Local == "x" && e.Name.Space == NSData:
			f := form{}
			hasType := false
			for _, fe := range e.Elements() {
				if fe.Name.Local != "field" {
					continue
				}
				var vals []string
				for _, v := range fe.Elements() {
					if v.Name.Local == "value" {
						vals = append(vals, v.Text())
					}
				}
				if fe.AttrValue("var") == "FORM_TYPE" {
					if len(vals) != 1 || hasType {
						return ""
					}
					hasType = true
					f.typ = vals[0]
					continue
				}
				sort.Strings(vals)
				f.fields = append(f.fields, append([]string{fe.AttrValue("var")}, vals...))
			}
			if !hasType {
				continue // §5.4 3.6: forms without FORM_TYPE are ignored
			}
			forms = append(forms, f)
		}
	}
	sort.Strings(ids)
	sort.Strings(feats)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return ""
		}
	}
	for i := 1; i < len(feats); i++ {
		if feats[i] == feats[i-1] {
			return ""
		}
	}
	sort.Slice(forms, func(i, j int) bool { return forms[i].typ < forms[j].typ })
	for i := 1; i < len(forms); i++ {
		if forms[i].typ == forms[i-1].typ {
			return ""
		}
	}
	var b strings.Builder
	for _, s := range ids {
		b.WriteString(s)
		b.WriteByte('<')
	}
	for _, s := range feats {
		b.WriteString(s)
		b.WriteByte('<')
	}
	for _, f := range forms {
		b.WriteString(f.typ)
		b.WriteByte('<')
		sort.Slice(f.fields, func(i, j int) bool { return f.fields[i][0] < f.fields[j][0] })
		for _, fl := range f.fields {
			for _, s := range fl {
				b.WriteString(s)
				b.WriteByte('<')
			}
		}
	}
	h.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// features extracts the feature set of a disco#info result.
func features(q *stanza.Element) map[string]bool {
	out := map[string]bool{}
	for _, e := range q.Elements() {
		if e.Name.Local == "feature" {
			out[e.AttrValue("var")] = true
		}
	}
	return out
}

// Bounds of the caps machinery.
const (
	maxCapsEntries = 10000           // feature sets cached
	maxPending     = 1000            // disco#info queries in flight
	queryRetry     = 2 * time.Minute // a query left unanswered may be sent again
)

// capsCache maps verified caps hashes (and, for entities whose hash did
// not verify, their full JID) to feature sets, and tracks the disco#info
// queries in flight.
type capsCache struct {
	mu      sync.Mutex
	sets    map[string]map[string]bool
	pending map[string]*pendingQuery // by query id
	byKey   map[string]string        // caps key → query id in flight
}

// waiter is an entity whose features are awaited to send it last items.
type waiter struct {
	service jid.JID // the PEP account whose items are due
	target  jid.JID
}

type pendingQuery struct {
	ref     capsRef
	from    jid.JID // the full JID asked
	sent    time.Time
	waiters []waiter
}

func newCapsCache() *capsCache {
	return &capsCache{sets: map[string]map[string]bool{}, pending: map[string]*pendingQuery{}, byKey: map[string]string{}}
}

// lookup returns the feature set of an entity announcing ref.
func (c *capsCache) lookup(ref capsRef, full jid.JID) (map[string]bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.sets[ref.key()]; ok {
		return f, true
	}
	f, ok := c.sets["jid\x00"+full.String()+"\x00"+ref.key()]
	return f, ok
}

// want registers w as waiting for ref's features and reports whether a
// query must be sent (with id); false when one is in flight already.
func (c *capsCache) want(ref capsRef, full jid.JID, w waiter, id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if qid, ok := c.byKey[ref.key()]; ok {
		if q := c.pending[qid]; q != nil && now.Sub(q.sent) < queryRetry {
			if len(q.waiters) < maxPending {
				q.waiters = append(q.waiters, w)
			}
			return false
		}
		delete(c.pending, qid)
		delete(c.byKey, ref.key())
	}
	if len(c.pending) >= maxPending {
		// Drop the oldest-looking entries: an entity that never answers
		// must not pin memory.
		for id, q := range c.pending {
			if now.Sub(q.sent) >= queryRetry {
				delete(c.pending, id)
				delete(c.byKey, q.ref.key())
			}
		}
		if len(c.pending) >= maxPending {
			return false
		}
	}
	c.pending[id] = &pendingQuery{ref: ref, from: full, sent: now, waiters: []waiter{w}}
	c.byKey[ref.key()] = id
	return true
}

// answer handles the result (q non-nil) or error (q nil) of query id from
// 'from' and returns the waiters to serve; ok is false for an id that is
// not ours.
func (c *capsCache) answer(id string, from jid.JID, q *stanza.Element) ([]waiter, map[string]bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[id]
	if p == nil || !p.from.Equal(from) {
		return nil, nil, false
	}
	delete(c.pending, id)
	delete(c.byKey, p.ref.key())
	if q == nil {
		return nil, nil, true
	}
	f := features(q)
	if len(c.sets) >= maxCapsEntries {
		for k := range c.sets { // evict one arbitrary entry
			delete(c.sets, k)
			break
		}
	}
	if verString(p.ref.Hash, q) == p.ref.Ver {
		c.sets[p.ref.key()] = f
	} else {
		// Unverified: good for this entity only (§5.4 step 7).
		c.sets["jid\x00"+p.from.String()+"\x00"+p.ref.key()] = f
	}
	return p.waiters, f, true
}
