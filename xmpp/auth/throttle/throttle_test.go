package throttle

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTest(cfg Config) (*Throttle, *clock) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return New(cfg, c.now), c
}

func TestBackoff(t *testing.T) {
	th, c := newTest(Config{Free: 2, Base: time.Second, Max: 8 * time.Second, Forget: time.Minute})
	ip, acct := IPKey("192.0.2.7"), AccountKey("alice")
	steps := []struct {
		fail bool
		want time.Duration
	}{
		{true, 0}, {true, 0}, // free
		{true, time.Second}, {true, 2 * time.Second}, {true, 4 * time.Second},
		{true, 8 * time.Second}, {true, 8 * time.Second}, // capped
	}
	for i, s := range steps {
		th.Fail(ip, acct)
		if got := th.Wait(ip, acct); got != s.want {
			t.Fatalf("after failure %d: wait %v, want %v", i+1, got, s.want)
		}
	}
	c.advance(8 * time.Second)
	if w := th.Wait(ip); w != 0 {
		t.Fatalf("after the delay: %v", w)
	}
	// A success clears the account, not the address.
	th.Fail(ip, acct)
	th.Succeed("alice")
	if th.Wait(acct) != 0 || th.Wait(ip) == 0 {
		t.Fatalf("after success: account %v, ip %v", th.Wait(acct), th.Wait(ip))
	}
	// Quiet for longer than Forget: a fresh start.
	c.advance(2 * time.Minute)
	th.Fail(ip)
	if th.Wait(ip) != 0 {
		t.Fatal("failures were not forgotten")
	}
	if got := th.Wait("", IPKey("198.51.100.1")); got != 0 {
		t.Fatalf("unknown keys wait %v", got)
	}
}

func TestListAndClear(t *testing.T) {
	th, _ := newTest(Config{Free: 1, Base: time.Second, Max: time.Minute, Forget: time.Hour})
	th.Fail(IPKey("a"), AccountKey("bob"))
	th.Fail(IPKey("a"))
	l := th.List()
	if len(l) != 2 || l[0].Key != "ip:a" || l[0].Failures != 2 || l[0].Until.IsZero() || l[1].Key != "account:bob" || !l[1].Until.IsZero() {
		t.Fatalf("list = %+v", l)
	}
	if !th.Clear("ip:a") || th.Clear("ip:a") || th.Wait(IPKey("a")) != 0 {
		t.Fatal("clear")
	}
}

func TestMaxKeys(t *testing.T) {
	th, c := newTest(Config{Free: 1, Base: time.Second, Max: time.Minute, Forget: time.Hour, MaxKeys: 100})
	for i := range 1000 {
		c.advance(time.Millisecond)
		th.Fail(IPKey(fmt.Sprint(i)))
	}
	if n := len(th.List()); n > 100 {
		t.Fatalf("%d keys kept, max 100", n)
	}
	if th.Wait(IPKey("999")) != 0 || len(th.List()) == 0 {
		t.Fatal("the newest key was evicted")
	}
}

func TestConcurrent(t *testing.T) {
	th := New(Default(), nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := IPKey(fmt.Sprint(g, i%7))
				th.Fail(k, AccountKey("x"))
				_ = th.Wait(k)
				_ = th.List()
			}
		}()
	}
	wg.Wait()
	if l := th.List(); len(l) != 8*7+1 {
		t.Fatalf("%d keys, want %d", len(l), 8*7+1)
	}
}
