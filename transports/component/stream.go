package component

import (
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

const nsPing = "urn:xmpp:ping"

// pingID is the id of the server's idle pings; answers to it are consumed
// here instead of being routed (and recorded as crossings).
const pingID = "gh-idle-ping"

// streamError ends the stream with an RFC 6120 §4.9.3 condition.
type streamError struct{ cond, text string }

func (e *streamError) Error() string { return "component: stream error " + e.cond + ": " + e.text }

func streamErr(cond, text string) error { return &streamError{cond, text} }

// errStreamClosed: the component closed its stream.
var errStreamClosed = errors.New("component: peer closed the stream")

// stream is one component connection.
type stream struct {
	h      *Host
	c      *conn.Conn
	log    logrus.FieldLogger
	remote string
	id     string // stream id, the salt of the handshake
	domain string // set from the header; authenticated once link is set
	comp   *Component
	noID   bool // the random source failed: the stream id is not secret
	link   Link
}

// Handshake returns the XEP-0114 handshake value for stream id and secret:
// the lowercase hex SHA-1 of their concatenation.
func Handshake(streamID string, secret []byte) string {
	h := sha1.New()
	h.Write([]byte(streamID))
	h.Write(secret)
	return hex.EncodeToString(h.Sum(nil))
}

func (h *Host) handle(ctx context.Context, nc net.Conn) {
	id := h.ids.Add(1)
	st := &stream{h: h, remote: nc.RemoteAddr().String()}
	st.c = conn.New(nc, id, stanza.NSComponent, h.cfg.Limits, h.cfg.Timeouts)
	st.log = h.log.WithFields(logrus.Fields{"conn": id, "remote": st.remote})
	defer st.c.Close()
	st.c.SetDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
	if !h.admit(st) {
		st.fail(streamErr("system-shutdown", "the server is shutting down"))
		return
	}
	defer h.release(st)
	if err := st.negotiate(ctx); err != nil {
		h.unlink(st)
		st.fail(err)
		return
	}
	st.c.SetDeadline(time.Time{})
	st.c.OnIdle = st.ping
	// Active before <handshake/> goes out: once the component reads it,
	// stanzas for its domain must reach it. Until the writer starts they
	// wait in the queue, behind the synchronously written handshake.
	h.activate(st)
	err := st.c.WriteNow([]byte(`<handshake/>`))
	st.c.StartWriter()
	if err == nil {
		st.log.WithField("domain", st.domain).Info("component link up")
		if w := st.h.cfg.Welcome; w != nil {
			w(ctx, st.domain)
		}
		err = st.serve(ctx)
	}
	st.end(ctx, err)
}

// fail ends negotiation; a stream error is preceded by our header when it
// was not sent yet (RFC 6120 §4.9.1.2).
func (st *stream) fail(err error) {
	var se *streamError
	if !errors.As(err, &se) {
		st.log.WithError(err).Debug("component negotiation ended")
		return
	}
	if st.id == "" {
		st.writeHeader(st.h.cfg.ServerDomain)
	}
	st.log.WithFields(logrus.Fields{"condition": se.cond, "domain": st.domain}).Warn("component refused: " + se.text)
	st.c.CloseStream(se.cond, se.text)
}

func (st *stream) writeHeader(from string) {
	var b [16]byte
	if _, err := io.ReadFull(st.h.cfg.Rand, b[:]); err != nil {
		// A predictable id would let a recorded handshake be replayed:
		// readHeader refuses the stream.
		st.noID = true
	}
	st.id = hex.EncodeToString(b[:])
	var sb strings.Builder
	sb.WriteString(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='`)
	sb.WriteString(st.id)
	if from != "" {
		sb.WriteString(`' from='`)
		_ = xml.EscapeText(&sb, []byte(from))
	}
	sb.WriteString(`'>`)
	_ = st.c.WriteNow([]byte(sb.String()))
}

// negotiate runs XEP-0114 §3 up to the server's <handshake/>: header,
// handshake, claim of the domain and link-up; on success the domain is
// claimed for this stream.
func (st *stream) negotiate(ctx context.Context) error {
	if err := st.readHeader(); err != nil {
		return err
	}
	if err := st.readHandshake(); err != nil {
		return err
	}
	// Only an authenticated component learns that its domain is taken: a
	// stranger cannot probe which transports are connected.
	if !st.h.claim(st) {
		return streamErr("conflict", "a component for "+st.domain+" is already connected")
	}
	st.link = Link{Domain: st.domain, Conn: st.c.ID, Remote: st.remote, Since: time.Now()}
	if o := st.h.getObserver(); o != nil {
		if err := o.LinkUp(ctx, st.link); err != nil {
			st.log.WithError(err).WithField("domain", st.domain).Error("link-up could not be recorded; refusing the component")
			return streamErr("internal-server-error", "the link could not be recorded; try again later")
		}
	}
	return nil
}

// readHeader reads the component's stream header and answers it. In
// jabber:component:accept the 'to' is the component's domain (XEP-0114 §3).
func (st *stream) readHeader() error {
	start, err := st.c.Next()
	if err != nil {
		return st.readFailure(err)
	}
	var to, defaultNS string
	for _, a := range start.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to":
			to = a.Value
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			defaultNS = a.Value
		}
	}
	if j, err := jid.Parse(to); err == nil && j.Localpart() == "" && j.Resourcepart() == "" {
		st.domain = j.Domainpart()
		st.comp = st.h.comps[st.domain]
	}
	from := st.h.cfg.ServerDomain
	if st.comp != nil {
		from = st.domain
	}
	st.writeHeader(from)
	switch {
	case start.Name.Local != "stream" || start.Name.Space != stanza.NSStream:
		return streamErr("invalid-namespace", "expected a stream:stream header in "+stanza.NSStream)
	case defaultNS != stanza.NSComponent:
		return streamErr("invalid-namespace", "the default namespace must be "+stanza.NSComponent)
	case to == "":
		return streamErr("host-unknown", "the stream header has no 'to' (the component's domain)")
	case st.comp == nil:
		return streamErr("host-unknown", "no component is configured for "+to)
	case st.noID:
		return streamErr("internal-server-error", "no stream id could be generated")
	}
	return nil
}

