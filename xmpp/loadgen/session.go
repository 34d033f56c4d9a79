package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// UserName is prefix + index: the bench accounts are prefix0 … prefixN-1.
func UserName(prefix string, i int) string { return prefix + strconv.Itoa(i) }

// userIndex parses the index back out of a JID's localpart, -1 if it is
// not one of prefix's accounts.
func userIndex(jid []byte, prefix string) int {
	if k := bytes.IndexByte(jid, '@'); k >= 0 {
		jid = jid[:k]
	} else {
		return -1
	}
	if !bytes.HasPrefix(jid, []byte(prefix)) {
		return -1
	}
	n, err := strconv.Atoi(string(jid[len(prefix):]))
	if err != nil {
		return -1
	}
	return n
}

// Contacts returns user i's contacts among n users: its degree nearest
// neighbours on a ring (i±1 … i±degree/2), so every roster is mutual and
// every user has exactly degree contacts. degree must be even and < n.
func Contacts(i, n, degree int) []int {
	out := make([]int, 0, degree)
	for d := 1; d <= degree/2; d++ {
		out = append(out, (i+d)%n, (i-d+n)%n)
	}
	return out
}

func checkDegree(n, degree int) error {
	if degree < 0 || degree%2 != 0 {
		return fmt.Errorf("loadgen: roster degree %d must be even and ≥ 0", degree)
	}
	if degree >= n {
		return fmt.Errorf("loadgen: roster degree %d needs more than %d users", degree, n)
	}
	return nil
}

// serve reads c until it fails, answering the server's iq get/set (ping,
// roster pushes) and handing every element to h on this goroutine.
func serve(c *Conn, h func(Elem)) error {
	for {
		el, err := c.Next()
		if err != nil {
			return err
		}
		if el.Is("iq") {
			typ, _ := el.Attr("type")
			if string(typ) == "get" || string(typ) == "set" {
				id := el.AttrString("id")
				from := el.AttrString("from")
				to := ""
				if from != "" {
					to = ` to='` + escape(from) + `'`
				}
				var reply string
				if string(typ) == "set" && bytes.Contains(el.Raw, []byte("jabber:iq:roster")) ||
					bytes.Contains(el.Raw, []byte("urn:xmpp:ping")) {
					reply = `<iq type='result' id='` + escape(id) + `'` + to + `/>`
				} else {
					reply = `<iq type='error' id='` + escape(id) + `'` + to + `><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`
				}
				if err := c.WriteString(reply); err != nil {
					return err
				}
			}
		}
		if el.Is("error") && bytes.HasPrefix(el.Name(), []byte("stream")) {
			return fmt.Errorf("loadgen: stream error from server: %s", clip(el.Raw))
		}
		h(el)
	}
}

// fleet is a set of logged-in connections with reader goroutines.
type fleet struct {
	conns []*Conn
	wg    sync.WaitGroup
	mu    sync.Mutex
	errs  []error
}

// dialAll logs n users in with at most conc logins at a time; login(i)
// returns the connection for user i. It stops at the first failure.
func dialAll(ctx context.Context, n, conc int, login func(ctx context.Context, i int) (*Conn, error)) ([]*Conn, error) {
	if conc <= 0 {
		conc = 1
	}
	conns := make([]*Conn, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < conc && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := login(ctx, i)
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("user %d: %w", i, err); cancel() })
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		for _, c := range conns {
			if c != nil {
				_ = c.Abort()
			}
		}
		return nil, firstErr
	}
	return conns, nil
}

// start runs serve on every connection with handler h(i, el).
func (f *fleet) start(h func(i int, el Elem)) {
	for i, c := range f.conns {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			err := serve(c, func(el Elem) { h(i, el) })
			if err != nil && !isClosed(err) {
				f.mu.Lock()
				f.errs = append(f.errs, fmt.Errorf("%s: %w", c.JID, err))
				f.mu.Unlock()
			}
		}()
	}
}

// closeAll ends every stream and waits for the readers.
func (f *fleet) closeAll() {
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.wg.Wait()
}

// errors returns the reader errors seen so far (at most 5 are listed).
func (f *fleet) readErrors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for i, e := range f.errs {
		if i == 5 {
			out = append(out, fmt.Sprintf("… and %d more", len(f.errs)-5))
			break
		}
		out = append(out, e.Error())
	}
	return out
}

func isClosed(err error) bool {
	if errors.Is(err, ErrStreamClosed) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "use of closed network connection") || strings.Contains(s, "EOF") ||
		strings.Contains(s, "connection reset")
}

// closeOnDone aborts every connection when ctx ends, unblocking readers
// and writers; call the returned func to stop watching.
func closeOnDone(ctx context.Context, conns []*Conn) func() bool {
	return context.AfterFunc(ctx, func() {
		for _, c := range conns {
			_ = c.Abort()
		}
	})
}

// waitUntil polls cond every 20 ms until it holds, ctx ends or the
// deadline passes; it reports whether cond held.
func waitUntil(ctx context.Context, deadline time.Time, cond func() bool) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}

// bareFrom returns the bare JID of an element's 'from'.
func bareFrom(el Elem) []byte {
	f, _ := el.Attr("from")
	if k := bytes.IndexByte(f, '/'); k >= 0 {
		f = f[:k]
	}
	return f
}

// rosterItems calls f(jid, subscription) for each item in a roster
// result or push.
func rosterItems(el Elem, f func(jid, sub []byte)) {
	q, ok := el.Child("query")
	if !ok {
		return
	}
	q.Children(func(it Elem) {
		if !it.Is("item") {
			return
		}
		j, _ := it.Attr("jid")
		s, _ := it.Attr("subscription")
		f(j, s)
	})
}

// presenceAvailable reports whether el is an available presence.
func presenceAvailable(el Elem) bool {
	if !el.Is("presence") {
		return false
	}
	t, ok := el.Attr("type")
	return !ok || len(t) == 0
}

// Sizing bounds shared by the scenarios.
const (
	maxUsers  = 100000
	maxLogins = 10000000
)

func checkCount(what string, n, lo, hi int) error {
	if n < lo || n > hi {
		return fmt.Errorf("loadgen: %s %d out of range [%d, %d]", what, n, lo, hi)
	}
	return nil
}
