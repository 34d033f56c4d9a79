package c2s

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
)

// nsSM is XEP-0198 stream management.
const nsSM = "urn:xmpp:sm:3"

// SMConfig configures XEP-0198 stream management.
type SMConfig struct {
	Enabled bool
	// ResumeTimeout is how long a session whose connection dropped waits
	// to be resumed; 0 offers acknowledgements without resumption.
	ResumeTimeout time.Duration
	// MaxUnacked bounds the stanzas kept for a client that does not
	// acknowledge them (and those queued while it is away); past it the
	// session ends and they are re-routed. 0 means no bound.
	MaxUnacked int
	// RequestEvery: the server asks for an ack once this many stanzas are
	// unacknowledged (and on every keepalive tick while any are).
	RequestEvery int
}

var (
	smRequest = []byte(`<r xmlns='urn:xmpp:sm:3'/>`)
	// errResume marks failures of <resume/> that end the new stream.
	errResume = errors.New("c2s: resumption failed")
)

type linkState uint8

const (
	attached linkState = iota // a stream serves the session
	detached                  // the connection dropped; waiting to be resumed
	ended                     // the session is over
)

// link is a bound session's end of the client connection: the
// sessions.Sender the session table holds. It outlives one TCP connection
// when the session is resumable (XEP-0198), and it holds back unimportant
// stanzas while the client is inactive (XEP-0352).
//
// Lock order: link.mu, then Server.mu or the session table, then the
// connection's send lock. Nothing called under a connection's lock calls
// back into a link, so the fast path (an attached, active session) takes
// only the connection's lock.
type link struct {
	srv  *Server
	sess *sessions.Session
	ctx  context.Context
	host string
	log  logrus.FieldLogger // of the first stream; the JID is what matters

	cur      atomic.Pointer[conn.Conn] // the connection Send writes to
	inactive atomic.Bool               // XEP-0352 state; Send's fast path reads it
	smOn     atomic.Bool               // stream management is on: failed sends are kept
	inH      atomic.Uint32             // stanzas handled from the client (XEP-0198 h)

	mu     sync.Mutex
	owner  *Stream // the stream serving the session; a replaced one must not end it
	state  linkState
	gen    uint64 // counts detaches, so a stale expiry timer does nothing
	timer  *time.Timer
	smID   string        // resumption id; "" when not resumable
	resume time.Duration // agreed resumption timeout
	acks   *conn.Acks    // while detached: the stanzas the client never acknowledged
	parked []conn.Unacked
	held   []conn.Unacked // XEP-0352: held while inactive, oldest first
	heldBy map[string]int // dedupe key → index in held
}

func newLink(ctx context.Context, st *Stream) *link {
	l := &link{srv: st.srv, ctx: ctx, host: st.host, owner: st, log: st.log}
	l.cur.Store(st.c)
	return l
}

// Queued is the session's outbound queue: stanzas waiting to be written,
// plus those held while the client is inactive (XEP-0352).
func (l *link) Queued() int {
	n := 0
	if c := l.cur.Load(); c != nil {
		n = c.Queued()
	}
	l.mu.Lock()
	n += len(l.held)
	l.mu.Unlock()
	return n
}

// Send implements sessions.Sender.
func (l *link) Send(s *stanza.Stanza) error {
	if l.inactive.Load() {
		if done, err := l.sendInactive(s); done {
			return err
		}
	}
	c := l.cur.Load()
	err := c.Send(s)
	if err == nil || !l.smOn.Load() {
		return err
	}
	return l.sendFailed(c, s)
}

// sendFailed handles a stanza the connection refused on a session with
// stream management: it is kept for resumption, sent on the connection
// that has replaced c, or re-routed when the session is over.
func (l *link) sendFailed(c *conn.Conn, s *stanza.Stanza) error {
	for {
		l.mu.Lock()
		if l.state == ended {
			l.mu.Unlock()
			l.reroute(l.ctx, conn.Unacked{Stanza: s, Queued: time.Now()})
			return nil
		}
		if cur := l.cur.Load(); cur != c {
			// Resumed on another connection meanwhile.
			l.mu.Unlock()
			if err := cur.Send(s); err == nil {
				return nil
			}
			c = cur
			continue
		}
		l.park(s)
		l.mu.Unlock()
		return nil
	}
}

