package loadgen_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/loadgen"
	"gatehouse/xmpp/xmpptest"
)

const password = "bench-password"

// server starts Gatehouse on 127.0.0.1:0 with users prefix0…prefix{n-1}.
func server(t *testing.T, users map[string]int) (*xmpptest.TestServer, *loadgen.Target) {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.C2S.MaxConnectionsPerIP = 0 })
	for prefix, n := range users {
		for i := 0; i < n; i++ {
			ts.AddUser(t, loadgen.UserName(prefix, i), password)
		}
	}
	return ts, &loadgen.Target{Addr: ts.Addr, Domain: ts.Domain, RootCAs: ts.Roots, Password: password}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestLoginStorm(t *testing.T) {
	_, tg := server(t, map[string]int{"login": 3})
	r, err := loadgen.LoginStorm(ctx(t), tg, loadgen.LoginConfig{Prefix: "login", Accounts: 3, N: 12, Concurrency: 4, ServerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 12 || r.Failed != 0 {
		t.Fatalf("logins ok=%d failed=%d, want 12/0 (%v)", r.OK, r.Failed, r.Errors)
	}
	if r.P50 <= 0 || r.P99 < r.P50 || r.PerSecond <= 0 {
		t.Fatalf("implausible figures: %+v", r)
	}
	if r.Usage.ClientCPU <= 0 || r.Usage.ServerCPU <= 0 {
		t.Fatalf("cpu not measured: %+v", r.Usage)
	}
}

func TestLoginStormMelliumClient(t *testing.T) {
	_, tg := server(t, map[string]int{"login": 1})
	tg.SASL = loadgen.SASLMellium
	tg.Mechanism = "SCRAM-SHA-1"
	r, err := loadgen.LoginStorm(ctx(t), tg, loadgen.LoginConfig{Prefix: "login", Accounts: 1, N: 2, Concurrency: 1})
	if err != nil || r.OK != 2 {
		t.Fatalf("mellium SCRAM-SHA-1 logins: %v %+v", err, r)
	}
}

func TestLoginWrongPassword(t *testing.T) {
	_, tg := server(t, map[string]int{"login": 1})
	tg.Password = "not the password"
	r, err := loadgen.LoginStorm(ctx(t), tg, loadgen.LoginConfig{Prefix: "login", Accounts: 1, N: 1, Concurrency: 1})
	if err == nil || r.Failed != 1 || !errors.Is(err, err) {
		t.Fatalf("wrong password: err=%v result=%+v", err, r)
	}
	var le *loadgen.LoginError
	_, derr := tg.Dial(ctx(t), "login0", "")
	if !errors.As(derr, &le) || le.Phase != "sasl" || !errors.Is(derr, loadgen.ErrAuth) {
		t.Fatalf("Dial with a wrong password: %v", derr)
	}
}

func TestPlainRefusedWhenServerRequiresTLS(t *testing.T) {
	_, tg := server(t, map[string]int{"u": 1})
	tg.TLS = loadgen.Plain
	_, err := tg.Dial(ctx(t), "u0", "")
	if err == nil {
		t.Fatal("plain login to a STARTTLS-required server succeeded")
	}
}

func TestMessaging(t *testing.T) {
	_, tg := server(t, map[string]int{"msg": 4})
	r, err := loadgen.Messaging(ctx(t), tg, loadgen.MessagingConfig{
		Prefix: "msg", Pairs: 2, Rates: []int{50, 200}, Step: 500 * time.Millisecond,
		BodyBytes: 64, MaxP99: 5 * time.Second, ServerPID: os.Getpid(), Warmup: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 2 {
		t.Fatalf("steps: %+v", r.Steps)
	}
	for _, s := range r.Steps {
		want := 4 * int64(math.Round(float64(s.Rate)/4*0.5)) // 4 senders, 0.5 s

		if s.Sent != want || s.Delivered != s.Sent || s.Errors != 0 || !s.Pass {
			t.Fatalf("step %d: sent=%d (want %d) delivered=%d errors=%d pass=%v", s.Rate, s.Sent, want, s.Delivered, s.Errors, s.Pass)
		}
		if s.P99 <= 0 || s.P99 > s.Max+time.Millisecond {
			t.Fatalf("step %d latencies: %+v", s.Rate, s)
		}
	}
	if r.Best != 200 {
		t.Fatalf("best rate %d, want 200", r.Best)
	}
}

// TestMessagingFailsStep checks that a step with an impossible latency
// bound fails and stops the run.
func TestMessagingFailsStep(t *testing.T) {
	_, tg := server(t, map[string]int{"msg": 2})
	r, err := loadgen.Messaging(ctx(t), tg, loadgen.MessagingConfig{
		Prefix: "msg", Pairs: 1, Rates: []int{20, 40}, Step: 300 * time.Millisecond, MaxP99: time.Microsecond, Warmup: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 1 || r.Steps[0].Pass || r.Best != 0 {
		t.Fatalf("want one failed step: %+v", r)
	}
	if r.Steps[0].Delivered != r.Steps[0].Sent {
		t.Fatalf("delivered %d of %d", r.Steps[0].Delivered, r.Steps[0].Sent)
	}
}

func TestIdleWithoutRoster(t *testing.T) {
	_, tg := server(t, map[string]int{"idle": 5})
	r, err := loadgen.Idle(ctx(t), tg, loadgen.IdleConfig{Prefix: "idle", Users: 5, Settle: 100 * time.Millisecond, ServerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sessions != 5 || r.RSSLoaded <= 0 || r.RSSBefore <= 0 {
		t.Fatalf("idle: %+v", r)
	}
}

// rosters populates prefix's rosters, skipping the test when the server
// has no roster support yet.
func rosters(t *testing.T, tg *loadgen.Target, prefix string, n, degree int) {
	t.Helper()
	r, err := loadgen.PopulateRosters(ctx(t), tg, loadgen.RosterConfig{Prefix: prefix, Users: n, Degree: degree, Concurrency: 4, Timeout: time.Minute})
	if errors.Is(err, loadgen.ErrNoRoster) {
		t.Skip("the server has no roster support yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Complete != n || r.Sent != n*degree {
		t.Fatalf("roster population: %+v", r)
	}
	// A second run finds everything in place and sends nothing.
	r, err = loadgen.PopulateRosters(ctx(t), tg, loadgen.RosterConfig{Prefix: prefix, Users: n, Degree: degree, Timeout: time.Minute})
	if err != nil || r.Sent != 0 || r.Already != n*degree || r.Complete != n {
		t.Fatalf("second population: %v %+v", err, r)
	}
}

func TestIdleWithRosters(t *testing.T) {
	_, tg := server(t, map[string]int{"idle": 6})
	rosters(t, tg, "idle", 6, 4)
	r, err := loadgen.Idle(ctx(t), tg, loadgen.IdleConfig{Prefix: "idle", Users: 6, Degree: 4, Settle: 100 * time.Millisecond, ServerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if r.RosterMin != 4 || r.PresenceDone != 6 {
		t.Fatalf("idle: %+v", r)
	}
}

func TestFanout(t *testing.T) {
	_, tg := server(t, map[string]int{"fan": 7})
	rosters(t, tg, "fan", 7, 4)
	r, err := loadgen.Fanout(ctx(t), tg, loadgen.FanoutConfig{Prefix: "fan", Users: 7, Degree: 4, ServerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Seen != 28 || r.Expected != 28 || r.Complete != 7 || r.Received < 28 || r.Time <= 0 {
		t.Fatalf("fan-out: %+v", r)
	}
}

func TestFanoutNeedsRosters(t *testing.T) {
	_, tg := server(t, map[string]int{"fan": 3})
	_, err := loadgen.Fanout(ctx(t), tg, loadgen.FanoutConfig{Prefix: "fan", Users: 3, Degree: 2})
	if err == nil {
		t.Fatal("fan-out without rosters succeeded")
	}
}

const benchComponent, benchSecret = "bench.localhost", "bench-component-secret"

// boundaryServer starts Gatehouse with the bench policy and the bench
// component configured, and users prefix0…prefix{n-1}.
func boundaryServer(t *testing.T, prefix string, n int) (*xmpptest.TestServer, *loadgen.Target) {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.C2S.MaxConnectionsPerIP = 0
		c.Policy.File = "../../testdata/bench/policy.yaml"
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: benchComponent, Secret: benchSecret}}
	})
	for i := 0; i < n; i++ {
		ts.AddUser(t, loadgen.UserName(prefix, i), password)
	}
	return ts, &loadgen.Target{Addr: ts.Addr, Domain: ts.Domain, RootCAs: ts.Roots, Password: password}
}

func TestBoundary(t *testing.T) {
	ts, tg := boundaryServer(t, "msg", 4)
	r, err := loadgen.Boundary(ctx(t), tg, loadgen.BoundaryConfig{
		MessagingConfig: loadgen.MessagingConfig{Prefix: "msg", Pairs: 4, Rates: []int{320, 640}, Step: 500 * time.Millisecond,
			Drain: 5 * time.Second, Warmup: -1, ServerPID: os.Getpid(), MaxP99: time.Minute}, // no latency bound: not a timed test
		ComponentAddr: ts.ComponentAddrs()[0], Component: benchComponent, Secret: benchSecret,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 2 || r.Best != 640 || len(r.Errors) != 0 {
		t.Fatalf("boundary: %+v", r)
	}
	if len(r.Directions) != 2 {
		t.Fatalf("directions: %+v", r.Directions)
	}
	for i, d := range r.Directions {
		// Half the crossings each way, each with its own latency.
		if d.Rate != r.Steps[i].Rate || d.OutDelivered != r.Steps[i].Sent/2 || d.InDelivered != r.Steps[i].Sent/2 || d.OutP99 <= 0 || d.InP99 <= 0 {
			t.Errorf("direction split %d: %+v (step %+v)", i, d, r.Steps[i])
		}
	}
	for _, s := range r.Steps {
		// 8 senders (4 users, 4 outside addresses) × rate/8 × 0.5 s.
		if s.Sent != int64(s.Rate)/2 || s.Delivered != s.Sent || s.Errors != 0 || s.P50 <= 0 || s.P99 < s.P50 {
			t.Errorf("step %d: %+v", s.Rate, s)
		}
		if s.Usage.ClientCPU <= 0 || s.Usage.ServerCPU <= 0 {
			t.Errorf("step %d: CPU not measured: %+v", s.Rate, s.Usage)
		}
	}
}

func TestBoundaryDenied(t *testing.T) {
	ts, tg := boundaryServer(t, "msg", 1)
	_, err := loadgen.Boundary(ctx(t), tg, loadgen.BoundaryConfig{
		MessagingConfig: loadgen.MessagingConfig{Prefix: "msg", Pairs: 1, Rates: []int{10}, Step: 100 * time.Millisecond},
		ComponentAddr:   ts.ComponentAddrs()[0], Component: benchComponent, Secret: "not-the-component-secret",
	})
	if !errors.Is(err, loadgen.ErrHandshake) {
		t.Fatalf("wrong secret: %v, want ErrHandshake", err)
	}
	if _, err := loadgen.DialComponent(ctx(t), "10.0.0.1:5347", benchComponent, benchSecret, time.Second); !errors.Is(err, loadgen.ErrNotLoopback) {
		t.Fatalf("non-loopback component address: %v", err)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"10.0.0.1:5222", "192.168.1.10:5222", "172.16.0.1:5222", "8.8.8.8:5222", "[2001:db8::1]:5222", "0.0.0.0:5222", "[::]:5222", ":5222"} {
		tg := &loadgen.Target{Addr: addr, Domain: "localhost", Password: password}
		_, err := loadgen.LoginStorm(context.Background(), tg, loadgen.LoginConfig{Prefix: "u", Accounts: 1, N: 1, Concurrency: 1})
		if !errors.Is(err, loadgen.ErrNotLoopback) {
			t.Errorf("%s: got %v, want ErrNotLoopback", addr, err)
		}
		if _, err := tg.Dial(context.Background(), "u0", ""); err == nil {
			t.Errorf("%s: Dial without Prepare succeeded", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:5222", "127.1.2.3:1", "[::1]:5222", "localhost:5222", "[::ffff:127.0.0.1]:5222"} {
		got, err := loadgen.ResolveLoopback(context.Background(), addr)
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		if got == "" {
			t.Errorf("%s: empty", addr)
		}
	}
}

func TestBoundsRefused(t *testing.T) {
	tg := &loadgen.Target{Addr: "127.0.0.1:1", Domain: "localhost"}
	cases := []error{
		func() error {
			_, err := loadgen.LoginStorm(context.Background(), tg, loadgen.LoginConfig{Prefix: "u", Accounts: 1, N: 0, Concurrency: 1})
			return err
		}(),
		func() error {
			_, err := loadgen.Messaging(context.Background(), tg, loadgen.MessagingConfig{Prefix: "u", Pairs: 1, Rates: []int{10}})
			return err
		}(),
		func() error {
			_, err := loadgen.PopulateRosters(context.Background(), tg, loadgen.RosterConfig{Prefix: "u", Users: 4, Degree: 3})
			return err
		}(),
		func() error {
			_, err := loadgen.Idle(context.Background(), tg, loadgen.IdleConfig{Prefix: "u", Users: 1})
			return err
		}(),
	}
	for i, err := range cases {
		if err == nil {
			t.Errorf("case %d: accepted", i)
		} else {
			t.Log(fmt.Sprint(i, ": ", err))
		}
	}
}
