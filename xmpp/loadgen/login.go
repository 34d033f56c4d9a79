package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// LoginConfig is the login storm: N full logins, C at a time. A login is
// TCP connect, stream, STARTTLS and TLS handshake (or plain), SASL,
// bind, initial presence and an iq round trip that proves the presence
// was processed (the server handles one stream's stanzas in order; any iq
// reply counts, even an error). Its time runs from connect to that reply.
// The stream is then closed without waiting for the server. Login i uses
// account Prefix{i mod Accounts} with a fresh resource; TLS sessions are
// never resumed.
type LoginConfig struct {
	Prefix      string
	Accounts    int
	N           int
	Concurrency int
	Timeout     time.Duration // whole storm (default 10 min)
	ServerPID   int
}

// LoginResult reports a login storm.
type LoginResult struct {
	N           int           `json:"n"`
	Concurrency int           `json:"concurrency"`
	OK          int           `json:"ok"`
	Failed      int           `json:"failed"`
	PerSecond   float64       `json:"logins_per_second"`
	P50         time.Duration `json:"p50_ns"`
	P90         time.Duration `json:"p90_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	Usage       Usage         `json:"usage"`
	Negotiated  string        `json:"negotiated"` // TLS version and cipher, SASL mechanism and iterations
	Errors      []string      `json:"errors,omitempty"`
}

// LoginStorm runs LoginConfig.
func LoginStorm(ctx context.Context, t *Target, cfg LoginConfig) (*LoginResult, error) {
	if err := t.Prepare(ctx); err != nil {
		return nil, err
	}
	if err := checkCount("logins", cfg.N, 1, maxLogins); err != nil {
		return nil, err
	}
	if err := checkCount("concurrency", cfg.Concurrency, 1, maxUsers); err != nil {
		return nil, err
	}
	if err := checkCount("accounts", cfg.Accounts, 1, maxUsers); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	var next atomic.Int64
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	hists := make([]Hist, cfg.Concurrency)
	var wg sync.WaitGroup
	m := StartMeter(cfg.ServerPID)
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hists[w]
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.N {
					return
				}
				d, err := loginOnce(ctx, t, UserName(cfg.Prefix, i%cfg.Accounts), i)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
				h.Record(d)
			}
		}()
	}
	wg.Wait()
	u := m.Stop()
	var h Hist
	for i := range hists {
		h.Merge(&hists[i])
	}
	r := &LoginResult{
		N: cfg.N, Concurrency: cfg.Concurrency, OK: int(ok.Load()), Failed: int(failed.Load()),
		P50: h.Quantile(0.50), P90: h.Quantile(0.90), P99: h.Quantile(0.99), Max: h.Max(),
		Usage: u, Errors: errs, Negotiated: t.Negotiated(),
	}
	r.PerSecond = float64(r.OK) / u.Wall.Seconds()
	if ctx.Err() != nil && r.OK+r.Failed < cfg.N {
		return r, fmt.Errorf("loadgen: login storm stopped after %d of %d logins: %w", r.OK+r.Failed, cfg.N, ctx.Err())
	}
	if r.Failed > 0 {
		return r, fmt.Errorf("loadgen: %d of %d logins failed; first: %s", r.Failed, cfg.N, errs[0])
	}
	return r, nil
}

func loginOnce(ctx context.Context, t *Target, user string, i int) (time.Duration, error) {
	start := time.Now()
	c, err := t.Dial(ctx, user, fmt.Sprintf("storm%d", i))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(t.HandshakeTimeout))
	if err := c.WriteString(`<presence/><iq type='get' id='lp'><ping xmlns='urn:xmpp:ping'/></iq>`); err != nil {
		return 0, &LoginError{"presence", err}
	}
	for {
		el, err := c.Next()
		if err != nil {
			return 0, &LoginError{"presence", err}
		}
		if el.Is("error") && len(el.Name()) > 6 && string(el.Name()[:6]) == "stream" {
			return 0, &LoginError{"presence", errors.New(clip(el.Raw))}
		}
		if el.Is("iq") && el.AttrString("id") == "lp" {
			return time.Since(start), nil
		}
	}
}
