package s2s

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// queued is a stanza waiting for its link.
type queued struct {
	env *router.Envelope
	at  time.Time
}

// link is the outbound side of one (local, remote) domain pair: at most
// one stream, and a bounded queue of stanzas while that stream comes up.
// One goroutine (run) owns connecting and reading; Deliver only appends to
// the queue or writes into the stream's buffer.
type link struct {
	svc *Service
	pair
	log logrus.FieldLogger

	mu      sync.Mutex
	pending []queued
	out     *outStream // our own stream, once authenticated
	via     *inStream  // an inbound XEP-0288 stream usable instead
	running bool       // run owns the link
	lastUse time.Time
	wake    chan struct{} // shutdown or a bidi route: stop waiting
	dead    bool          // shut down: queue nothing more
	refused string        // policy closed the link: bounce with this
	lastErr string        // why the last attempt failed (status)
	retryAt time.Time     // when the next attempt is due (status)
}

func newLink(s *Service, p pair) *link {
	return &link{svc: s, pair: p, wake: make(chan struct{}, 1),
		log: s.log.WithFields(logrus.Fields{"local": p.local, "remote": p.remote})}
}

// deliver sends or queues env.
func (l *link) deliver(ctx context.Context, env *router.Envelope) error {
	l.mu.Lock()
	if l.dead {
		l.mu.Unlock()
		l.svc.bounce(ctx, env, l.remote, stanza.Bounce(env.Stanza, stanza.RemoteServerTimeout, "the server is shutting down"))
		return ErrShutdown
	}
	l.lastUse = time.Now()
	if c := l.senderLocked(); c != nil && len(l.pending) == 0 {
		l.mu.Unlock()
		if err := c.Send(env.Stanza); err == nil {
			return nil
		}
		// The stream died under us: the stanza waits for the next one.
		l.mu.Lock()
		l.dropSenderLocked(c)
	}
	if len(l.pending) >= l.svc.cfg.QueueSize {
		l.mu.Unlock()
		l.svc.bounce(ctx, env, l.remote, stanza.Bounce(env.Stanza, stanza.ResourceConstraint,
			"too many stanzas are waiting for the connection to "+l.remote))
		return fmt.Errorf("%w: %s", ErrQueueFull, l.remote)
	}
	l.pending = append(l.pending, queued{env: env, at: time.Now()})
	start := !l.running && l.via == nil
	if start {
		l.running = true
	}
	l.mu.Unlock()
	if start && !l.svc.goTracked(l.run) {
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
		l.bounceAll(stanza.RemoteServerTimeout, "the server is shutting down")
	}
	return nil
}

// senderLocked returns the connection stanzas go out on, or nil.
func (l *link) senderLocked() *conn.Conn {
	if l.out != nil {
		return l.out.c
	}
	if l.via != nil {
		return l.via.c
	}
	return nil
}

func (l *link) dropSenderLocked(c *conn.Conn) {
	if l.via != nil && l.via.c == c {
		l.via = nil
	}
}

// run connects (with backoff) while stanzas are queued, flushes the queue
// into the stream and reads the stream until it ends; then again if more
// stanzas queued meanwhile.
func (l *link) run() {
	defer l.svc.dropLink(l)
	backoff := l.svc.cfg.BackoffMin
	for {
		if l.stopIfEmpty() {
			return
		}
		ctx, cancel := context.WithTimeout(l.svc.ctx, l.svc.cfg.ConnectTimeout)
		out, err := l.svc.dial(ctx, l.local, l.remote, nil)
		cancel()
		if err == nil {
			if err = l.up(out); err != nil {
				_ = out.c.Close()
			}
		}
		if err != nil {
			cond, text := failureCondition(l.remote, err)
			l.log.WithError(err).Info("s2s link failed")
			l.mu.Lock()
			l.lastErr, l.retryAt = errText(err), time.Now().Add(backoff)
			l.mu.Unlock()
			if permanent(err) {
				l.bounceAll(cond, text)
				continue
			}
			l.expire(time.Now(), cond, text)
			if !l.waitRetry(backoff) {
				l.bounceAll(stanza.RemoteServerTimeout, "the server is shutting down")
				return
			}
			backoff = min(2*backoff, l.svc.cfg.BackoffMax)
			continue
		}
		backoff = l.svc.cfg.BackoffMin
		l.mu.Lock()
		l.lastErr, l.retryAt = "", time.Time{}
		l.mu.Unlock()
		reason := out.serve(l.svc.ctx)
		l.down(out, reason)
	}
}

