package archive

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/xmpp/router"
)

func benchArchive(b *testing.B, syncNormal bool) *Archive {
	b.Helper()
	dir := b.TempDir()
	a, err := Open(context.Background(), Options{Path: filepath.Join(dir, "archive.db"), AnchorPath: filepath.Join(dir, "archive.anchor"), SyncNormal: syncNormal})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// BenchmarkAppend measures sustained commit throughput with group commit:
// many goroutines append chat-sized stanza records (as concurrent
// crossings do); each waits until its row is durable. rows/s is the
// figure in docs/performance.md.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name       string
		syncNormal bool
		writers    int
	}{
		{"sync=full/writers=1", false, 1},
		{"sync=full/writers=64", false, 64},
		{"sync=full/writers=512", false, 512},
		{"sync=normal/writers=512", true, 512},
	} {
		b.Run(c.name, func(b *testing.B) {
			a := benchArchive(b, c.syncNormal)
			rec := msg("alice@example.com", "bob@partner.example", "Can you send me the revised figures for the third quarter before Friday?")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			var wg sync.WaitGroup
			per := b.N / c.writers
			rest := b.N % c.writers
			for w := range c.writers {
				n := per
				if w < rest {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						if _, err := a.Append(ctx, rec); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
			// CPU time of the whole process per row: unlike rows/s it
			// hardly moves when other processes compete for the CPUs.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/row")
		})
	}
}

// BenchmarkCrossingLatency offers crossings at a fixed rate through the
// recording Boundary (policy: pass-through) and reports the latency each
// crossing paid for its record: p50 and p99 in ms. b.N is the number of
// crossings; they arrive every 1/rate regardless of how long earlier ones
// take (an open-loop load, as independent users produce).
func BenchmarkCrossingLatency(b *testing.B) {
	for _, c := range []struct {
		syncNormal bool
		rate       int
	}{{false, 1000}, {false, 5000}, {false, 20000}, {true, 5000}, {true, 20000}} {
		mode := "full"
		if c.syncNormal {
			mode = "normal"
		}
		rate := c.rate
		b.Run(fmt.Sprintf("sync=%s/rate=%d", mode, rate), func(b *testing.B) {
			a := benchArchive(b, c.syncNormal)
			bd := NewBoundary(nil, a, BoundaryOptions{})
			raw := `<message xmlns='jabber:client' from='alice@example.com/laptop' to='bob@partner.example' type='chat' id='x'><body>Can you send me the revised figures for the third quarter before Friday?</body></message>`
			st := parseStanza(b, raw)
			ctx := context.Background()
			lat := make([]time.Duration, b.N)
			interval := time.Second / time.Duration(rate)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					env := &router.Envelope{Seq: uint64(i + 1), Stanza: st,
						Src: router.Endpoint{Zone: router.ZoneLocal, Domain: "example.com", Conn: 1},
						Dst: router.Endpoint{Zone: router.ZoneRemote, Domain: "partner.example"}}
					t0 := time.Now()
					dec, err := bd.Cross(ctx, env)
					lat[i] = time.Since(t0)
					if err != nil || dec.Verdict != router.Allow {
						b.Errorf("crossing %d: %+v %v", i, dec, err)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "crossings/s")
		})
	}
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
