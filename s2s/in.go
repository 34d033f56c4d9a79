package s2s

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// maxSASLAttempts bounds SASL EXTERNAL attempts on one stream.
const maxSASLAttempts = 2

// inStream is one inbound s2s connection: the peer is the initiating
// server; we are the receiving server, and the authoritative server when
// it asks us to confirm a dialback key.
type inStream struct {
	svc    *Service
	c      *conn.Conn
	log    logrus.FieldLogger
	peer   string // network address
	id     string // our stream id: the salt of the peer's dialback key
	direct bool

	local   string // our domain: the header's 'to'
	claimed string // the header's 'from', unauthenticated
	secure  bool
	certs   []*x509.Certificate
	chainOK bool // the peer's certificate chain verified (its names not yet checked)
	tlsVer  string
	sasled  bool
	saslN   int
	started time.Time

	mu       sync.Mutex
	authed   map[string]*inAuth // remote domain → how it authenticated
	pending  map[string]bool    // dialback verifications in flight
	bidi     bool
	verified bool // answered a db:verify: a legitimate verification stream
	ended    bool

	tokens float64 // rate limit bucket, read goroutine only
	last   time.Time
}

type inAuth struct {
	method string
	since  time.Time
}

func (s *Service) handleInbound(nc net.Conn, direct bool) {
	id := s.ids.Add(1)
	st := &inStream{svc: s, peer: nc.RemoteAddr().String(), direct: direct, started: time.Now(),
		authed: make(map[string]*inAuth), pending: make(map[string]bool)}
	st.c = conn.New(nc, id, stanza.NSServer, s.cfg.Limits, conn.Timeouts{
		Idle: s.cfg.IdleTimeout, Answer: 30 * time.Second, Keepalive: time.Minute})
	st.log = s.log.WithFields(logrus.Fields{"conn": id, "peer": st.peer, "direction": "in"})
	defer st.c.Close()
	ok, full := s.registerStream(st)
	if !ok {
		cond, text := "system-shutdown", "the server is shutting down"
		if full {
			cond, text = "resource-constraint", "too many server-to-server connections"
		}
		st.fail(streamErr(cond, text))
		return
	}
	defer s.unregisterStream(st)
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	st.c.SetDeadline(deadline)
	if direct {
		if err := st.c.StartTLS(s.serverTLS(), deadline); err != nil {
			st.log.WithError(err).Debug("direct TLS handshake failed")
			return
		}
		st.tlsDone()
	}
	first, err := st.negotiate()
	if err != nil {
		st.fail(err)
		return
	}
	// Open phase: the writer runs, dialback is asynchronous, and the
	// handshake deadline becomes a timer (reads now wait for stanzas).
	st.c.SetDeadline(time.Time{})
	st.c.StartWriter()
	if st.sasled {
		st.offerRoute(st.claimed)
	}
	remaining := time.Until(deadline)
	timer := time.AfterFunc(max(remaining, 0), st.handshakeExpired)
	err = st.serve(first)
	timer.Stop()
	st.end(err)
}

// tlsDone records the TLS state after the handshake.
func (st *inStream) tlsDone() {
	st.secure = true
	cs := st.c.TLS()
	st.tlsVer = tlsVersion(cs)
	if cs != nil {
		st.certs = cs.PeerCertificates
		st.chainOK = len(st.certs) > 0 && verifyChain(st.certs, st.svc.cfg.Roots, time.Now()) == nil
	}
}

// certFor reports whether the peer's certificate verifies for domain.
func (st *inStream) certFor(domain string) bool {
	return st.chainOK && verifyName(st.certs[0], domain) == nil
}

// fail ends the stream during negotiation; our header goes first if it
// was not sent (RFC 6120 §4.9.1.2).
func (st *inStream) fail(err error) {
	var se *streamError
	if !errors.As(err, &se) {
		st.log.WithError(err).Debug("s2s negotiation ended")
		return
	}
	if st.id == "" {
		st.writeHeader("")
	}
	st.log.WithFields(logrus.Fields{"condition": se.cond, "claimed": st.claimed}).Info("s2s stream refused: " + se.text)
	st.c.CloseStream(se.cond, se.text)
}

func (st *inStream) writeHeader(to string) {
	if st.id == "" {
		id, err := newStreamID()
		if err != nil {
			// Without randomness dialback keys would be predictable: the
			// stream continues with an id no key will match.
			id = "unavailable"
		}
		st.id = id
	}
	_ = st.c.WriteNow(streamHeader(st.local, to, st.id))
}

