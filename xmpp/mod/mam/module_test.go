package mam

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/config"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func testConfig() config.MAM {
	return config.MAM{Enabled: true, Default: DefaultAlways, Retention: config.Duration(24 * time.Hour), MaxPageSize: 10, File: "mam.db"}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestRetentionPrune(t *testing.T) {
	clk := &clock{t: t0.Add(72 * time.Hour)}
	deleted := make(chan int64, 100)
	m, err := Open(context.Background(), Options{
		Config: testConfig(), DataDir: t.TempDir(), Log: quietLog(), Now: clk.now,
		PruneInterval: 5 * time.Millisecond,
		PruneDone: func(n int64, err error) {
			if err != nil {
				t.Errorf("prune: %v", err)
			}
			deleted <- n
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Two days old, a day and a half old, and fresh: retention is a day.
	for _, age := range []time.Duration{48 * time.Hour, 36 * time.Hour, time.Hour} {
		if _, err := m.Store().Append(ctx, Entry{User: "alice", Time: clk.now().Add(-age), Peer: "bob@example.com", XML: []byte("<message/>")}); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	timeout := time.After(10 * time.Second)
	for total < 2 {
		select {
		case n := <-deleted:
			total += n
		case <-timeout:
			t.Fatalf("pruned %d of 2 expired messages", total)
		}
	}
	res, err := m.Store().Query(ctx, "alice", Filter{}, Page{Max: 10})
	if err != nil || res.Count != 1 || !res.Items[0].Time.Equal(clk.now().Add(-time.Hour)) {
		t.Fatalf("after pruning: %+v %v", res, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for a running prune; a timer that fires afterwards
	// finds the module closed and leaves the store alone.
	drain := len(deleted)
	m.prune()
	if len(deleted) != drain {
		t.Fatal("a prune ran after Close")
	}
}

func TestNoRetentionNoPrune(t *testing.T) {
	cfg := testConfig()
	cfg.Retention = 0
	called := make(chan struct{}, 1)
	m, err := Open(context.Background(), Options{Config: cfg, DataDir: t.TempDir(), Log: quietLog(),
		PruneInterval: time.Millisecond, PruneDone: func(int64, error) { called <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.pruneTimer != nil {
		t.Fatal("a prune is scheduled although retention is 0 (keep forever)")
	}
}

func TestStampsNeverGoBack(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: t0}
	m, err := Open(context.Background(), Options{Config: testConfig(), DataDir: dir, Log: quietLog(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	a := m.stamp()
	clk.set(t0.Add(-time.Hour)) // the wall clock steps back
	b := m.stamp()
	clk.set(t0.Add(time.Second))
	c := m.stamp()
	if !a.Equal(t0) || !b.Equal(t0) || !c.Equal(t0.Add(time.Second)) {
		t.Fatalf("stamps %v %v %v", a, b, c)
	}
	if _, err := m.Store().Append(context.Background(), Entry{User: "alice", Time: c, Peer: "bob@example.com", XML: []byte("<message/>")}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	// After a restart with the clock behind, stamps continue from the newest.
	clk.set(t0.Add(-24 * time.Hour))
	m, err = Open(context.Background(), Options{Config: testConfig(), DataDir: dir, Log: quietLog(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if d := m.stamp(); !d.Equal(c) {
		t.Fatalf("stamp after restart %v, want %v", d, c)
	}
}

func TestOpenFailureLeavesArchivingOff(t *testing.T) {
	cfg := testConfig()
	// A directory where the file should be: the store cannot open.
	cfg.File = t.TempDir()
	m := New(cfg, t.TempDir(), nil, quietLog())
	defer m.Close()
	if m.Store() != nil {
		t.Fatal("a store despite the failure")
	}
}

func TestModuleDeleteUser(t *testing.T) {
	m, err := Open(context.Background(), Options{Config: testConfig(), DataDir: t.TempDir(), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Store().Append(ctx, Entry{User: "alice", Time: t0, Peer: "bob@example.com", XML: []byte("<message/>")}); err != nil {
		t.Fatal(err)
	}
	if err := m.Store().SetPrefs(ctx, "alice", Prefs{Default: DefaultNever}); err != nil {
		t.Fatal(err)
	}
	if p, err := m.loadPrefs(ctx, "alice"); err != nil || p.Default != DefaultNever {
		t.Fatalf("prefs %+v %v", p, err)
	}
	if err := m.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// A new account of the same name starts with an empty archive and the
	// configured default, not the cached preferences of the old one.
	if res, err := m.Store().Query(ctx, "alice", Filter{}, Page{Max: 5}); err != nil || res.Count != 0 {
		t.Fatalf("archive after delete: %+v %v", res, err)
	}
	if p, err := m.loadPrefs(ctx, "alice"); err != nil || p.Default != DefaultAlways {
		t.Fatalf("prefs after delete: %+v %v", p, err)
	}
}
