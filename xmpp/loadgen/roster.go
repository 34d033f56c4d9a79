package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoRoster is returned when the server answers a roster get with an
// error: it has no roster support.
var ErrNoRoster = errors.New("loadgen: the server refused a roster get (no roster support)")

// RosterConfig populates mutual rosters through the protocol, so it works
// the same on every server: each user logs in, fetches its roster (becoming
// an interested resource), sends initial presence, then for every contact
// a jabber:iq:roster set (name, group "bench") and a presence subscribe;
// every user answers each incoming subscribe with subscribed. Both sides
// subscribe, so each pair ends with subscription='both'. Contacts are the
// ring neighbours of Contacts. Existing 'both' items are kept, so a second
// run only completes what is missing.
type RosterConfig struct {
	Prefix      string // accounts Prefix0 … Prefix{Users-1}
	Users       int
	Degree      int // contacts per user (even)
	Concurrency int // logins at a time (default 50)
	// Timeout bounds the whole population (default 5 min).
	Timeout time.Duration
	// ServerPID, when set, adds the server's CPU to the result.
	ServerPID int
}

// RosterResult reports a population.
type RosterResult struct {
	Users    int      `json:"users"`
	Degree   int      `json:"degree"`
	Complete int      `json:"complete_users"` // users whose roster has every contact with subscription both (verified by a roster get)
	Already  int      `json:"already_both"`   // items that were 'both' before this run
	Sent     int      `json:"subscriptions_sent"`
	Resent   int      `json:"subscriptions_resent"` // re-sent after a verification found them missing
	Usage    Usage    `json:"usage"`
	Errors   []string `json:"errors,omitempty"`
}

