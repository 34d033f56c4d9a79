package s2s

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/net/idna"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// errTimedOut marks an attempt that ran out of time (s2s.connect_timeout).
var errTimedOut = errors.New("timed out")

// dialError is a failed outbound attempt; hadStream says the peer opened
// a stream (it was reached), which picks the bounce condition.
type dialError struct {
	hadStream bool
	err       error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// outStream is an authenticated outbound stream (or, for a dialback
// verification, a stream that is only used to ask db:verify).
type outStream struct {
	svc           *Service
	c             *conn.Conn
	log           logrus.FieldLogger
	local, remote string
	target        Target
	id            string // the stream id the peer assigned
	method        string
	tlsVersion    string
	certOK        bool // the peer's certificate verified for remote
	bidi          bool // XEP-0288 negotiated: the peer may send on it too
	since         time.Time
}

func (o *outStream) info() LinkInfo {
	return LinkInfo{Local: o.local, Remote: o.remote, Direction: "out", Method: o.method, TLSVersion: o.tlsVersion,
		Bidi: o.bidi, Conn: o.c.ID, Peer: o.target.String(), Since: o.since, State: StateUp}
}

// verifyReq asks dial for a dialback verification instead of an
// authenticated stream: send db:verify with these values, report the
// answer.
type verifyReq struct {
	id, key string
	valid   bool // set by dial
}

// sniName is the name sent in SNI and checked: the A-label form.
func sniName(domain string) string {
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		return a
	}
	return domain
}

// dial resolves remote and tries its targets in order until one gives an
// authenticated stream (or answers the verification vr). Errors are
// *dialError; those that trying again will not fix wrap errPermanent.
func (s *Service) dial(ctx context.Context, local, remote string, vr *verifyReq) (*outStream, error) {
	targets, err := s.cfg.Resolver.Resolve(ctx, remote)
	if err != nil {
		if errors.Is(err, ErrNoService) {
			err = fmt.Errorf("%w: %w", errPermanent, err)
		}
		return nil, &dialError{err: err}
	}
	var last *dialError
	for _, t := range targets {
		out, err := s.dialTarget(ctx, local, remote, t, vr)
		if err == nil {
			return out, nil
		}
		var de *dialError
		if !errors.As(err, &de) {
			de = &dialError{err: err}
		}
		if last == nil || de.hadStream || !last.hadStream {
			last = de
		}
		// Once a server for the domain answered and refused us, another
		// target of the same domain will not think differently.
		if permanent(err) || ctx.Err() != nil {
			break
		}
	}
	if last == nil {
		return nil, &dialError{err: fmt.Errorf("s2s: no address for %s", remote)}
	}
	return nil, last
}

func (s *Service) dialTarget(ctx context.Context, local, remote string, t Target, vr *verifyReq) (*outStream, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", errTimedOut, err)
		}
		return nil, &dialError{err: fmt.Errorf("s2s: connect %s: %w", t, err)}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(s.cfg.ConnectTimeout)
	}
	// The dial context ends the attempt at once, even mid-read.
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	id := s.ids.Add(1)
	o := &outStream{svc: s, local: local, remote: remote, target: t, since: time.Now(),
		log: s.log.WithFields(logrus.Fields{"conn": id, "local": local, "remote": remote, "peer": t.String()})}
	n := &negotiator{svc: s, o: o, nc: nc, id: id, deadline: deadline, vr: vr}
	if err := n.run(); err != nil {
		if n.c != nil {
			if se := (*streamError)(nil); errors.As(err, &se) {
				n.c.CloseStream(se.cond, se.text)
			} else {
				n.c.CloseStream("", "")
			}
			_ = n.c.Close()
		} else {
			_ = nc.Close()
		}
		// Out of time: the context ended, or the read deadline (the
		// same instant) struck first.
		if (ctx.Err() != nil || !time.Now().Before(deadline)) && !permanent(err) {
			err = fmt.Errorf("s2s: %s: %w: %w", t, errTimedOut, err)
		}
		return nil, &dialError{hadStream: n.hadStream, err: err}
	}
	if !stop() {
		// The context ended just as negotiation finished.
		_ = n.c.Close()
		return nil, &dialError{hadStream: true, err: fmt.Errorf("s2s: %s: %w", t, ctx.Err())}
	}
	n.c.SetDeadline(time.Time{})
	o.c = n.c
	return o, nil
}

// negotiator runs the initiating side of one stream (RFC 6120 §4-6,
// XEP-0178, XEP-0220, XEP-0288).
type negotiator struct {
	svc       *Service
	o         *outStream
	nc        net.Conn
	c         *conn.Conn
	id        uint64
	deadline  time.Time
	vr        *verifyReq
	secure    bool
	hadStream bool
	dbNS      bool // the peer declared the dialback namespace
	triedSASL bool
}