// stopIfEmpty ends run when nothing waits (or a bidi route took over).
func (l *link) stopIfEmpty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 || l.via != nil || l.dead {
		l.running = false
		l.lastErr, l.retryAt = "", time.Time{} // a later run starts afresh
		return true
	}
	return false
}

// up makes out the link's stream: the observer is told, the queue is
// flushed in order, and only then do new stanzas go straight to it.
func (l *link) up(out *outStream) error {
	info := out.info()
	if o := l.svc.getObserver(); o != nil {
		if err := o.LinkUp(l.svc.ctx, info); err != nil {
			out.c.CloseStream("internal-server-error", "the link could not be recorded")
			return fmt.Errorf("%w: link-up not recorded: %w", errPermanent, err)
		}
	}
	out.c.StartWriter()
	l.log.WithFields(logrus.Fields{"method": out.method, "tls": out.tlsVersion, "peer": out.target.String(), "bidi": out.bidi}).Info("s2s link up")
	for {
		l.mu.Lock()
		batch := l.pending
		l.pending = nil
		if len(batch) == 0 {
			l.out = out
			l.lastUse = time.Now()
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		for i, q := range batch {
			if err := out.c.Send(q.env.Stanza); err != nil {
				// Put back what was not written; the stream is gone.
				l.mu.Lock()
				l.pending = append(batch[i:], l.pending...)
				l.mu.Unlock()
				return fmt.Errorf("s2s: flushing the queue: %w", err)
			}
		}
	}
}

// down takes the link's stream away after its read loop ended.
func (l *link) down(out *outStream, reason string) {
	l.mu.Lock()
	if l.out == out {
		l.out = nil
	}
	l.mu.Unlock()
	l.log.WithField("reason", reason).Info("s2s link down")
	if o := l.svc.getObserver(); o != nil {
		o.LinkDown(context.WithoutCancel(l.svc.ctx), out.info(), reason)
	}
}

// waitRetry waits d (shortened to the oldest stanza's deadline) or until
// woken; false at shutdown.
func (l *link) waitRetry(d time.Duration) bool {
	l.mu.Lock()
	if len(l.pending) > 0 {
		if until := time.Until(l.pending[0].at.Add(l.svc.cfg.QueueTimeout)); until < d {
			d = max(until, 0)
		}
	}
	l.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.wake:
		l.mu.Lock()
		defer l.mu.Unlock()
		return !l.dead
	case <-l.svc.ctx.Done():
		return false
	}
}

// expire bounces the stanzas that waited past QueueTimeout.
func (l *link) expire(now time.Time, cond stanza.Condition, text string) {
	l.mu.Lock()
	n := 0
	for n < len(l.pending) && now.Sub(l.pending[n].at) >= l.svc.cfg.QueueTimeout {
		n++
	}
	old := l.pending[:n:n]
	l.pending = l.pending[n:]
	l.mu.Unlock()
	l.bounce(old, cond, text)
}

// bounceAll bounces everything queued.
func (l *link) bounceAll(cond stanza.Condition, text string) {
	l.mu.Lock()
	old := l.pending
	l.pending = nil
	l.mu.Unlock()
	l.bounce(old, cond, text)
}

func (l *link) bounce(qs []queued, cond stanza.Condition, text string) {
	ctx := context.WithoutCancel(l.svc.ctx)
	for _, q := range qs {
		l.svc.bounce(ctx, q.env, l.remote, stanza.Bounce(q.env.Stanza, cond, text))
	}
}

// info describes the link while it is up.
func (l *link) info() (LinkInfo, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.out == nil {
		return LinkInfo{}, false
	}
	i := l.out.info()
	i.Queue = len(l.pending)
	return i, true
}

