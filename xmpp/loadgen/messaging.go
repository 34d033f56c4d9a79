package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MessagingConfig is the stepped-rate messaging scenario. Pairs pairs of
// users (Prefix0…Prefix{2·Pairs-1}) log in and send initial presence;
// within a pair each side sends chat messages to the other's full JID, so
// 2·Pairs senders share the aggregate rate. Each step runs for Step at
// one aggregate rate, paced by a schedule (not by replies); a message
// carries its step and its scheduled send time, and the receiver takes
// the end-to-end latency from that scheduled time, so a sender that falls
// behind (server back-pressure) shows as latency instead of hiding it
// (no coordinated omission). After a step the receivers get up to Drain
// to receive everything. A step passes when delivered == sent and p99 <
// MaxP99; the scenario reports the highest passing rate and stops at the
// first failing step.
type MessagingConfig struct {
	Prefix    string
	Pairs     int
	Rates     []int // aggregate messages per second, ascending
	Step      time.Duration
	Drain     time.Duration
	BodyBytes int
	MaxP99    time.Duration
	// Warmup runs the first rate for this long before the steps, not
	// judged (servers warm caches and processes; default 2s, <0 none).
	Warmup time.Duration
	// KeepGoing runs the remaining steps after a failure.
	KeepGoing   bool
	Concurrency int // logins at a time
	ServerPID   int
}

// StepResult is one rate step.
type StepResult struct {
	Rate      int           `json:"rate"`
	Sent      int64         `json:"sent"`
	Delivered int64         `json:"delivered"`
	Errors    int64         `json:"errors"` // error bounces received
	Achieved  float64       `json:"achieved_per_second"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Max       time.Duration `json:"max_ns"`
	Pass      bool          `json:"pass"`
	Usage     Usage         `json:"usage"`
}

// MessagingResult reports the messaging scenario.
type MessagingResult struct {
	Pairs     int           `json:"pairs"`
	BodyBytes int           `json:"body_bytes"`
	MaxP99    time.Duration `json:"max_p99_ns"`
	Best      int           `json:"best_rate"` // highest passing rate, 0 if none
	BestStep  *StepResult   `json:"best_step,omitempty"`
	Warmup    *StepResult   `json:"warmup,omitempty"`
	Steps     []StepResult  `json:"steps"`
	Errors    []string      `json:"errors,omitempty"`
}

type msgRecv struct {
	mu    sync.Mutex
	hist  Hist
	n     atomic.Int64
	errs  atomic.Int64
	stale atomic.Int64
}

// record counts a received message of the current step and its latency
// from the scheduled send time in its body; error bounces are counted
// apart, messages of other steps (late ones) as stale.
func (r *msgRecv) record(el Elem, base time.Time, curStep *atomic.Int64) {
	now := time.Since(base)
	if typ, _ := el.Attr("type"); string(typ) == "error" {
		r.errs.Add(1)
		return
	}
	b, ok := el.Child("body")
	if !ok {
		return
	}
	step, sent, ok := parseBody(b.Text())
	if !ok || step != curStep.Load() {
		r.stale.Add(1)
		return
	}
	r.mu.Lock()
	r.hist.Record(now - time.Duration(sent))
	r.mu.Unlock()
	r.n.Add(1)
}

// check validates cfg and fills in the defaults.
func (cfg *MessagingConfig) check() error {
	if err := checkCount("pairs", cfg.Pairs, 1, maxUsers/2); err != nil {
		return err
	}
	if len(cfg.Rates) == 0 || len(cfg.Rates) > 64 {
		return fmt.Errorf("loadgen: 1 to 64 rate steps needed")
	}
	for _, r := range cfg.Rates {
		if err := checkCount("rate", r, 1, 10000000); err != nil {
			return err
		}
	}
	if cfg.Step <= 0 || cfg.Step > 10*time.Minute {
		return fmt.Errorf("loadgen: step duration %v out of range (0, 10m]", cfg.Step)
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 5 * time.Second
	}
	if cfg.MaxP99 <= 0 {
		cfg.MaxP99 = 100 * time.Millisecond
	}
	if cfg.BodyBytes < 32 {
		cfg.BodyBytes = 32
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 20
	}
	return nil
}

// Messaging runs MessagingConfig.
func Messaging(ctx context.Context, t *Target, cfg MessagingConfig) (*MessagingResult, error) {
	if err := t.Prepare(ctx); err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	// Bounded overall: the steps, their drains and the logins.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(len(cfg.Rates))*(cfg.Step+cfg.Drain+2*time.Second)+5*time.Minute)
	defer cancel()

	n := 2 * cfg.Pairs
	conns, err := dialAll(ctx, n, cfg.Concurrency, func(ctx context.Context, i int) (*Conn, error) {
		return t.Dial(ctx, UserName(cfg.Prefix, i), "bench")
	})
	if err != nil {
		return nil, fmt.Errorf("loadgen: messaging logins: %w", err)
	}
	stopWatch := closeOnDone(ctx, conns)
	defer stopWatch()
	base := time.Now()
	var curStep atomic.Int64
	curStep.Store(-1)
	recv := make([]msgRecv, n)
	f := &fleet{conns: conns}
	ready := make([]chan struct{}, n)
	for i := range ready {
		ready[i] = make(chan struct{})
	}
	f.start(func(i int, el Elem) {
		if el.Is("iq") && el.AttrString("id") == "mp" {
			select {
			case <-ready[i]:
			default:
				close(ready[i])
			}
		}
		if el.Is("message") {
			recv[i].record(el, base, &curStep)
		}
	})
	defer f.closeAll()
	// Initial presence, then an iq round trip per connection so that
	// presence traffic is over before the first step.
	for _, c := range conns {
		if err := c.WriteString(`<presence/><iq type='get' id='mp'><ping xmlns='urn:xmpp:ping'/></iq>`); err != nil {
			return nil, err
		}
	}
	for i := range ready {
		select {
		case <-ready[i]:
		case <-ctx.Done():
			return nil, fmt.Errorf("loadgen: messaging: waiting for initial presence: %w", ctx.Err())
		}
	}

	senders := make([]sender, n)
	for i, c := range conns {
		senders[i] = sender{c: c, head: []byte(`<message type='chat' to='` + escape(conns[i^1].JID) + `' id='`)}
	}
	res := &MessagingResult{Pairs: cfg.Pairs, BodyBytes: cfg.BodyBytes, MaxP99: cfg.MaxP99}
	res.Warmup, res.Steps, res.BestStep = runSteps(ctx, cfg, senders, recv, &curStep, base, nil)
	if res.BestStep != nil {
		res.Best = res.BestStep.Rate
	}
	res.Errors = f.readErrors()
	if ctx.Err() != nil {
		return res, fmt.Errorf("loadgen: messaging: %w", ctx.Err())
	}
	return res, nil
}