func (n *negotiator) permanentf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPermanent, fmt.Sprintf(format, args...))
}

func (n *negotiator) newConn(nc net.Conn) {
	n.nc = nc
	n.c = conn.New(nc, n.id, stanza.NSServer, n.svc.cfg.Limits, conn.Timeouts{Keepalive: time.Minute})
	n.c.SetDeadline(n.deadline)
}

func (n *negotiator) handshakeTLS(direct bool) error {
	tc := tls.Client(n.nc, n.svc.clientTLS(n.o.remote, direct))
	_ = tc.SetDeadline(n.deadline)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("s2s: TLS handshake with %s: %w", n.o.target, err)
	}
	_ = tc.SetDeadline(time.Time{})
	n.newConn(tc)
	n.secure = true
	cs := tc.ConnectionState()
	n.o.tlsVersion = tlsVersion(&cs)
	err := verifyPeer(cs.PeerCertificates, n.o.remote, n.svc.cfg.Roots, time.Now())
	n.o.certOK = err == nil
	if err != nil {
		if n.svc.cfg.RequireVerifiedCerts {
			return fmt.Errorf("%w: %w", errPermanent, err)
		}
		n.o.log.WithError(err).Debug("peer certificate not verified; dialback needed")
	}
	return nil
}

// open sends our header and reads the peer's header and features.
func (n *negotiator) open() (*stanza.Element, error) {
	if err := n.c.WriteNow(streamHeader(n.o.local, n.o.remote, "")); err != nil {
		return nil, err
	}
	start, err := n.c.Next()
	if err != nil {
		return nil, readFailure(err)
	}
	h := parseHeader(start)
	if err := h.check(); err != nil {
		return nil, err
	}
	n.hadStream = true
	if f := domainOf(h.from); h.from != "" && f != n.o.remote {
		return nil, n.permanentf("the server answered for %q, not %s", h.from, n.o.remote)
	}
	if h.id == "" {
		return nil, streamErr("invalid-xml", "the stream header has no id")
	}
	n.o.id = h.id
	n.dbNS = h.dialback
	return n.element("features")
}

// element reads the next top-level element; a stream error from the peer
// becomes an error naming its condition.
func (n *negotiator) element(want string) (*stanza.Element, error) {
	start, err := n.c.Next()
	if err != nil {
		return nil, readFailure(err)
	}
	el, err := n.c.ReadElement(start)
	if err != nil {
		return nil, readFailure(err)
	}
	if start.Name.Space == stanza.NSStream && start.Name.Local == "error" {
		return nil, peerStreamError(el)
	}
	if want == "features" && (start.Name.Space != stanza.NSStream || start.Name.Local != "features") {
		return nil, streamErr("invalid-xml", "expected stream features")
	}
	el.Name = start.Name
	return el, nil
}

