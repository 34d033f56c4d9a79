package loadgen

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// IdleConfig is the idle-sessions scenario: Users sessions (Prefix0 …)
// whose rosters hold Degree contacts each (populate them first with
// PopulateRosters) log in, fetch the roster, send initial presence and
// wait until each has the presence of all its contacts; after Settle with
// no traffic the server's resident memory is read from /proc. The memory
// per session is (RSS loaded − RSS before the first login) / Users.
type IdleConfig struct {
	Prefix      string
	Users       int
	Degree      int // expected contacts per user; 0 = no roster check
	Concurrency int
	Settle      time.Duration // default 5s
	Timeout     time.Duration // default 10 min
	ServerPID   int           // required: the memory is the point
}

// IdleResult reports the idle-sessions scenario.
type IdleResult struct {
	Sessions        int           `json:"sessions"`
	Degree          int           `json:"degree"`
	RosterMin       int           `json:"roster_items_min"` // fewest contacts a roster get returned
	PresenceDone    int           `json:"presence_complete_users"`
	OnlineIn        time.Duration `json:"online_in_ns"` // from first login to every contact's presence seen
	RSSBefore       int64         `json:"rss_before_bytes"`
	RSSLoaded       int64         `json:"rss_loaded_bytes"`
	RSSPerSession   int64         `json:"rss_per_session_bytes"`
	ServerProcesses int           `json:"server_processes"`
	Usage           Usage         `json:"usage"`
	Errors          []string      `json:"errors,omitempty"`
}

// FanoutConfig is the presence fan-out scenario: Users users with Degree
// contacts each (populated first) log in and fetch their rosters without
// sending presence; then all send initial presence at once, and the
// scenario times until every user has received available presence from
// every contact (Users·Degree deliveries when nothing is duplicated),
// with the server's and the client's CPU over that interval.
type FanoutConfig struct {
	Prefix      string
	Users       int
	Degree      int
	Concurrency int
	Timeout     time.Duration // default 2 min
	ServerPID   int
}

// FanoutResult reports presence fan-out.
type FanoutResult struct {
	Users            int           `json:"users"`
	Degree           int           `json:"degree"`
	Expected         int64         `json:"expected"` // distinct (user, contact) presences
	Seen             int64         `json:"seen"`     // distinct ones seen
	Received         int64         `json:"received"` // available presences received, duplicates included
	Complete         int           `json:"complete_users"`
	Time             time.Duration `json:"time_ns"`
	PerSecond        float64       `json:"presences_per_second"`
	ServerCPUPerUser time.Duration `json:"server_cpu_per_user_ns"`
	Usage            Usage         `json:"usage"`
	Errors           []string      `json:"errors,omitempty"`
}

// presenceFleet tracks, per user, which contacts' available presence
// has been seen.
type presenceFleet struct {
	*fleet
	prefix   string
	degree   int
	n        int
	pos      []map[int]int // contact index → position, per user
	seen     [][]bool      // owned by each reader goroutine
	nSeen    []atomic.Int32
	received atomic.Int64
	roster   []chan int   // items in the roster result, -1 on error
	left     atomic.Int64 // users still missing a contact's presence
	doneAt   atomic.Int64 // when left reached 0 (UnixNano)
	allDone  chan struct{}
}

// wait blocks until every user saw every contact, ctx ends or d passes;
// it returns when the last presence arrived (zero when incomplete).
func (p *presenceFleet) wait(ctx context.Context, d time.Duration) (time.Time, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.allDone:
		return time.Unix(0, p.doneAt.Load()), true
	case <-ctx.Done():
	case <-t.C:
	}
	return time.Time{}, false
}