// readHandshake reads <handshake/> and checks it against the secret in
// constant time. One attempt per connection: a wrong value ends the stream.
func (st *stream) readHandshake() error {
	start, err := st.c.Next()
	if err != nil {
		return st.readFailure(err)
	}
	el, err := st.c.ReadElement(start)
	if err != nil {
		return st.readFailure(err)
	}
	if start.Name.Local != "handshake" || start.Name.Space != stanza.NSComponent {
		return streamErr("not-authorized", "send the handshake first")
	}
	// The XEP asks for lowercase hex; some components send uppercase.
	got := strings.ToLower(strings.TrimSpace(el.Text()))
	want := Handshake(st.id, st.comp.Secret)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return streamErr("not-authorized", "the handshake does not match the secret configured for "+st.domain)
	}
	return nil
}

// failures maps read errors to stream errors, in the order checked.
var failures = []struct {
	err        error
	cond, text string
}{
	{conn.ErrTooBig, "policy-violation", "stanza too large"},
	{conn.ErrTooDeep, "policy-violation", "XML nested too deeply"},
	{conn.ErrRestricted, "restricted-xml", "comments, processing instructions and DTDs are not allowed"},
	{conn.ErrNotWellFormed, "not-well-formed", "the XML is not well-formed"},
	{conn.ErrIdle, "connection-timeout", "no data received in time"},
}