// status describes the link for Links: up, or waiting for a connection
// with stanzas queued; false when there is nothing to show.
func (l *link) status() (LinkInfo, bool) {
	if i, ok := l.info(); ok {
		return i, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 || l.via != nil {
		return LinkInfo{}, false
	}
	i := LinkInfo{Local: l.local, Remote: l.remote, Direction: "out", Queue: len(l.pending), Since: l.pending[0].at,
		State: StateConnecting}
	i.LastError = l.lastErr
	if l.lastErr != "" && time.Now().Before(l.retryAt) {
		i.State, i.Retry = StateRetrying, l.retryAt
	}
	return i, true
}

// idle reports an unused link (for dropLink).
func (l *link) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.running && l.out == nil && l.via == nil && len(l.pending) == 0
}

// closeIfIdle closes the stream when nothing went out for idle.
func (l *link) closeIfIdle(now time.Time, idle time.Duration) {
	l.mu.Lock()
	out := l.out
	if out == nil || now.Sub(l.lastUse) < idle {
		l.mu.Unlock()
		return
	}
	l.out = nil // new stanzas queue and reconnect instead of racing the close
	l.mu.Unlock()
	l.log.Debug("closing idle s2s link")
	out.c.CloseStream("", "")
}

// refuse closes the link because policy no longer allows the remote
// domain; what is queued bounces.
func (l *link) refuse(why string) {
	l.mu.Lock()
	out := l.out
	l.out = nil
	l.mu.Unlock()
	if out != nil {
		out.c.CloseStream("policy-violation", why)
	}
	l.bounceAll(stanza.NotAllowed, why)
}

// shutdown closes the stream with system-shutdown and stops run.
func (l *link) shutdown() {
	l.mu.Lock()
	l.dead = true
	out := l.out
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if out != nil {
		out.c.CloseStream("system-shutdown", "the server is shutting down")
	}
	l.bounceAll(stanza.RemoteServerTimeout, "the server is shutting down")
}

// kill drops the connection at once (shutdown deadline passed).
func (l *link) kill() {
	l.mu.Lock()
	out := l.out
	l.mu.Unlock()
	if out != nil {
		_ = out.c.Close()
	}
}

// setVia installs (or, with nil, removes) an inbound bidi stream as the
// link's way out; queued stanzas go out on it at once.
func (l *link) setVia(st *inStream) {
	l.mu.Lock()
	if st == nil {
		l.via = nil
		start := len(l.pending) > 0 && !l.running && !l.dead
		if start {
			l.running = true
		}
		l.mu.Unlock()
		if start && !l.svc.goTracked(l.run) {
			l.mu.Lock()
			l.running = false
			l.mu.Unlock()
		}
		return
	}
	batch := l.pending
	l.pending = nil
	if l.out == nil {
		l.via = st
	}
	l.mu.Unlock()
	select { // a run waiting to retry stops: the bidi stream serves
	case l.wake <- struct{}{}:
	default:
	}
	for _, q := range batch {
		_ = st.c.Send(q.env.Stanza)
	}
}

// errPermanent marks failures that retrying will not fix soon: the
// queue bounces at once instead of waiting for QueueTimeout.
var errPermanent = errors.New("s2s: permanent failure")

func permanent(err error) bool { return errors.Is(err, errPermanent) }

// failureCondition picks the bounce condition of a failed link (RFC 6120
// §8.3.3.16-17): a peer that could not be resolved or refused the
// connection is remote-server-not-found (cancel); one that was reached but
// whose stream did not come up (it failed, or did not answer within
// s2s.connect_timeout) is remote-server-timeout (wait).
func failureCondition(remote string, err error) (stanza.Condition, string) {
	var de *dialError
	if errors.As(err, &de) && (de.hadStream || errors.Is(err, errTimedOut)) {
		return stanza.RemoteServerTimeout, "the connection to " + remote + " failed: " + de.Error()
	}
	return stanza.RemoteServerNotFound, "the server of " + remote + " could not be reached: " + errText(err)
}

func errText(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		return de.Error()
	}
	return err.Error()
}