// peerStreamError turns a received <stream:error/> into an error; refusals
// are permanent.
func peerStreamError(el *stanza.Element) error {
	cond, text := "", ""
	for _, c := range el.Elements() {
		if c.Name.Local == "text" {
			text = c.Text()
		} else if cond == "" {
			cond = c.Name.Local
		}
	}
	err := fmt.Errorf("s2s: the peer sent stream error %s %s", cond, text)
	switch cond {
	case "host-unknown", "host-gone", "policy-violation", "not-authorized", "invalid-from", "improper-addressing", "unsupported-version", "remote-connection-failed":
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	return err
}

func (n *negotiator) run() error {
	n.newConn(n.nc)
	if n.o.target.DirectTLS {
		if err := n.handshakeTLS(true); err != nil {
			return err
		}
	}
	feats, err := n.open()
	if err != nil {
		return err
	}
	for {
		if !n.secure {
			if feats.Child(nsTLS, "starttls") != nil {
				if err := n.c.WriteNow([]byte(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)); err != nil {
					return err
				}
				el, err := n.element("")
				if err != nil {
					return err
				}
				if el.Name.Space != nsTLS || el.Name.Local != "proceed" {
					return n.permanentf("STARTTLS refused by the peer")
				}
				if err := n.handshakeTLS(false); err != nil {
					return err
				}
				if feats, err = n.open(); err != nil {
					return err
				}
				continue
			}
			if n.svc.cfg.RequireTLS {
				return n.permanentf("%s does not offer TLS, which this server requires", n.o.remote)
			}
		}
		if n.vr != nil {
			return n.verify()
		}
		if n.svc.cfg.Bidi && n.o.certOK && !n.o.bidi && feats.Child(nsBidiFeat, "bidi") != nil {
			// Only over a verified certificate: we then know who answers
			// on it, so what it sends back can be accepted (XEP-0288 §3).
			if err := n.c.WriteNow([]byte(`<bidi xmlns='urn:xmpp:bidi'/>`)); err != nil {
				return err
			}
			n.o.bidi = true
		}
		if !n.triedSASL && n.secure && offersExternal(feats) {
			n.triedSASL = true
			ok, err := n.saslExternal()
			if err != nil {
				return err
			}
			if ok {
				n.o.method = MethodSASLExternal
				n.c.Reset()
				if feats, err = n.open(); err != nil {
					return err
				}
				// Post-auth features may offer bidi; nothing else is needed.
				if n.svc.cfg.Bidi && n.o.certOK && !n.o.bidi && feats.Child(nsBidiFeat, "bidi") != nil {
					if err := n.c.WriteNow([]byte(`<bidi xmlns='urn:xmpp:bidi'/>`)); err != nil {
						return err
					}
					n.o.bidi = true
				}
				return nil
			}
		}
		if n.dbNS || feats.Child(nsDialbackFeat, "dialback") != nil {
			return n.dialback()
		}
		return n.permanentf("%s offers no authentication this server can use (SASL EXTERNAL failed or not offered, no dialback)", n.o.remote)
	}
}

func offersExternal(feats *stanza.Element) bool {
	ms := feats.Child(nsSASL, "mechanisms")
	if ms == nil {
		return false
	}
	for _, m := range ms.Elements() {
		if m.Name.Local == "mechanism" && m.Text() == "EXTERNAL" {
			return true
		}
	}
	return false
}

// saslExternal authenticates with our certificate (XEP-0178); the
// authorization identity is our domain. false: refused, try dialback.
func (n *negotiator) saslExternal() (bool, error) {
	authz := base64.StdEncoding.EncodeToString([]byte(n.o.local))
	if err := n.c.WriteNow([]byte(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + authz + `</auth>`)); err != nil {
		return false, err
	}
	for {
		el, err := n.element("")
		if err != nil {
			return false, err
		}
		if el.Name.Space != nsSASL {
			return false, streamErr("invalid-xml", "expected a SASL answer")
		}
		switch el.Name.Local {
		case "success":
			return true, nil
		case "failure":
			n.o.log.WithField("reason", firstChildName(el)).Info("SASL EXTERNAL refused by the peer; trying dialback")
			return false, nil
		case "challenge":
			// EXTERNAL has no challenges; answer with an empty response
			// as some servers ask for the authzid this way.
			if err := n.c.WriteNow([]byte(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>`)); err != nil {
				return false, err
			}
		default:
			return false, streamErr("invalid-xml", "unexpected SASL element "+el.Name.Local)
		}
	}
}

func firstChildName(el *stanza.Element) string {
	for _, c := range el.Elements() {
		if c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return ""
}

// dialback asks the peer to verify us (XEP-0220 §2.1) and waits for its
// verdict.
func (n *negotiator) dialback() error {
	if n.svc.cfg.RequireVerifiedCerts {
		return n.permanentf("dialback is disabled (require_verified_certs) and %s did not accept our certificate", n.o.remote)
	}
	key := DialbackKey(n.svc.cfg.Secret, n.o.remote, n.o.local, n.o.id)
	if err := n.c.WriteNow(dbElement("result", n.o.local, n.o.remote, "", "", key, "")); err != nil {
		return err
	}
	for {
		el, err := n.element("")
		if err != nil {
			return err
		}
		if el.Name.Space != nsDialback || el.Name.Local != "result" {
			continue // e.g. a db:verify answer meant for another exchange
		}
		if domainOf(el.AttrValue("from")) != n.o.remote || domainOf(el.AttrValue("to")) != n.o.local {
			continue
		}
		switch el.AttrValue("type") {
		case "valid":
			n.o.method = MethodDialback
			return nil
		case "invalid":
			return n.permanentf("%s did not accept our dialback key", n.o.remote)
		default:
			return n.permanentf("%s answered dialback with an error: %s", n.o.remote, dbErrorCondition(el))
		}
	}
}

func dbErrorCondition(el *stanza.Element) string {
	if e := el.Child("", "error"); e != nil {
		return firstChildName(e)
	}
	if e := el.Child(stanza.NSServer, "error"); e != nil {
		return firstChildName(e)
	}
	return "unknown"
}

// verify asks the authoritative server whether key is valid for the
// stream id (XEP-0220 §2.3, receiving server to authoritative server).
func (n *negotiator) verify() error {
	if err := n.c.WriteNow(dbElement("verify", n.o.local, n.o.remote, n.vr.id, "", n.vr.key, "")); err != nil {
		return err
	}
	for {
		el, err := n.element("")
		if err != nil {
			return err
		}
		if el.Name.Space != nsDialback || el.Name.Local != "verify" || el.AttrValue("id") != n.vr.id {
			continue
		}
		switch el.AttrValue("type") {
		case "valid":
			n.vr.valid = true
			return nil
		case "invalid":
			return nil
		default:
			return n.permanentf("%s answered the verification with an error: %s", n.o.remote, dbErrorCondition(el))
		}
	}
}

// verifyKey asks remote's authoritative server whether key, which remote
// presented on our inbound stream streamID for local, is genuine.
func (s *Service) verifyKey(ctx context.Context, local, remote, streamID, key string) (bool, error) {
	vr := &verifyReq{id: streamID, key: key}
	out, err := s.dial(ctx, local, remote, vr)
	if err != nil {
		return false, err
	}
	out.c.CloseStream("", "")
	_ = out.c.Close()
	return vr.valid, nil
}

// serve reads the peer's side of an outbound stream until it ends and
// returns why. The peer normally sends nothing but whitespace; over a
// bidirectional stream it sends stanzas from its domain.
func (o *outStream) serve(ctx context.Context) string {
	defer func() { _ = o.c.Close() }()
	err := o.read(ctx)
	var se *streamError
	switch {
	case errors.As(err, &se):
		o.log.WithField("condition", se.cond).Warn("s2s stream error: " + se.text)
		o.c.CloseStream(se.cond, se.text)
		o.waitWriter()
		return "stream error " + se.cond + ": " + se.text
	case errors.Is(err, errStreamClosed):
		o.c.CloseStream("", "")
		o.waitWriter()
		return "closed by the peer"
	case err != nil:
		return err.Error()
	}
	return "closed"
}

func (o *outStream) waitWriter() {
	select {
	case <-o.c.Done():
	case <-time.After(3 * time.Second):
	}
}

func (o *outStream) read(ctx context.Context) error {
	src := router.Endpoint{Zone: router.ZoneRemote, Domain: o.remote, Conn: o.c.ID}
	for {
		start, err := o.c.Next()
		if err != nil {
			return readFailure(err)
		}
		if stanza.KindOf(start.Name.Local) != 0 && start.Name.Space == stanza.NSServer {
			s, err := o.c.ReadStanza(start)
			if !o.bidi {
				if err != nil && !isParseError(err) {
					return readFailure(err)
				}
				return streamErr("not-authorized", "this stream carries stanzas one way only")
			}
			if err := o.svc.acceptStanza(ctx, s, err, src, func(d string) bool { return d == o.remote }); err != nil {
				return err
			}
			continue
		}
		el, err := o.c.ReadElement(start)
		if err != nil {
			return readFailure(err)
		}
		switch {
		case start.Name.Space == stanza.NSStream && start.Name.Local == "error":
			return peerStreamError(el)
		case start.Name.Space == nsDialback:
			// Late dialback traffic (a repeated verdict): nothing to do.
		default:
			return streamErr("unsupported-stanza-type", "unexpected element "+start.Name.Local)
		}
	}
}

func isParseError(err error) bool {
	var pe *stanza.ParseError
	return errors.As(err, &pe)
}

// acceptStanza checks one stanza received from a peer and routes it:
// addresses must parse and be present (improper-addressing), 'from' must
// be a domain authenticated on this stream (invalid-from), 'to' must be
// ours (host-unknown), the domain must still be allowed
// (policy-violation). A malformed type or payload is answered with a
// stanza error. A returned error ends the stream.
func (s *Service) acceptStanza(ctx context.Context, st *stanza.Stanza, perr error, src router.Endpoint, authed func(string) bool) error {
	if perr != nil {
		if !isParseError(perr) {
			return readFailure(perr)
		}
		return streamErr("improper-addressing", "a stanza address is malformed")
	}
	if st.From.Equal(jid.JID{}) || st.To.Equal(jid.JID{}) {
		return streamErr("improper-addressing", "stanzas between servers need 'to' and 'from'")
	}
	from, to := st.From.Domainpart(), st.To.Domainpart()
	if !authed(from) {
		return streamErr("invalid-from", "'from' is not a domain authenticated on this stream: "+from)
	}
	if !s.cfg.IsLocal(to) {
		return streamErr("host-unknown", "this server does not serve "+to)
	}
	if ok, why := s.cfg.Policy.Allowed(from); !ok {
		return streamErr("policy-violation", why)
	}
	if cond, text := checkStanza(st); cond != "" {
		s.answer(ctx, st, cond, text)
		return nil
	}
	src.Domain = from
	_ = s.router.Route(ctx, &router.Envelope{Stanza: st, Src: src})
	return nil
}

// answer sends a stanza error for a peer's malformed stanza back through
// the router (our outbound link to that domain).
func (s *Service) answer(ctx context.Context, st *stanza.Stanza, cond stanza.Condition, text string) {
	r := stanza.Bounce(st, cond, text)
	if r == nil {
		return
	}
	_ = s.router.Forward(ctx, &router.Envelope{Stanza: r,
		Src: router.Endpoint{Zone: router.ZoneLocal, Domain: st.To.Domainpart()}, Flags: router.BoundaryDone})
}