func (st *stream) readFailure(err error) error {
	if errors.Is(err, conn.ErrStreamClosed) {
		return errStreamClosed
	}
	for _, f := range failures {
		if errors.Is(err, f.err) {
			return streamErr(f.cond, f.text)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return streamErr("connection-timeout", "the handshake took too long")
	}
	return err
}

// serve is the authenticated read loop: check the addressing, then hand
// each stanza to the router with the component's domain as its source.
func (st *stream) serve(ctx context.Context) error {
	src := router.Endpoint{Zone: router.ZoneTransport, Domain: st.domain, Conn: st.c.ID}
	for {
		start, err := st.c.Next()
		if err != nil {
			return st.readFailure(err)
		}
		// Some components write stanzas qualified by jabber:client; the
		// content is the same, so they are taken like Prosody takes them.
		if stanza.KindOf(start.Name.Local) == 0 || (start.Name.Space != stanza.NSComponent && start.Name.Space != stanza.NSClient) {
			if _, err := st.c.ReadElement(start); err != nil {
				return st.readFailure(err)
			}
			return streamErr("unsupported-stanza-type", "unknown top-level element "+start.Name.Local)
		}
		s, err := st.c.ReadStanza(start)
		badTo := false
		if err != nil {
			var pe *stanza.ParseError
			if !errors.As(err, &pe) {
				return st.readFailure(err)
			}
			if pe.Attr == "from" {
				return streamErr("invalid-from", "the 'from' address is malformed")
			}
			badTo = true
		}
		if s.From.Equal(jid.JID{}) {
			// XEP-0114 requires 'from'; like Prosody we refuse the stanza
			// but keep the link, which serves every user of the transport.
			st.answer(s, stanza.BadRequest, "a component's stanzas need a 'from' address")
			continue
		}
		if s.From.Domainpart() != st.domain {
			return streamErr("invalid-from", "'from' must be an address at "+st.domain)
		}
		if badTo {
			st.answer(s, stanza.JIDMalformed, "the 'to' address is malformed")
			continue
		}
		if s.To.Equal(jid.JID{}) {
			st.answer(s, stanza.BadRequest, "a component's stanzas need a 'to' address")
			continue
		}
		if cond, text := check(s); cond != "" {
			st.answer(s, cond, text)
			continue
		}
		if st.isPong(s) {
			continue
		}
		_ = st.h.router.Route(ctx, &router.Envelope{Stanza: s, Src: src})
	}
}

// answer sends an error for the component's own stanza straight back on
// the stream: the stanza went nowhere, so nothing crossed the border.
func (st *stream) answer(s *stanza.Stanza, cond stanza.Condition, text string) {
	r := stanza.Bounce(s, cond, text)
	if r == nil {
		return
	}
	if r.From.Equal(jid.JID{}) {
		r.From, _ = jid.New("", st.h.cfg.ServerDomain, "")
	}
	_ = st.c.Send(r)
}

// validTypes lists the stanza types of RFC 6120 §8.2.
var validTypes = map[stanza.Kind][]string{
	stanza.KindMessage:  {"", "normal", "chat", "groupchat", "headline", "error"},
	stanza.KindPresence: {"", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error"},
	stanza.KindIQ:       {"get", "set", "result", "error"},
}

// check validates a stanza's type and, for iq, its id and payload.
func check(s *stanza.Stanza) (stanza.Condition, string) {
	ok := false
	for _, t := range validTypes[s.Kind] {
		ok = ok || t == s.Type
	}
	if !ok {
		return stanza.BadRequest, "invalid " + s.Kind.String() + " type"
	}
	if s.Kind != stanza.KindIQ {
		return "", ""
	}
	if s.ID == "" {
		return stanza.BadRequest, "an iq needs an id"
	}
	if s.IsRequest() && len(s.Elements()) != 1 {
		return stanza.BadRequest, "an iq request carries exactly one payload"
	}
	return "", ""
}

// isPong reports an answer to the server's idle ping.
func (st *stream) isPong(s *stanza.Stanza) bool {
	return s.Kind == stanza.KindIQ && s.ID == pingID && (s.Type == "result" || s.Type == "error") &&
		s.To.Localpart() == "" && s.To.Resourcepart() == "" && s.To.Domainpart() == st.h.cfg.ServerDomain
}

// ping sends a XEP-0199 ping when the component has been idle; any answer
// (even an error) proves the link alive.
func (st *stream) ping() {
	from, err := jid.New("", st.h.cfg.ServerDomain, "")
	if err != nil {
		return
	}
	to, err := jid.New("", st.domain, "")
	if err != nil {
		return
	}
	_ = st.c.Send(&stanza.Stanza{Kind: stanza.KindIQ, Type: "get", ID: pingID, To: to, From: from,
		Children: []stanza.Node{{El: stanza.NewElement(nsPing, "ping")}}})
}

// end takes the link down: first out of the table, so that new stanzas
// for the domain bounce instead of queueing on a closing stream, then the
// stream is closed and the observer told.
func (st *stream) end(ctx context.Context, err error) {
	reason := "closed by the component"
	var se *streamError
	switch {
	case errors.As(err, &se):
		reason = "stream error " + se.cond + ": " + se.text
		st.log.WithFields(logrus.Fields{"domain": st.domain, "condition": se.cond}).Warn("component stream error: " + se.text)
	case errors.Is(err, errStreamClosed):
	case errors.Is(err, conn.ErrClosed):
		reason = "connection lost"
		st.log.WithError(err).Debug("component connection lost")
	case err != nil:
		reason = err.Error()
	}
	if st.h.unlink(st) {
		st.linkDown(ctx, reason)
	}
	switch {
	case se != nil:
		st.c.CloseStream(se.cond, se.text)
	case errors.Is(err, errStreamClosed):
		st.c.CloseStream("", "")
	default:
		// The peer is gone: nothing more can be written.
		_ = st.c.Close()
	}
	select {
	case <-st.c.Done():
	case <-time.After(3 * time.Second):
	}
}

func (st *stream) linkDown(ctx context.Context, reason string) {
	st.log.WithFields(logrus.Fields{"domain": st.domain, "reason": reason,
		"up_for": time.Since(st.link.Since).Round(time.Millisecond).String()}).Info("component link down")
	if o := st.h.getObserver(); o != nil {
		o.LinkDown(ctx, st.link, reason)
	}
	if g := st.h.cfg.Gone; g != nil {
		g(ctx, st.domain)
	}
}