// sendLocked sends with l.mu held (CSI flushes, which must not be
// overtaken). l.state is not ended.
func (l *link) sendLocked(s *stanza.Stanza) error {
	if l.state == detached {
		l.park(s)
		return nil
	}
	err := l.cur.Load().Send(s)
	if err != nil && l.smOn.Load() {
		l.park(s)
		return nil
	}
	return err
}

// park keeps a stanza for a session whose connection is gone. l.mu is held.
func (l *link) park(s *stanza.Stanza) {
	l.parked = append(l.parked, conn.Unacked{Stanza: s, Queued: time.Now()})
	if l.state != detached {
		return // the dying stream's end() decides what happens next
	}
	n := len(l.parked)
	if l.acks != nil {
		n += l.acks.Len()
	}
	if max := l.srv.cfg.SM.MaxUnacked; max > 0 && n > max {
		// Someone floods an absent client: stop waiting for it.
		gen := l.gen
		go func() {
			if l.endIf(func() bool { return l.state == detached && l.gen == gen }, nil, nil) {
				l.log.WithField("jid", l.sess.JID.String()).Info("session ended: too many stanzas queued while waiting for resumption")
			}
		}()
	}
}

// Close implements sessions.Sender: it ends the stream with a stream
// error, or the session at once if it is waiting to be resumed.
func (l *link) Close(cond, text string) {
	l.mu.Lock()
	state, gen := l.state, l.gen
	c := l.cur.Load()
	l.mu.Unlock()
	switch state {
	case attached:
		c.CloseStream(cond, text)
	case detached:
		if l.endIf(func() bool { return l.state == detached && l.gen == gen }, nil, nil) {
			l.log.WithFields(logrus.Fields{"jid": l.sess.JID.String(), "condition": cond}).Info("detached session ended: " + text)
		}
	}
}

// endIf ends the session if cond (called with l.mu held) still holds:
// the session leaves the table, the stanzas the client never acknowledged
// (and those held or queued for it) are re-routed, and only then is the
// session announced as ended, so the unavailable broadcast comes last.
// The stanzas are those of a (a connection's accounting already taken),
// of c (a connection that just closed: taken here, under l.mu, so a
// concurrent resumption cannot take them first) and those the link holds.
func (l *link) endIf(cond func() bool, c *conn.Conn, a *conn.Acks) bool {
	l.mu.Lock()
	if l.state == ended || !cond() {
		l.mu.Unlock()
		return false
	}
	var fromConn *conn.Acks
	if c != nil {
		fromConn = c.DetachAcks()
	}
	l.state = ended
	l.inactive.Store(false)
	if l.timer != nil {
		l.timer.Stop()
	}
	// Under l.mu, so a Send that finds the session ended can re-route to
	// the bare JID without finding this session again.
	l.srv.table.Remove(l.sess)
	l.srv.forgetSM(l.smID)
	var out []conn.Unacked
	for _, x := range []*conn.Acks{a, fromConn, l.acks} {
		if x != nil {
			out = append(out, x.Drain()...)
		}
	}
	out = append(out, l.parked...)
	out = append(out, l.takeHeld()...)
	l.acks, l.parked = nil, nil
	resumable := l.smID != ""
	l.mu.Unlock()
	for _, u := range out {
		l.reroute(l.ctx, u)
	}
	l.srv.life.SessionEnded(l.ctx, l.sess)
	if resumable {
		l.srv.smChanged()
	}
	return true
}

// detach keeps the session for resumption after its connection dropped.
// l.mu is held; a is the dead connection's accounting.
func (l *link) detach(a *conn.Acks) {
	l.state = detached
	l.acks = a
	l.gen++
	gen := l.gen
	l.timer = time.AfterFunc(l.resume, func() {
		if l.endIf(func() bool { return l.state == detached && l.gen == gen }, nil, nil) {
			l.log.WithField("jid", l.sess.JID.String()).Info("session ended: not resumed in time")
		}
	})
	n := len(l.parked)
	if a != nil {
		n += a.Len()
	}
	if max := l.srv.cfg.SM.MaxUnacked; max > 0 && n > max {
		l.timer.Reset(0)
	}
}