func newPresenceFleet(conns []*Conn, prefix string, n, degree int) *presenceFleet {
	p := &presenceFleet{fleet: &fleet{conns: conns}, prefix: prefix, degree: degree, n: n,
		pos: make([]map[int]int, n), seen: make([][]bool, n), nSeen: make([]atomic.Int32, n), roster: make([]chan int, n)}
	for i := 0; i < n; i++ {
		p.pos[i] = map[int]int{}
		if degree > 0 {
			for k, j := range Contacts(i, n, degree) {
				p.pos[i][j] = k
			}
		}
		p.seen[i] = make([]bool, degree)
		p.roster[i] = make(chan int, 1)
	}
	p.allDone = make(chan struct{})
	p.left.Store(int64(n))
	if degree == 0 {
		p.left.Store(0)
		close(p.allDone)
	}
	p.start(func(i int, el Elem) {
		switch {
		case el.Is("presence"):
			if !presenceAvailable(el) {
				return
			}
			j := userIndex(bareFrom(el), p.prefix)
			k, ok := p.pos[i][j]
			if j < 0 || !ok {
				return // own presence, or not a contact
			}
			p.received.Add(1)
			if !p.seen[i][k] {
				p.seen[i][k] = true
				if int(p.nSeen[i].Add(1)) == p.degree && p.left.Add(-1) == 0 {
					p.doneAt.Store(time.Now().UnixNano())
					close(p.allDone)
				}
			}
		case el.Is("iq") && el.AttrString("id") == "rg":
			if typ, _ := el.Attr("type"); string(typ) != "result" {
				p.roster[i] <- -1
				return
			}
			cnt := 0 // contacts with subscription both
			rosterItems(el, func(j, sub []byte) {
				if _, ok := p.pos[i][userIndex(j, p.prefix)]; ok && string(sub) == "both" {
					cnt++
				}
			})
			p.roster[i] <- cnt
		}
	})
	return p
}

func (p *presenceFleet) seenTotal() int64 {
	s := int64(0)
	for i := range p.nSeen {
		s += int64(p.nSeen[i].Load())
	}
	return s
}

func (p *presenceFleet) complete() int {
	c := 0
	for i := range p.nSeen {
		if int(p.nSeen[i].Load()) == p.degree {
			c++
		}
	}
	return c
}

