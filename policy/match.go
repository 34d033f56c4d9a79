package policy

import (
	"errors"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
)

// Direction says which way a stanza crosses the border.
type Direction uint8

// Directions.
const (
	Outbound Direction = iota + 1 // local to outside
	Inbound                       // outside to local
	// Internal is traffic between two local accounts, which only the
	// information barriers govern.
	Internal
	// Upload is a file a local account stores on the built-in upload
	// service (XEP-0363), which only file rules and scanning govern.
	Upload
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	case Internal:
		return "internal"
	case Upload:
		return "upload"
	}
	return "any"
}

// selector is a compiled Selector.
type selector struct {
	dir          Direction // 0: any
	zones        uint8     // bit per router.Zone; 0: any
	domains      []glob
	jids         []jidGlob
	users        map[string]struct{}
	exceptUsers  map[string]struct{}
	groups       bitset
	hasGroups    bool
	exceptGroups bitset
	hasExcept    bool
	kinds        kindMask // 0: any
	window       *window
}

// crossing is what selectors look at.
type crossing struct {
	dir    Direction
	zone   router.Zone // the outside zone
	local  jid.JID     // the local party
	remote jid.JID     // the outside party
	groups *bitset     // the local party's groups (policy indices)
	// peer is the recipient's groups when both parties are local
	// accounts (Internal); nil otherwise.
	peer  *bitset
	kinds kindMask
	now   time.Time
}

func (s *selector) match(x *crossing) bool {
	if s.dir != 0 && s.dir != x.dir {
		return false
	}
	if s.zones != 0 && s.zones&(1<<x.zone) == 0 {
		return false
	}
	if s.kinds != 0 && s.kinds&x.kinds == 0 {
		return false
	}
	if len(s.domains) > 0 {
		d := x.remote.Domainpart()
		ok := false
		for _, g := range s.domains {
			if g.match(d) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(s.jids) > 0 {
		ok := false
		for _, g := range s.jids {
			if g.match(x.remote) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	local := x.local.Localpart()
	if s.users != nil {
		if _, ok := s.users[local]; !ok {
			return false
		}
	}
	if s.exceptUsers != nil {
		if _, ok := s.exceptUsers[local]; ok {
			return false
		}
	}
	if s.hasGroups && !s.groups.intersects(x.groups) {
		return false
	}
	if s.hasExcept && s.exceptGroups.intersects(x.groups) {
		return false
	}
	if s.window != nil && !s.window.contains(x.now) {
		return false
	}
	return true
}

// glob is a lowercase pattern where '*' matches any run of characters.
type glob string

var errEmptyPattern = errors.New("empty pattern")

func newGlob(p string) (glob, error) {
	p = strings.ToLower(strings.TrimSpace(p))
	if p == "" {
		return "", errEmptyPattern
	}
	if strings.ContainsAny(p, " \t\n/") {
		return "", errors.New("a pattern has no spaces or '/'")
	}
	return glob(p), nil
}

// match reports whether s matches g. It allocates nothing: the classic
// two-pointer walk that backtracks to the last '*'.
func (g glob) match(s string) bool {
	p := string(g)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && lowerASCII(s[si]) == p[pi]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// jidGlob matches a bare JID: local@domain patterns, or a domain pattern.
type jidGlob struct {
	local  glob // "" : any localpart (pattern without '@')
	domain glob
}

func newJIDGlob(p string) (jidGlob, error) {
	var g jidGlob
	local, domain, hasAt := strings.Cut(p, "@")
	if !hasAt {
		domain, local = local, ""
	}
	var err error
	if g.domain, err = newGlob(domain); err != nil {
		return g, errors.New("not a JID pattern such as \"*@irc.example\" or \"ceo@competitor.example\"")
	}
	if hasAt {
		if g.local, err = newGlob(local); err != nil {
			return g, errors.New("empty localpart: write \"*@domain\" for any address on a domain")
		}
	}
	return g, nil
}

func (g jidGlob) match(j jid.JID) bool {
	if g.local != "" && !g.local.match(j.Localpart()) {
		return false
	}
	return g.domain.match(j.Domainpart())
}

// window is a compiled TimeWindow.
type window struct {
	days     uint8 // bit per time.Weekday
	from, to int   // minutes after midnight; to may be < from (spans midnight)
	loc      *time.Location
}

func (w *window) contains(t time.Time) bool {
	t = t.In(w.loc)
	m := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	if w.from < w.to {
		return w.days&(1<<day) != 0 && m >= w.from && m < w.to
	}
	// Spans midnight: the evening belongs to today, the early morning to
	// the window that started yesterday.
	if m >= w.from {
		return w.days&(1<<day) != 0
	}
	return m < w.to && w.days&(1<<((day+6)%7)) != 0
}