// reroute disposes of a stanza the client never acknowledged, for a
// session that is over: messages go to the account again (another
// resource or offline storage) unless another resource already has them,
// requests are answered with an error, presence is dropped (the contact's
// state is re-sent on the next login).
func (l *link) reroute(ctx context.Context, u conn.Unacked) {
	s := u.Stanza
	src := router.Endpoint{Zone: router.ZoneLocal, Domain: l.host}
	switch s.Kind {
	case stanza.KindIQ:
		if s.IsRequest() {
			if reply := stanza.Bounce(s, stanza.ServiceUnavailable, "the recipient's session ended"); reply != nil {
				_ = l.srv.router.Route(ctx, &router.Envelope{Stanza: reply, Src: src})
			}
		}
		return
	case stanza.KindMessage:
	default:
		return
	}
	switch s.Type {
	case "error", "groupchat", "headline":
		// Errors need no answer; room messages are in the room's history
		// and archive; headlines are ephemeral (RFC 6121 §8.5.2.1.1).
		return
	}
	if _, chatState := holdKey(s); chatState {
		return // a stale chat state is noise (XEP-0085 §5.5)
	}
	if isCopy(s) || l.deliveredElsewhere(s, u.Queued) {
		return
	}
	// Routing to the original address lets the message module apply
	// RFC 6121 (a full JID without a session falls back to the bare JID).
	_ = l.srv.router.Route(ctx, &router.Envelope{Stanza: l.delayed(s, u.Queued), Src: src})
}

// isCopy reports a message that is itself a copy of one kept elsewhere:
// carbons (XEP-0280) and archive results (XEP-0313).
func isCopy(s *stanza.Stanza) bool {
	for _, e := range s.Elements() {
		switch e.Name.Space {
		case nsCarbons:
			return true
		case "urn:xmpp:mam:2", "urn:xmpp:mam:1", "urn:xmpp:mam:0":
			if e.Name.Local == "result" {
				return true
			}
		}
	}
	return false
}

const (
	nsCarbons = "urn:xmpp:carbons:2"
	nsHints   = "urn:xmpp:hints"
)

// deliveredElsewhere reports whether another resource of the account
// already got s when it was queued here: a message to the bare JID went to
// every available resource of non-negative priority, and carbon-enabled
// resources got a copy of an eligible one (XEP-0280 §6, as the message
// module applies it). Re-sending would show it twice there.
func (l *link) deliveredElsewhere(s *stanza.Stanza, queued time.Time) bool {
	bare := s.To.Resourcepart() == ""
	carbon := carbonEligible(s)
	if !bare && !carbon {
		return false
	}
	for _, o := range l.srv.table.Resources(l.sess.JID) {
		if o == l.sess || o.Info.Started.After(queued) {
			continue
		}
		if bare && o.Available() && o.Priority() >= 0 {
			return true
		}
		if carbon && o.Carbons() {
			return true
		}
	}
	return false
}

func carbonEligible(s *stanza.Stanza) bool {
	if s.Child(nsCarbons, "private") != nil || s.Child(nsHints, "no-copy") != nil {
		return false
	}
	switch s.Type {
	case "chat":
		return true
	case "", "normal":
		return s.Child("", "body") != nil
	}
	return false
}

// delayed returns s stamped with when the server first tried to deliver it
// (XEP-0203), leaving s itself untouched: it may be shared with other
// sessions. A stanza that already carries a stamp (offline storage) keeps
// it, being the more accurate one.
func (l *link) delayed(s *stanza.Stanza, queued time.Time) *stanza.Stanza {
	if s.Kind == stanza.KindIQ || s.Child(stanza.NSDelay, "delay") != nil {
		return s
	}
	d := stanza.NewElement(stanza.NSDelay, "delay", "from", l.host, "stamp", queued.UTC().Format("2006-01-02T15:04:05.000Z"))
	return s.ShallowCopy().Append(d)
}

// smNonza handles the XEP-0198 elements on a bound stream.
func (st *Stream) smNonza(el *stanza.Element) error {
	l := st.link
	switch el.Name.Local {
	case "enable":
		if st.smOn {
			st.smFailed(stanza.UnexpectedRequest, "stream management is already enabled")
			return nil
		}
		st.enable(el)
	case "r":
		if st.smOn {
			_ = st.c.SendRaw([]byte(`<a xmlns='urn:xmpp:sm:3' h='` + strconv.FormatUint(uint64(l.inH.Load()), 10) + `'/>`))
		}
	case "a":
		if !st.smOn {
			return nil
		}
		h, err := strconv.ParseUint(el.AttrValue("h"), 10, 32)
		if err != nil {
			return streamErr("bad-format", "the 'h' attribute must be a number below 2^32")
		}
		if sent, err := st.c.Ack(uint32(h)); err != nil {
			return tooHigh(uint32(h), sent)
		}
	case "resume":
		st.smFailed(stanza.UnexpectedRequest, "resume before binding a resource")
	default:
		st.smFailed(stanza.FeatureNotImplemented, "")
	}
	return nil
}