// runSteps runs the warm-up (unless cfg.Warmup < 0) and the rate steps,
// stopping after the first failing one unless cfg.KeepGoing; best is the
// highest passing step. after, if set, runs after each judged step while
// recv still holds that step's figures.
func runSteps(ctx context.Context, cfg MessagingConfig, senders []sender, recv []msgRecv, curStep *atomic.Int64, base time.Time, after func(StepResult)) (warm *StepResult, steps []StepResult, best *StepResult) {
	if cfg.Warmup == 0 {
		cfg.Warmup = 2 * time.Second
	}
	if cfg.Warmup > 0 {
		wc := cfg
		wc.Step = cfg.Warmup
		w := runStep(ctx, wc, senders, recv, curStep, base, 1000, cfg.Rates[0])
		warm = &w
		time.Sleep(300 * time.Millisecond)
	}
	for si, rate := range cfg.Rates {
		if ctx.Err() != nil {
			break
		}
		sr := runStep(ctx, cfg, senders, recv, curStep, base, int64(si), rate)
		steps = append(steps, sr)
		if after != nil {
			after(sr)
		}
		if sr.Pass {
			s := sr
			best = &s
		} else if !cfg.KeepGoing {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	return warm, steps, best
}

// sender is one message source of a step: the stream it writes to and
// the start of its message up to the id attribute's value.
type sender struct {
	c    *Conn
	head []byte
}

// runStep sends rate messages/s (aggregate over senders) for cfg.Step and
// waits up to cfg.Drain for the receivers (recv, filled by the readers
// while curStep == step) to count them.
func runStep(ctx context.Context, cfg MessagingConfig, senders []sender, recv []msgRecv, curStep *atomic.Int64, base time.Time, step int64, rate int) StepResult {
	n := len(senders)
	for i := range recv {
		recv[i].mu.Lock()
		recv[i].hist.Reset()
		recv[i].mu.Unlock()
		recv[i].n.Store(0)
		recv[i].errs.Store(0)
	}
	curStep.Store(step)
	perSender := float64(rate) / float64(n)
	total := int64(math.Round(perSender * cfg.Step.Seconds())) // per sender
	if total < 1 {
		total = 1
	}
	interval := float64(cfg.Step) / float64(total)
	var sent atomic.Int64
	m := StartMeter(cfg.ServerPID)
	start := time.Since(base) + 20*time.Millisecond
	var wg sync.WaitGroup
	for i, s := range senders {
		c, head := s.c, s.head
		phase := interval * float64(i) / float64(n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := int64(0)
			buf := make([]byte, 0, 4096)
			pad := strings.Repeat("x", cfg.BodyBytes)
			for k < total && ctx.Err() == nil {
				now := time.Since(base)
				due := int64(math.Floor((float64(now-start)-phase)/interval)) + 1
				if due > total {
					due = total
				}
				if due <= k {
					// Sleep at least 1 ms: at high rates a sender then
					// writes a few messages per syscall instead of one.
					next := start + time.Duration(phase+float64(k)*interval)
					time.Sleep(max(next-now, time.Millisecond))
					continue
				}
				buf = buf[:0]
				batch := due - k
				for ; k < due; k++ {
					at := start + time.Duration(phase+float64(k)*interval)
					buf = append(buf, head...)
					buf = strconv.AppendInt(buf, step, 36)
					buf = append(buf, '-')
					buf = strconv.AppendInt(buf, k, 36)
					buf = append(buf, `'><body>`...)
					bodyStart := len(buf)
					buf = strconv.AppendInt(buf, step, 10)
					buf = append(buf, ' ')
					buf = strconv.AppendInt(buf, int64(at), 10)
					buf = append(buf, ' ')
					if fill := cfg.BodyBytes - (len(buf) - bodyStart); fill > 0 {
						buf = append(buf, pad[:fill]...)
					}
					buf = append(buf, `</body></message>`...)
				}
				if err := c.Write(buf); err != nil {
					return
				}
				sent.Add(batch)
			}
		}()
	}
	wg.Wait()
	// Every sender sends exactly total unless its connection failed or ctx
	// ended; what counts is what went out.
	sentN := sent.Load()
	delivered := func() int64 {
		s := int64(0)
		for i := range recv {
			s += recv[i].n.Load()
		}
		return s
	}
	waitUntil(ctx, time.Now().Add(cfg.Drain), func() bool { return delivered() >= sentN })
	u := m.Stop()
	curStep.Store(-1)
	var h Hist
	var errs int64
	for i := range recv {
		recv[i].mu.Lock()
		h.Merge(&recv[i].hist)
		recv[i].mu.Unlock()
		errs += recv[i].errs.Load()
	}
	sr := StepResult{
		Rate: rate, Sent: sentN, Delivered: delivered(), Errors: errs,
		P50: h.Quantile(0.5), P99: h.Quantile(0.99), Max: h.Max(), Usage: u,
	}
	sr.Achieved = float64(sr.Delivered) / cfg.Step.Seconds()
	sr.Pass = sr.Sent == total*int64(n) && sr.Delivered == sr.Sent && sr.Errors == 0 && sr.P99 < cfg.MaxP99
	return sr
}

// parseBody reads "<step> <scheduled ns> xxx…".
func parseBody(b []byte) (int64, int64, bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return 0, 0, false
	}
	step, err := strconv.ParseInt(string(b[:sp]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	rest := b[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		sp = len(rest)
	}
	at, err := strconv.ParseInt(string(rest[:sp]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return step, at, true
}