// Idle runs IdleConfig.
func Idle(ctx context.Context, t *Target, cfg IdleConfig) (*IdleResult, error) {
	if err := t.Prepare(ctx); err != nil {
		return nil, err
	}
	if err := checkCount("sessions", cfg.Users, 1, maxUsers); err != nil {
		return nil, err
	}
	if cfg.Degree > 0 {
		if err := checkDegree(cfg.Users, cfg.Degree); err != nil {
			return nil, err
		}
	}
	if cfg.ServerPID <= 0 {
		return nil, fmt.Errorf("loadgen: idle sessions need the server's PID to read its memory")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 50
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	before, err := ReadProc(cfg.ServerPID)
	if err != nil {
		return nil, err
	}
	m := StartMeter(cfg.ServerPID)
	start := time.Now()
	conns, err := dialAll(ctx, cfg.Users, cfg.Concurrency, func(ctx context.Context, i int) (*Conn, error) {
		return t.Dial(ctx, UserName(cfg.Prefix, i), "idle")
	})
	if err != nil {
		return nil, fmt.Errorf("loadgen: idle logins: %w", err)
	}
	stopWatch := closeOnDone(ctx, conns)
	defer stopWatch()
	p := newPresenceFleet(conns, cfg.Prefix, cfg.Users, cfg.Degree)
	defer p.closeAll()
	res := &IdleResult{Sessions: cfg.Users, Degree: cfg.Degree, RSSBefore: before.RSS, RosterMin: -1}
	// Roster get then initial presence, as a client does on login (no
	// roster get when no roster is expected, so the scenario also runs on
	// a server without roster support).
	login := `<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq><presence/>`
	if cfg.Degree == 0 {
		login = `<presence/>`
		res.RosterMin = 0
	}
	for _, c := range conns {
		if err := c.WriteString(login); err != nil {
			return nil, err
		}
	}
	for i := range conns {
		if cfg.Degree == 0 {
			break
		}
		select {
		case cnt := <-p.roster[i]:
			if cnt < 0 {
				return nil, ErrNoRoster
			}
			if res.RosterMin < 0 || cnt < res.RosterMin {
				res.RosterMin = cnt
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("loadgen: idle: roster results: %w", ctx.Err())
		}
	}
	if cfg.Degree > 0 && res.RosterMin < cfg.Degree {
		return nil, fmt.Errorf("loadgen: idle: a roster has %d of %d contacts with subscription both (populate rosters first, or the server lacks roster support)", res.RosterMin, cfg.Degree)
	}
	if at, ok := p.wait(ctx, cfg.Timeout); ok {
		res.OnlineIn = at.Sub(start)
	} else {
		res.OnlineIn = time.Since(start)
	}
	res.PresenceDone = p.complete()
	// Quiet period, then read the memory with every session still open.
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	loaded, err := ReadProc(cfg.ServerPID)
	if err != nil {
		return nil, err
	}
	res.Usage = m.Stop()
	res.RSSLoaded = loaded.RSS
	res.ServerProcesses = loaded.N
	res.RSSPerSession = (loaded.RSS - before.RSS) / int64(cfg.Users)
	res.Errors = p.readErrors()
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("loadgen: idle: %d sessions failed while idle: %s", len(res.Errors), res.Errors[0])
	}
	if res.PresenceDone != cfg.Users && cfg.Degree > 0 {
		return res, fmt.Errorf("loadgen: idle: only %d of %d users saw all contacts online", res.PresenceDone, cfg.Users)
	}
	return res, nil
}

// Fanout runs FanoutConfig.
func Fanout(ctx context.Context, t *Target, cfg FanoutConfig) (*FanoutResult, error) {
	if err := t.Prepare(ctx); err != nil {
		return nil, err
	}
	if err := checkCount("users", cfg.Users, 2, maxUsers); err != nil {
		return nil, err
	}
	if err := checkDegree(cfg.Users, cfg.Degree); err != nil {
		return nil, err
	}
	if cfg.Degree == 0 {
		return nil, fmt.Errorf("loadgen: fan-out needs a roster degree > 0")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 50
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conns, err := dialAll(ctx, cfg.Users, cfg.Concurrency, func(ctx context.Context, i int) (*Conn, error) {
		return t.Dial(ctx, UserName(cfg.Prefix, i), "fan")
	})
	if err != nil {
		return nil, fmt.Errorf("loadgen: fan-out logins: %w", err)
	}
	stopWatch := closeOnDone(ctx, conns)
	defer stopWatch()
	p := newPresenceFleet(conns, cfg.Prefix, cfg.Users, cfg.Degree)
	defer p.closeAll()
	for _, c := range conns {
		if err := c.WriteString(`<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>`); err != nil {
			return nil, err
		}
	}
	for i := range conns {
		select {
		case cnt := <-p.roster[i]:
			if cnt < 0 {
				return nil, ErrNoRoster
			}
			if cnt < cfg.Degree {
				return nil, fmt.Errorf("loadgen: fan-out: user %d's roster has %d of %d contacts with subscription both (populate rosters first, or the server lacks roster support)", i, cnt, cfg.Degree)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("loadgen: fan-out: roster results: %w", ctx.Err())
		}
	}
	want := int64(cfg.Users) * int64(cfg.Degree)
	m := StartMeter(cfg.ServerPID)
	start := time.Now()
	for _, c := range conns {
		if err := c.WriteString(`<presence/>`); err != nil {
			return nil, err
		}
	}
	at, done := p.wait(ctx, cfg.Timeout)
	u := m.Stop()
	res := &FanoutResult{
		Users: cfg.Users, Degree: cfg.Degree, Expected: want, Seen: p.seenTotal(), Received: p.received.Load(),
		Complete: p.complete(), Time: u.Wall, Usage: u, Errors: p.readErrors(),
	}
	if done {
		res.Time = at.Sub(start)
	}
	res.PerSecond = float64(res.Seen) / res.Time.Seconds()
	res.ServerCPUPerUser = u.ServerCPU / time.Duration(cfg.Users)
	if !done {
		return res, fmt.Errorf("loadgen: fan-out incomplete: %d of %d presences seen, %d of %d users complete", res.Seen, want, res.Complete, cfg.Users)
	}
	return res, nil
}