func tooHigh(h, sent uint32) error {
	return &streamError{cond: "undefined-condition", text: "acknowledged more stanzas than were sent",
		app: stanza.NewElement(nsSM, "handled-count-too-high", "h", strconv.FormatUint(uint64(h), 10),
			"send-count", strconv.FormatUint(uint64(sent), 10))}
}

func (st *Stream) smFailed(cond stanza.Condition, text string) {
	b := []byte(`<failed xmlns='urn:xmpp:sm:3'><` + string(cond) + ` xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	if text != "" {
		t := stanza.NewElement(stanza.NSStanzaErr, "text")
		t.AppendText(text)
		b = t.AppendXML(b, "", "")
	}
	b = append(b, "</failed>"...)
	_ = st.c.SendRaw(b)
}

// enable turns stream management on (XEP-0198 §3).
func (st *Stream) enable(el *stanza.Element) {
	l := st.link
	cfg := st.srv.cfg.SM
	enabled := []byte(`<enabled xmlns='urn:xmpp:sm:3'`)
	wantResume := el.AttrValue("resume") == "true" || el.AttrValue("resume") == "1"
	resume := time.Duration(0)
	id := ""
	if wantResume && cfg.ResumeTimeout > 0 {
		resume = cfg.ResumeTimeout
		if m, err := strconv.ParseUint(el.AttrValue("max"), 10, 32); err == nil && m > 0 && time.Duration(m)*time.Second < resume {
			resume = time.Duration(m) * time.Second
		}
		id = newSMID()
		secs := int64((resume + time.Second - 1) / time.Second)
		enabled = append(enabled, ` id='`+id+`' resume='true' max='`+strconv.FormatInt(secs, 10)+`'`...)
	}
	enabled = append(enabled, "/>"...)
	l.mu.Lock()
	l.smID, l.resume = id, resume
	l.mu.Unlock()
	// Set before counting starts: a Send that fails from now on is kept.
	l.smOn.Store(true)
	if err := st.c.AttachAcks(conn.NewAcks(cfg.MaxUnacked, cfg.RequestEvery, smRequest), enabled); err != nil {
		return // the stream is closing; end() takes over
	}
	st.smOn = true
	if id != "" {
		st.srv.rememberSM(id, l)
	}
}

func newSMID() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// resume takes over a detached (or not yet noticed dead) session on this
// new stream (XEP-0198 §5). It returns false after answering <failed/> so
// the client can bind instead.
func (st *Stream) resume(el *stanza.Element) (bool, error) {
	id := el.AttrValue("previd")
	h, err := strconv.ParseUint(el.AttrValue("h"), 10, 32)
	if err != nil {
		st.smFailed(stanza.BadRequest, "the 'h' attribute must be a number below 2^32")
		return false, nil
	}
	l := st.srv.lookupSM(id)
	user, _ := jid.New(st.user, st.host, "")
	if l == nil || l.sess.JID.Localpart() != user.Localpart() || l.host != st.host {
		// Another account's id is as unknown as an expired one.
		st.smFailed(stanza.ItemNotFound, "")
		return false, nil
	}
	l.mu.Lock()
	var a *conn.Acks
	if l.srv.table.Get(l.sess.JID) != l.sess || (l.state == attached && l.owner.c.StreamClosed()) {
		// Replaced by a new bind, or being closed by the server (conflict,
		// shutdown, a stream error): it is ending, not resumable.
		l.mu.Unlock()
		st.smFailed(stanza.ItemNotFound, "")
		return false, nil
	}
	switch l.state {
	case attached:
		// The client saw the old connection die before we did: it has
		// moved on, so drop it without waiting for its output.
		old := l.owner
		l.owner = st
		_ = old.c.Close()
		a = old.c.DetachAcks()
	case detached:
		l.timer.Stop()
		a, l.acks = l.acks, nil
	default:
		l.mu.Unlock()
		st.smFailed(stanza.ItemNotFound, "")
		return false, nil
	}
	l.owner = st
	l.state = attached
	l.gen++
	if a == nil {
		a = conn.NewAcks(st.srv.cfg.SM.MaxUnacked, st.srv.cfg.SM.RequestEvery, smRequest)
	}
	if err := a.Ack(uint32(h)); err != nil {
		sent := a.Sent()
		l.mu.Unlock()
		// The client's count cannot be trusted: end the session, which
		// re-routes everything not acknowledged.
		l.endIf(func() bool { return true }, nil, a)
		return false, tooHigh(uint32(h), sent)
	}
	raw := []byte(`<resumed xmlns='urn:xmpp:sm:3' h='` + strconv.FormatUint(uint64(l.inH.Load()), 10) + `' previd='`)
	raw = append(raw, id...)
	raw = append(raw, "'/>"...)
	// Resend what the client never acknowledged, then what arrived while
	// it was away and what CSI held back: all stamped with when they were
	// first meant for it.
	for _, u := range a.Pending() {
		raw = l.delayed(u.Stanza, u.Queued).AppendXML(raw, stanza.NSClient)
	}
	for _, u := range append(l.parked, l.takeHeld()...) {
		a.Push(u.Stanza, u.Queued)
		raw = l.delayed(u.Stanza, u.Queued).AppendXML(raw, stanza.NSClient)
	}
	l.parked = nil
	l.inactive.Store(false) // a new stream starts active (XEP-0352 §5)
	if err := st.c.AttachAcks(a, raw); err != nil {
		l.state = detached
		l.detach(a)
		l.mu.Unlock()
		return false, errResume
	}
	l.cur.Store(st.c)
	l.mu.Unlock()
	st.link, st.sess, st.jid = l, l.sess, l.sess.JID
	st.smOn, st.resumed = true, true
	st.srv.smChanged()
	return true, nil
}

// rememberSM registers a resumable session under its id.
func (s *Server) rememberSM(id string, l *link) {
	s.mu.Lock()
	s.sm[id] = l
	s.mu.Unlock()
}

func (s *Server) lookupSM(id string) *link {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sm[id]
}

func (s *Server) forgetSM(id string) {
	if id == "" {
		return
	}
	s.mu.Lock()
	delete(s.sm, id)
	s.mu.Unlock()
}

// smChanged wakes those waiting in Detached.
func (s *Server) smChanged() {
	s.mu.Lock()
	close(s.smChange)
	s.smChange = make(chan struct{})
	s.mu.Unlock()
}

// Detached reports whether the session bound to full JID j lost its
// connection and waits to be resumed (XEP-0198), and returns a channel that
// is closed at the next change of any session's resumption state, so
// callers (admin tools, tests) can wait without polling.
func (s *Server) Detached(j jid.JID) (bool, <-chan struct{}) {
	s.mu.Lock()
	ch := s.smChange
	var found []*link
	for _, l := range s.sm {
		if l.sess.JID.Equal(j) {
			found = append(found, l)
		}
	}
	s.mu.Unlock()
	for _, l := range found {
		l.mu.Lock()
		d := l.state == detached
		l.mu.Unlock()
		if d {
			return true, ch
		}
	}
	return false, ch
}

// linkKey is the session value holding a session's *link.
const linkKey = "c2s.link"

// Away reports whether the session bound to full JID j lost its
// connection and waits to be resumed (XEP-0198): stanzas for it are kept,
// but nobody sees them now (push notifications ask this). It is a table
// lookup, cheap enough for every message.
func (s *Server) Away(j jid.JID) bool {
	sess := s.table.Get(j)
	if sess == nil {
		return false
	}
	l, ok := sess.Value(linkKey).(*link)
	if !ok {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state == detached
}

// endDetached ends every session waiting to be resumed (at shutdown, so
// what they hold reaches offline storage while it is still open).
func (s *Server) endDetached() {
	s.mu.Lock()
	links := make([]*link, 0, len(s.sm))
	for _, l := range s.sm {
		links = append(links, l)
	}
	s.mu.Unlock()
	for _, l := range links {
		l.endIf(func() bool { return l.state == detached }, nil, nil)
	}
}