// PopulateRosters runs RosterConfig.
func PopulateRosters(ctx context.Context, t *Target, cfg RosterConfig) (*RosterResult, error) {
	if err := t.Prepare(ctx); err != nil {
		return nil, err
	}
	if err := checkCount("users", cfg.Users, 2, maxUsers); err != nil {
		return nil, err
	}
	if err := checkDegree(cfg.Users, cfg.Degree); err != nil {
		return nil, err
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 50
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	m := StartMeter(cfg.ServerPID)

	n := cfg.Users
	type state struct {
		contacts map[string]int // bare JID → position in the contact list
		mu       sync.Mutex
		both     []bool // under mu: written by the reader, read by missing

		nBoth    atomic.Int32
		rosterOK chan int // items that were both in a roster result
	}
	st := make([]*state, n)
	for i := range st {
		s := &state{contacts: map[string]int{}, rosterOK: make(chan int, 4)}
		for k, j := range Contacts(i, n, cfg.Degree) {
			s.contacts[t.JID(UserName(cfg.Prefix, j))] = k
		}
		s.both = make([]bool, cfg.Degree)
		st[i] = s
	}
	conns, err := dialAll(ctx, n, cfg.Concurrency, func(ctx context.Context, i int) (*Conn, error) {
		return t.Dial(ctx, UserName(cfg.Prefix, i), "")
	})
	if err != nil {
		return nil, fmt.Errorf("loadgen: roster logins: %w", err)
	}
	stopWatch := closeOnDone(ctx, conns)
	defer stopWatch()
	f := &fleet{conns: conns}
	var activity atomic.Int64
	f.start(func(i int, el Elem) {
		activity.Add(1)
		s := st[i]
		switch {
		case el.Is("presence"):
			if typ, _ := el.Attr("type"); string(typ) == "subscribe" {
				_ = conns[i].WriteString(`<presence to='` + escape(string(bareFrom(el))) + `' type='subscribed'/>`)
			}
		case el.Is("iq"):
			typ, _ := el.Attr("type")
			id := el.AttrString("id")
			mark := func(j, sub []byte) {
				k, ok := s.contacts[unescape(j)]
				if !ok {
					return
				}
				isBoth := string(sub) == "both"
				s.mu.Lock()
				defer s.mu.Unlock()
				if isBoth && !s.both[k] {
					s.both[k] = true
					s.nBoth.Add(1)
				} else if !isBoth && s.both[k] && string(typ) == "result" {
					s.both[k] = false
					s.nBoth.Add(-1)
				}
			}
			switch {
			case string(typ) == "set":
				rosterItems(el, mark)
			case string(typ) == "result" && strings.HasPrefix(id, "rg"):
				cnt := 0
				rosterItems(el, func(j, sub []byte) {
					mark(j, sub)
					if _, ok := s.contacts[unescape(j)]; ok && string(sub) == "both" {
						cnt++
					}
				})
				s.rosterOK <- cnt
			case string(typ) == "error" && strings.HasPrefix(id, "rg"):
				s.rosterOK <- -1
			}
		}
	})
	defer f.closeAll()

	getRosters := func(tag string) (int, error) {
		for i, c := range conns {
			if err := c.WriteString(`<iq type='get' id='rg` + tag + `'><query xmlns='jabber:iq:roster'/></iq>`); err != nil {
				return 0, fmt.Errorf("roster get for user %d: %w", i, err)
			}
		}
		complete := 0
		for i := range conns {
			select {
			case cnt := <-st[i].rosterOK:
				if cnt < 0 {
					return 0, ErrNoRoster
				}
				if cnt == cfg.Degree {
					complete++
				}
			case <-ctx.Done():
				return 0, fmt.Errorf("loadgen: waiting for roster results: %w", ctx.Err())
			}
		}
		return complete, nil
	}
	res := &RosterResult{Users: n, Degree: cfg.Degree}
	if _, err := getRosters("0"); err != nil {
		return nil, err
	}
	for i := range st {
		res.Already += int(st[i].nBoth.Load())
	}
	missing := func(i int) []int {
		var out []int
		st[i].mu.Lock()
		defer st[i].mu.Unlock()
		for k, j := range Contacts(i, n, cfg.Degree) {
			if !st[i].both[k] {
				out = append(out, j)
			}
		}
		return out
	}
	// All lists are taken before any send.
	todo := make([][]int, n)
	for i := range conns {
		todo[i] = missing(i)
	}
	var sb strings.Builder
	for i, c := range conns {
		sb.Reset()
		sb.WriteString(`<presence/>`)
		for _, j := range todo[i] {
			jid := escape(t.JID(UserName(cfg.Prefix, j)))
			sb.WriteString(`<iq type='set' id='rs` + UserName("", j) + `'><query xmlns='jabber:iq:roster'><item jid='` + jid + `' name='` + escape(UserName(cfg.Prefix, j)) + `'><group>bench</group></item></query></iq>`)
			sb.WriteString(`<presence to='` + jid + `' type='subscribe'/>`)
			res.Sent++
		}
		if err := c.WriteString(sb.String()); err != nil {
			return nil, fmt.Errorf("loadgen: user %d: %w", i, err)
		}
	}
	total := func() int {
		s := 0
		for i := range st {
			s += int(st[i].nBoth.Load())
		}
		return s
	}
	want := n * cfg.Degree
	complete := 0
	// Wait for the pushes while anything moves (any push or presence
	// counts: a busy server works through intermediate states first),
	// then verify with a roster get (authoritative, also covers missed
	// pushes) and re-send the subscriptions still missing, up to 3 rounds.
	for round := 0; ; round++ {
		last, lastMove := activity.Load(), time.Now()
		waitUntil(ctx, time.Now().Add(cfg.Timeout), func() bool {
			if a := activity.Load(); a != last {
				last, lastMove = a, time.Now()
			}
			return total() >= want || time.Since(lastMove) > 15*time.Second
		})
		c, err := getRosters(strconv.Itoa(round + 1))
		if err != nil {
			return nil, err
		}
		complete = c
		if complete == n || round == 2 || ctx.Err() != nil {
			break
		}
		for i := range conns {
			todo[i] = missing(i)
		}
		for i, c := range conns {
			sb.Reset()
			for _, j := range todo[i] {
				jid := escape(t.JID(UserName(cfg.Prefix, j)))
				sb.WriteString(`<presence to='` + jid + `' type='subscribe'/>`)
				res.Resent++
			}
			if sb.Len() > 0 {
				if err := c.WriteString(sb.String()); err != nil {
					return nil, fmt.Errorf("loadgen: user %d: %w", i, err)
				}
			}
		}
	}
	res.Complete = complete
	res.Usage = m.Stop()
	res.Errors = f.readErrors()
	if complete != n {
		return res, fmt.Errorf("loadgen: rosters incomplete: %d of %d users have all %d contacts with subscription both", complete, n, cfg.Degree)
	}
	return res, nil
}
