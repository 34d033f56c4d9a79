package loadgen

import (
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // XEP-0114 defines the handshake as SHA-1
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrHandshake is returned when a component handshake is refused.
var ErrHandshake = errors.New("loadgen: component handshake refused")

// DialComponent connects to an XEP-0114 component listener on a loopback
// address as the component domain, authenticating with secret (the
// handshake is SHA-1 of the stream id and the secret, hex). The stream is
// plain TCP, as the protocol is.
func DialComponent(ctx context.Context, addr, domain, secret string, timeout time.Duration) (*Conn, error) {
	dial, err := ResolveLoopback(ctx, addr)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", dial)
	if err != nil {
		return nil, &LoginError{"connect", err}
	}
	dl, _ := ctx.Deadline()
	_ = nc.SetDeadline(dl)
	c := &Conn{nc: nc, rd: NewReader(nc), JID: domain, Bare: domain}
	fail := func(phase string, err error) (*Conn, error) {
		_ = nc.Close()
		return nil, &LoginError{phase, err}
	}
	if err := c.WriteString(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='` + escape(domain) + `'>`); err != nil {
		return fail("stream", err)
	}
	hdr, err := c.rd.StreamHeader()
	if err != nil {
		return fail("stream", err)
	}
	id, ok := hdr.Attr("id")
	if !ok || len(id) == 0 {
		return fail("stream", fmt.Errorf("no stream id in %s", clip(hdr.Raw)))
	}
	if err := c.WriteString(`<handshake>` + componentDigest(unescape(id), secret) + `</handshake>`); err != nil {
		return fail("handshake", err)
	}
	el, err := c.rd.Next()
	if err != nil {
		return fail("handshake", err)
	}
	if !el.Is("handshake") {
		return fail("handshake", fmt.Errorf("%w: %s", ErrHandshake, clip(el.Raw)))
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// componentDigest is the XEP-0114 handshake value.
func componentDigest(streamID, secret string) string {
	h := sha1.Sum([]byte(streamID + secret)) //nolint:gosec // mandated by XEP-0114
	return hex.EncodeToString(h[:])
}

// BoundaryConfig is the boundary scenario: Pairs local users (Prefix0 …)
// and one outside party, an XEP-0114 component serving Component that
// this tool connects as, exchange chat messages across the company
// border at stepped aggregate rates, exactly as in the messaging scenario
// (same schedule, bodies, latency and pass rule): local user i sends to
// b<i>@Component and the component sends from b<i>@Component to user i's
// full JID, so half the crossings are outbound and half inbound. Every
// message passes the server's boundary (policy, archive). Compare with
// the messaging scenario at the same rates for the added latency.
type BoundaryConfig struct {
	MessagingConfig
	ComponentAddr string // the server's component listener (loopback)
	Component     string // the component's domain
	Secret        string // the component's shared secret
}

// BoundaryResult reports the boundary scenario.
type BoundaryResult struct {
	Clients   int           `json:"clients"`
	Component string        `json:"component"`
	BodyBytes int           `json:"body_bytes"`
	MaxP99    time.Duration `json:"max_p99_ns"`
	Best      int           `json:"best_rate"` // highest passing crossings/s, 0 if none
	BestStep  *StepResult   `json:"best_step,omitempty"`
	Warmup    *StepResult   `json:"warmup,omitempty"`
	Steps     []StepResult  `json:"steps"`
	// Directions splits each step (same order) into outbound crossings
	// (local users → component) and inbound ones (one component stream →
	// local users).
	Directions []DirectionSplit `json:"directions"`
	Errors     []string         `json:"errors,omitempty"`
}

// DirectionSplit is one boundary step by direction.
type DirectionSplit struct {
	Rate         int           `json:"rate"`
	OutDelivered int64         `json:"outbound_delivered"`
	OutP50       time.Duration `json:"outbound_p50_ns"`
	OutP99       time.Duration `json:"outbound_p99_ns"`
	InDelivered  int64         `json:"inbound_delivered"`
	InP50        time.Duration `json:"inbound_p50_ns"`
	InP99        time.Duration `json:"inbound_p99_ns"`
}

// Boundary runs BoundaryConfig.
func Boundary(ctx context.Context, t *Target, cfg BoundaryConfig) (*BoundaryResult, error) {
	if cfg.Component == "" || cfg.ComponentAddr == "" || cfg.Secret == "" {
		return nil, errors.New("loadgen: boundary needs the component's address, domain and secret")
	}
	if err := t.Prepare(ctx); err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(len(cfg.Rates))*(cfg.Step+cfg.Drain+2*time.Second)+5*time.Minute)
	defer cancel()

	n := cfg.Pairs
	comp, err := DialComponent(ctx, cfg.ComponentAddr, cfg.Component, cfg.Secret, t.HandshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("loadgen: boundary: component: %w", err)
	}
	conns, err := dialAll(ctx, n, cfg.Concurrency, func(ctx context.Context, i int) (*Conn, error) {
		return t.Dial(ctx, UserName(cfg.Prefix, i), "bench")
	})
	if err != nil {
		_ = comp.Abort()
		return nil, fmt.Errorf("loadgen: boundary logins: %w", err)
	}
	stopWatch := closeOnDone(ctx, append([]*Conn{comp}, conns...))
	defer stopWatch()
	base := time.Now()
	var curStep atomic.Int64
	curStep.Store(-1)
	recv := make([]msgRecv, n+1) // n clients, then the component
	ready := make([]chan struct{}, n)
	for i := range ready {
		ready[i] = make(chan struct{})
	}
	f := &fleet{conns: conns}
	f.start(func(i int, el Elem) {
		if el.Is("iq") && el.AttrString("id") == "bp" {
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
	var compErr error
	var compWG sync.WaitGroup
	compWG.Add(1)
	go func() {
		defer compWG.Done()
		compErr = serveComponent(comp, func(el Elem) {
			if el.Is("message") {
				recv[n].record(el, base, &curStep)
			}
		})
	}()
	defer func() { _ = comp.Close(); compWG.Wait() }()

	for _, c := range conns {
		if err := c.WriteString(`<presence/><iq type='get' id='bp'><ping xmlns='urn:xmpp:ping'/></iq>`); err != nil {
			return nil, err
		}
	}
	for i := range ready {
		select {
		case <-ready[i]:
		case <-ctx.Done():
			return nil, fmt.Errorf("loadgen: boundary: waiting for initial presence: %w", ctx.Err())
		}
	}
	senders := make([]sender, 0, 2*n)
	for i, c := range conns {
		outside := "b" + strconv.Itoa(i) + "@" + cfg.Component
		senders = append(senders,
			sender{c: c, head: []byte(`<message type='chat' to='` + escape(outside) + `' id='`)},
			sender{c: comp, head: []byte(`<message type='chat' from='` + escape(outside+"/lg") + `' to='` + escape(c.JID) + `' id='`)})
	}
	res := &BoundaryResult{Clients: n, Component: cfg.Component, BodyBytes: cfg.BodyBytes, MaxP99: cfg.MaxP99}
	split := func(sr StepResult) {
		d := DirectionSplit{Rate: sr.Rate}
		var in Hist
		for i := range recv {
			recv[i].mu.Lock()
			if i == n {
				d.OutDelivered = recv[i].n.Load()
				d.OutP50, d.OutP99 = recv[i].hist.Quantile(0.5), recv[i].hist.Quantile(0.99)
			} else {
				in.Merge(&recv[i].hist)
				d.InDelivered += recv[i].n.Load()
			}
			recv[i].mu.Unlock()
		}
		d.InP50, d.InP99 = in.Quantile(0.5), in.Quantile(0.99)
		res.Directions = append(res.Directions, d)
	}
	res.Warmup, res.Steps, res.BestStep = runSteps(ctx, cfg.MessagingConfig, senders, recv, &curStep, base, split)
	if res.BestStep != nil {
		res.Best = res.BestStep.Rate
	}
	res.Errors = f.readErrors()
	_ = comp.Close()
	compWG.Wait()
	if compErr != nil && !isClosed(compErr) {
		res.Errors = append(res.Errors, "component: "+compErr.Error())
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("loadgen: boundary: %w", ctx.Err())
	}
	return res, nil
}

// serveComponent reads a component stream until it fails, answering the
// server's iq get/set (XEP-0199 pings) and handing every element to h.
func serveComponent(c *Conn, h func(Elem)) error {
	for {
		el, err := c.Next()
		if err != nil {
			return err
		}
		if el.Is("error") && bytes.HasPrefix(el.Name(), []byte("stream")) {
			return fmt.Errorf("loadgen: stream error from server: %s", clip(el.Raw))
		}
		if el.Is("iq") {
			typ, _ := el.Attr("type")
			if string(typ) == "get" || string(typ) == "set" {
				id, from, to := el.AttrString("id"), el.AttrString("from"), el.AttrString("to")
				addr := ` from='` + escape(to) + `' to='` + escape(from) + `'`
				reply := `<iq type='result' id='` + escape(id) + `'` + addr + `/>`
				if !el.Has("ping") {
					reply = `<iq type='error' id='` + escape(id) + `'` + addr + `><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`
				}
				if err := c.WriteString(reply); err != nil {
					return err
				}
			}
		}
		h(el)
	}
}