// readHeader reads and answers the peer's stream header.
func (st *inStream) readHeader() error {
	start, err := st.c.Next()
	if err != nil {
		return readFailure(err)
	}
	h := parseHeader(start)
	to := domainOf(h.to)
	if st.local == "" && st.svc.cfg.IsLocal(to) {
		st.local = to
	}
	from := domainOf(h.from)
	if st.claimed == "" {
		st.claimed = from
	}
	st.id = "" // a restarted stream gets a new id
	st.writeHeader(from)
	if err := h.check(); err != nil {
		return err
	}
	switch {
	case st.local == "" || to != st.local:
		if h.to == "" {
			return streamErr("host-unknown", "the stream header has no 'to'")
		}
		return streamErr("host-unknown", "this server does not serve "+h.to)
	case h.from != "" && from == "":
		return streamErr("invalid-from", "the stream header's 'from' is not a domain")
	case from != "" && st.claimed != from:
		return streamErr("invalid-from", "the restarted stream names another domain")
	}
	if from != "" {
		if ok, why := st.svc.cfg.Policy.Allowed(from); !ok {
			return streamErr("policy-violation", why)
		}
	}
	return nil
}

// negotiate runs the stream up to the point where the peer starts
// authenticating with dialback (whose first element it returns) or has
// authenticated with SASL EXTERNAL (nil).
func (st *inStream) negotiate() (*stanza.Element, error) {
	for {
		if err := st.readHeader(); err != nil {
			return nil, err
		}
		if st.sasled {
			st.features(st.bidiFeature())
			return nil, nil
		}
		if !st.secure {
			var b strings.Builder
			b.WriteString(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>`)
			if st.svc.cfg.RequireTLS {
				b.WriteString(`<required/>`)
			}
			b.WriteString(`</starttls>`)
			if !st.svc.cfg.RequireTLS && !st.svc.cfg.RequireVerifiedCerts {
				b.WriteString(`<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`)
			}
			st.features(b.String())
		} else {
			var b strings.Builder
			if st.chainOK {
				b.WriteString(`<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>`)
			}
			if !st.svc.cfg.RequireVerifiedCerts {
				b.WriteString(`<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`)
			}
			b.WriteString(st.bidiFeature())
			st.features(b.String())
		}
		restart, first, err := st.authPhase()
		if err != nil || !restart {
			return first, err
		}
	}
}

func (st *inStream) bidiFeature() string {
	if st.svc.cfg.Bidi && st.secure && !st.bidi {
		return `<bidi xmlns='urn:xmpp:features:bidi'/>`
	}
	return ""
}

func (st *inStream) features(inner string) {
	_ = st.c.WriteNow([]byte("<stream:features>" + inner + "</stream:features>"))
}

// authPhase reads negotiation elements after the features: STARTTLS and
// SASL EXTERNAL end in a stream restart (restart true); a dialback
// element starts the open phase (returned as first).
func (st *inStream) authPhase() (restart bool, first *stanza.Element, err error) {
	for {
		start, err := st.c.Next()
		if err != nil {
			return false, nil, readFailure(err)
		}
		if stanza.KindOf(start.Name.Local) != 0 && start.Name.Space == stanza.NSServer {
			return false, nil, streamErr("not-authorized", "authenticate before sending stanzas")
		}
		el, err := st.c.ReadElement(start)
		if err != nil {
			return false, nil, readFailure(err)
		}
		el.Name = start.Name
		switch {
		case start.Name.Space == nsTLS && start.Name.Local == "starttls" && !st.secure:
			_ = st.c.WriteNow([]byte(`<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`))
			if err := st.c.StartTLS(st.svc.serverTLS(), time.Now().Add(st.svc.cfg.HandshakeTimeout)); err != nil {
				return false, nil, err
			}
			st.tlsDone()
			return true, nil, nil
		case !st.secure && st.svc.cfg.RequireTLS:
			return false, nil, streamErr("policy-violation", "TLS is required: negotiate STARTTLS first")
		case start.Name.Space == nsSASL && start.Name.Local == "auth":
			ok, err := st.saslExternal(el)
			if err != nil || ok {
				return ok, nil, err
			}
		case start.Name.Space == nsSASL && start.Name.Local == "abort":
			st.saslFailure("aborted")
		case start.Name.Space == nsBidi && start.Name.Local == "bidi" && st.svc.cfg.Bidi && st.secure:
			st.mu.Lock()
			st.bidi = true
			st.mu.Unlock()
		case start.Name.Space == nsDialback:
			return false, el, nil
		default:
			return false, nil, streamErr("unsupported-stanza-type", "unexpected element "+start.Name.Local+" during negotiation")
		}
	}
}

func (st *inStream) saslFailure(cond string) {
	_ = st.c.WriteNow([]byte(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><` + cond + `/></failure>`))
}

// saslExternal handles <auth mechanism='EXTERNAL'/> (XEP-0178 §3): the
// identity is the authorization identity if given, else the header's
// 'from'; the certificate must verify for it.
func (st *inStream) saslExternal(el *stanza.Element) (bool, error) {
	st.saslN++
	if st.saslN > maxSASLAttempts {
		return false, streamErr("policy-violation", "too many failed authentication attempts")
	}
	if el.AttrValue("mechanism") != "EXTERNAL" || !st.chainOK {
		st.saslFailure("invalid-mechanism")
		return false, nil
	}
	authz := ""
	if t := strings.TrimSpace(el.Text()); t != "" && t != "=" {
		b, err := base64.StdEncoding.DecodeString(t)
		if err != nil {
			st.saslFailure("incorrect-encoding")
			return false, nil
		}
		authz = string(b)
	}
	domain := st.claimed
	if authz != "" {
		domain = domainOf(authz)
		if domain == "" || (st.claimed != "" && domain != st.claimed) {
			st.saslFailure("invalid-authzid")
			return false, nil
		}
	}
	if domain == "" || !st.certFor(domain) {
		st.log.WithField("domain", domain).Info("SASL EXTERNAL refused: the certificate does not name the domain")
		st.saslFailure("not-authorized")
		return false, nil
	}
	if ok, why := st.svc.cfg.Policy.Allowed(domain); !ok {
		st.saslFailure("not-authorized")
		return false, streamErr("policy-violation", why)
	}
	if err := st.authenticate(domain, MethodSASLExternal); err != nil {
		st.saslFailure("temporary-auth-failure")
		return false, err
	}
	_ = st.c.WriteNow([]byte(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`))
	st.sasled = true
	st.claimed = domain
	st.c.Reset()
	return true, nil
}

// authenticate marks domain as authenticated on this stream: the link
// observer is told first (an error refuses), then stanzas from it are
// accepted and, on a bidi stream, the stream becomes our way out to it.
func (st *inStream) authenticate(domain, method string) error {
	st.mu.Lock()
	if st.authed[domain] != nil {
		st.mu.Unlock()
		return nil
	}
	st.mu.Unlock()
	info := st.info(domain, method, time.Now())
	if o := st.svc.getObserver(); o != nil {
		if err := o.LinkUp(st.svc.ctx, info); err != nil {
			st.log.WithError(err).Error("s2s link-up could not be recorded; refusing the peer")
			return streamErr("internal-server-error", "the link could not be recorded; try again later")
		}
	}
	st.mu.Lock()
	st.authed[domain] = &inAuth{method: method, since: info.Since}
	bidi := st.bidi
	st.mu.Unlock()
	st.log.WithFields(logrus.Fields{"remote": domain, "local": st.local, "method": method, "tls": st.tlsVer, "bidi": bidi}).Info("s2s inbound link up")
	return nil
}

// offerRoute makes a bidirectional stream our way out to domain. It runs
// only after the peer has been told it is authenticated (db:result valid,
// or SASL success and the restart): stanzas sent earlier would arrive
// before that and be refused.
func (st *inStream) offerRoute(domain string) {
	st.mu.Lock()
	bidi := st.bidi && st.authed[domain] != nil && !st.ended
	st.mu.Unlock()
	if !bidi || st.local == "" {
		return
	}
	if l, err := st.svc.link(pair{local: st.local, remote: domain}); err == nil {
		l.setVia(st)
	}
}

// peerAddr is the peer's address as status shows it: "tls://" marks a
// direct TLS connection, as for outbound targets.
func (st *inStream) peerAddr() string {
	if st.direct {
		return "tls://" + st.peer
	}
	return st.peer
}

func (st *inStream) isAuthed(domain string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.authed[domain] != nil
}

func (st *inStream) info(domain, method string, since time.Time) LinkInfo {
	return LinkInfo{Local: st.local, Remote: domain, Direction: "in", Method: method, TLSVersion: st.tlsVer,
		Bidi: st.bidi, Conn: st.c.ID, Peer: st.peerAddr(), Since: since, State: StateUp}
}

func (st *inStream) infos() []LinkInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]LinkInfo, 0, len(st.authed))
	for d, a := range st.authed {
		out = append(out, LinkInfo{Local: st.local, Remote: d, Direction: "in", Method: a.method, TLSVersion: st.tlsVer,
			Bidi: st.bidi, Conn: st.c.ID, Peer: st.peerAddr(), Since: a.since, State: StateUp})
	}
	return out
}

// handshakeExpired closes a stream that authenticated nothing (and
// verified nothing) within the handshake timeout.
func (st *inStream) handshakeExpired() {
	st.mu.Lock()
	idle := len(st.authed) == 0 && !st.verified && len(st.pending) == 0
	st.mu.Unlock()
	if idle {
		st.c.CloseStream("connection-timeout", "no domain authenticated in time")
	}
}

// enforcePolicy closes the stream when a domain authenticated on it is no
// longer allowed.
func (st *inStream) enforcePolicy() {
	st.mu.Lock()
	var why string
	for d := range st.authed {
		if ok, w := st.svc.cfg.Policy.Allowed(d); !ok {
			why = w
			break
		}
	}
	st.mu.Unlock()
	if why != "" {
		st.c.CloseStream("policy-violation", why)
	}
}

// serve is the open phase: stanzas from authenticated domains go to the
// router; dialback requests and verifications are handled as they come.
func (st *inStream) serve(first *stanza.Element) error {
	ctx := st.svc.ctx
	if first != nil {
		if err := st.dialback(first); err != nil {
			return err
		}
	}
	src := router.Endpoint{Zone: router.ZoneRemote, Conn: st.c.ID}
	for {
		start, err := st.c.Next()
		if err != nil {
			return readFailure(err)
		}
		if stanza.KindOf(start.Name.Local) != 0 && start.Name.Space == stanza.NSServer {
			s, perr := st.c.ReadStanza(start)
			st.throttle()
			if err := st.svc.acceptStanza(ctx, s, perr, src, st.isAuthed); err != nil {
				return err
			}
			continue
		}
		el, err := st.c.ReadElement(start)
		if err != nil {
			return readFailure(err)
		}
		el.Name = start.Name
		switch {
		case start.Name.Space == nsDialback:
			if err := st.dialback(el); err != nil {
				return err
			}
		case start.Name.Space == stanza.NSStream && start.Name.Local == "error":
			st.log.WithField("error", firstChildName(el)).Info("s2s peer sent a stream error")
			return errStreamClosed
		default:
			return streamErr("unsupported-stanza-type", "unexpected element "+start.Name.Local)
		}
	}
}

// throttle keeps the peer within RateLimit stanzas per second (burst of
// one second's worth) by pausing the read loop: a fast peer is slowed,
// like TCP backpressure, rather than cut off.
func (st *inStream) throttle() {
	rate := float64(st.svc.cfg.RateLimit)
	if rate <= 0 {
		return
	}
	now := time.Now()
	if st.last.IsZero() {
		st.tokens = rate
	} else {
		st.tokens = min(rate, st.tokens+now.Sub(st.last).Seconds()*rate)
	}
	st.last = now
	st.tokens--
	if st.tokens < 0 {
		wait := time.Duration(-st.tokens / rate * float64(time.Second))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-st.svc.ctx.Done():
			t.Stop()
		}
	}
}

// dialback handles one dialback element of the open phase.
func (st *inStream) dialback(el *stanza.Element) error {
	if !st.secure && st.svc.cfg.RequireTLS {
		return streamErr("policy-violation", "TLS is required")
	}
	typ := el.AttrValue("type")
	switch {
	case el.Name.Local == "result" && typ == "":
		return st.dbResult(el)
	case el.Name.Local == "verify" && typ == "":
		st.dbVerify(el)
		return nil
	}
	// A verdict on an inbound stream answers nothing we asked: ignore it.
	st.log.WithField("element", el.Name.Local+"/"+typ).Debug("ignoring a dialback verdict on an inbound stream")
	return nil
}

// dbResult is the peer asking us (the receiving server) to accept its
// domain (XEP-0220 §2.1.2). The answer comes asynchronously: we call the
// authoritative server back unless the certificate already proves it.
func (st *inStream) dbResult(el *stanza.Element) error {
	from, to := el.AttrValue("from"), el.AttrValue("to")
	remote, local := domainOf(from), domainOf(to)
	key := strings.TrimSpace(el.Text())
	reply := func(typ, cond string) {
		_ = st.c.SendRaw(dbElement("result", to, from, "", typ, "", cond))
	}
	switch {
	case remote == "" || local == "":
		return streamErr("improper-addressing", "a dialback request needs 'from' and 'to' domains")
	case !st.svc.cfg.IsLocal(local):
		reply("error", "item-not-found")
		return nil
	case st.local != "" && local != st.local:
		// Piggybacking onto another of our domains is not supported: the
		// peer opens a stream per domain pair.
		reply("error", "item-not-found")
		return nil
	case key == "":
		return streamErr("invalid-xml", "a dialback request needs a key")
	}
	if ok, why := st.svc.cfg.Policy.Allowed(remote); !ok {
		st.log.WithField("remote", remote).Info("s2s dialback refused: " + why)
		reply("error", "policy-violation")
		return nil
	}
	if st.isAuthed(remote) {
		reply("valid", "")
		return nil
	}
	if st.certFor(remote) {
		// XEP-0344: the certificate proves the domain; no callback.
		if err := st.authenticate(remote, MethodDialbackCert); err != nil {
			return err
		}
		reply("valid", "")
		st.offerRoute(remote)
		return nil
	}
	if st.svc.cfg.RequireVerifiedCerts {
		reply("error", "not-authorized")
		return nil
	}
	st.mu.Lock()
	if st.pending[remote] {
		st.mu.Unlock()
		return nil
	}
	st.pending[remote] = true
	st.mu.Unlock()
	ok := st.svc.goTracked(func() {
		ctx, cancel := context.WithTimeout(st.svc.ctx, st.svc.cfg.ConnectTimeout)
		valid, err := st.svc.verifyKey(ctx, local, remote, st.id, key)
		cancel()
		st.mu.Lock()
		delete(st.pending, remote)
		st.mu.Unlock()
		switch {
		case err != nil:
			st.log.WithError(err).WithField("remote", remote).Info("s2s dialback verification failed")
			reply("error", "remote-connection-failed")
		case !valid:
			st.log.WithField("remote", remote).Warn("s2s dialback key invalid: refusing the domain")
			reply("invalid", "")
		default:
			if err := st.authenticate(remote, MethodDialback); err != nil {
				var se *streamError
				if errors.As(err, &se) {
					st.c.CloseStream(se.cond, se.text)
				}
				return
			}
			reply("valid", "")
			st.offerRoute(remote)
		}
	})
	if !ok {
		reply("error", "remote-server-timeout")
	}
	return nil
}

// dbVerify is a receiving server asking us, the authoritative server,
// whether a key we issued is genuine (XEP-0220 §2.3.2).
func (st *inStream) dbVerify(el *stanza.Element) {
	from, to, id := el.AttrValue("from"), el.AttrValue("to"), el.AttrValue("id")
	receiving, originating := domainOf(from), domainOf(to)
	typ := "invalid"
	if receiving != "" && st.svc.cfg.IsLocal(originating) && id != "" &&
		checkDialbackKey(st.svc.cfg.Secret, receiving, originating, id, el.Text()) {
		typ = "valid"
	}
	st.mu.Lock()
	st.verified = true
	st.mu.Unlock()
	st.log.WithFields(logrus.Fields{"receiving": receiving, "originating": originating, "verdict": typ}).Debug("s2s dialback verification answered")
	_ = st.c.SendRaw(dbElement("verify", to, from, id, typ, "", ""))
}

// end closes the stream and withdraws its links.
func (st *inStream) end(err error) {
	reason := "closed by the peer"
	var se *streamError
	switch {
	case errors.As(err, &se):
		reason = "stream error " + se.cond + ": " + se.text
		st.log.WithField("condition", se.cond).Warn("s2s stream error: " + se.text)
		st.c.CloseStream(se.cond, se.text)
	case errors.Is(err, errStreamClosed):
		st.c.CloseStream("", "")
	default:
		reason = "connection lost"
		_ = st.c.Close()
	}
	st.mu.Lock()
	st.ended = true
	authed := st.authed
	st.authed = map[string]*inAuth{}
	bidi := st.bidi
	st.mu.Unlock()
	for d, a := range authed {
		if bidi && st.local != "" {
			if l := st.svc.existingLink(pair{local: st.local, remote: d}); l != nil {
				l.mu.Lock()
				mine := l.via == st
				l.mu.Unlock()
				if mine {
					l.setVia(nil)
				}
			}
		}
		st.log.WithFields(logrus.Fields{"remote": d, "reason": reason}).Info("s2s inbound link down")
		if o := st.svc.getObserver(); o != nil {
			o.LinkDown(context.WithoutCancel(st.svc.ctx), st.info(d, a.method, a.since), reason)
		}
	}
	select {
	case <-st.c.Done():
	case <-time.After(3 * time.Second):
	}
}
