package muc

import (
	"context"
	"sync"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// maxParallelOutside bounds the goroutines one batch uses for copies to
// addresses outside the local zone.
const maxParallelOutside = 16

// sendBatch routes a batch of a room's stanzas. Local copies go out one
// after the other on this goroutine (delivery only enqueues). A copy for
// an address outside the local zone waits for the boundary (policy and
// the compliance archive's commit), so those go out in parallel, one
// goroutine per recipient at a time: each recipient still gets its
// stanzas in order, and the crossings of one message share the archive's
// group commit instead of waiting for one commit each. The batch is done
// when sendBatch returns, so the next batch cannot overtake it.
func (s *Service) sendBatch(ctx context.Context, out []*stanza.Stanza) {
	var outside map[string][]*stanza.Stanza
	var order []string
	for _, st := range out {
		if s.bus.ZoneOf(st.To.Domainpart()) == router.ZoneLocal {
			s.send(ctx, st)
			continue
		}
		if outside == nil {
			outside = make(map[string][]*stanza.Stanza)
		}
		k := st.To.String()
		if _, ok := outside[k]; !ok {
			order = append(order, k)
		}
		outside[k] = append(outside[k], st)
	}
	switch len(order) {
	case 0:
		return
	case 1:
		for _, st := range outside[order[0]] {
			s.send(ctx, st)
		}
		return
	}
	work := make(chan []*stanza.Stanza)
	var wg sync.WaitGroup
	for range min(len(order), maxParallelOutside) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for list := range work {
				for _, st := range list {
					s.send(ctx, st)
				}
			}
		}()
	}
	for _, k := range order {
		work <- outside[k]
	}
	close(work)
	wg.Wait()
}
