package c2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
)

// Namespaces of stream negotiation.
const (
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsSASLCB  = "urn:xmpp:sasl-cb:0"
	nsPing    = "urn:xmpp:ping"
)

// streamError is a failure that ends the stream.
type streamError struct {
	cond, text string
	app        *stanza.Element // application-specific condition, if any
}

func (e *streamError) Error() string { return "c2s: stream error " + e.cond + ": " + e.text }

func streamErr(cond, text string) error { return &streamError{cond: cond, text: text} }

// Stream is one client connection.
type Stream struct {
	srv  *Server
	c    *conn.Conn
	log  logrus.FieldLogger
	host string
	id   string
	ip   string

	tlsCfg    *tls.Config
	cert      *x509.Certificate // the leaf tlsCfg presents
	secure    bool
	user      string
	mechanism string
	jid       jid.JID
	sess      *sessions.Session
	authFails int

	// link is the session's sender; with resumption it outlives this
	// stream. Set at bind (or resume), then only read.
	link    *link
	smOn    bool // stream management enabled on this stream (read goroutine only)
	resumed bool // the session was resumed, not bound, on this stream
}

// Conn returns the connection runtime (for nonza handlers).
func (st *Stream) Conn() *conn.Conn { return st.c }

// Session returns the bound session (nil before bind).
func (st *Stream) Session() *sessions.Session { return st.sess }

// Send sends a stanza to the client the way the session does (stream
// management and client state indication apply).
func (st *Stream) Send(s *stanza.Stanza) error {
	if st.link == nil {
		return st.c.Send(s)
	}
	return st.link.Send(s)
}

// Close ends the stream with a stream error.
func (st *Stream) Close(cond, text string) { st.c.CloseStream(cond, text) }

func (s *Server) handle(ctx context.Context, nc net.Conn, mode transport) {
	ip, _, _ := net.SplitHostPort(nc.RemoteAddr().String())
	id := s.ids.Add(1)
	st := &Stream{srv: s, ip: ip}
	st.tlsCfg, st.cert = s.cfg.TLS()
	st.c = conn.New(nc, id, stanza.NSClient, s.cfg.Limits, s.cfg.Timeouts)
	st.log = s.log.WithFields(logrus.Fields{"conn": id, "remote": nc.RemoteAddr().String()})
	admitted := s.admit(st, ip)
	defer s.release(st, ip)
	defer st.c.Close()

	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	st.c.SetDeadline(deadline)
	switch mode {
	case directTLSMode:
		if err := st.c.StartTLS(st.tlsCfg, deadline); err != nil {
			st.log.WithError(err).Debug("direct TLS handshake failed")
			return
		}
		st.secure = true
	case preSecured:
		st.secure = st.tlsState() != nil
	}
	if !admitted {
		st.fail(streamErr("policy-violation", "too many connections from your address"))
		return
	}
	err := st.negotiate(ctx, deadline)
	if err != nil {
		st.fail(err)
		return
	}
	st.c.SetDeadline(time.Time{})
	st.c.OnIdle = st.ping
	st.c.StartWriter()
	if st.resumed {
		// Same session, new connection: modules saw nothing change.
		st.log.WithField("jid", st.jid.String()).Info("session resumed")
	} else {
		st.log.WithFields(logrus.Fields{"jid": st.jid.String(), "mechanism": st.mechanism}).Info("session bound")
		s.life.SessionBound(ctx, st.sess)
	}
	err = st.serve(ctx)
	st.end(ctx, err)
}

// fail ends negotiation with a stream error (our header is always sent
// first, RFC 6120 §4.9.1.2).
func (st *Stream) fail(err error) {
	var se *streamError
	if errors.As(err, &se) {
		if st.id == "" {
			st.writeHeader("", "")
		}
		st.log.WithField("condition", se.cond).Info("stream error: " + se.text)
		st.c.CloseStreamWith(se.cond, se.text, se.app)
		return
	}
	st.log.WithError(err).Debug("negotiation ended")
}

func (st *Stream) writeHeader(to, from string) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	st.id = hex.EncodeToString(b[:])
	host := st.host
	if host == "" && len(st.srv.cfg.Hosts) > 0 {
		host = st.srv.cfg.Hosts[0]
	}
	var sb strings.Builder
	sb.WriteString(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='`)
	sb.WriteString(st.id)
	sb.WriteString(`' from='`)
	xml.EscapeText(&sb, []byte(host))
	if from != "" {
		sb.WriteString(`' to='`)
		xml.EscapeText(&sb, []byte(from))
	}
	sb.WriteString(`' version='1.0' xml:lang='en'>`)
	_ = st.c.WriteNow([]byte(sb.String()))
}

// readHeader reads and answers the client's stream header.
func (st *Stream) readHeader() error {
	start, err := st.c.Next()
	if err != nil {
		return st.readFailure(err)
	}
	var to, from, version, defaultNS string
	for _, a := range start.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to":
			to = a.Value
		case a.Name.Space == "" && a.Name.Local == "from":
			from = a.Value
		case a.Name.Space == "" && a.Name.Local == "version":
			version = a.Value
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			defaultNS = a.Value
		}
	}
	if j, err := jid.Parse(to); err == nil && st.srv.hosts[j.Domainpart()] {
		st.host = j.Domainpart()
	}
	if j, err := jid.Parse(from); err != nil || j.Localpart() == "" {
		from = ""
	}
	st.writeHeader(to, from)
	switch {
	case start.Name.Local != "stream" || start.Name.Space != stanza.NSStream:
		return streamErr("invalid-namespace", "expected a stream:stream header in "+stanza.NSStream)
	case defaultNS != stanza.NSClient:
		return streamErr("invalid-namespace", "the default namespace must be jabber:client")
	case !versionOK(version):
		return streamErr("unsupported-version", "XMPP 1.0 is required")
	case st.host == "":
		if to == "" {
			return streamErr("host-unknown", "the stream header has no 'to'")
		}
		return streamErr("host-unknown", "this server does not serve "+to)
	}
	return nil
}

func versionOK(v string) bool {
	major, _, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	n, err := strconv.Atoi(major)
	return err == nil && n >= 1
}

// negotiate runs the stream from header to bound resource.
func (st *Stream) negotiate(ctx context.Context, deadline time.Time) error {
	for {
		if err := st.readHeader(); err != nil {
			return err
		}
		switch {
		case !st.secure:
			st.features(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>`)
			if err := st.startTLS(deadline); err != nil {
				return err
			}
		case st.user == "":
			feats := st.mechanismsXML()
			if st.srv.cfg.RegisterFeature {
				feats += `<register xmlns='http://jabber.org/features/iq-register'/>`
			}
			st.features(feats)
			if err := st.authenticate(ctx); err != nil {
				return err
			}
		default:
			var b strings.Builder
			b.WriteString(`<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>`)
			if st.srv.cfg.SM.Enabled {
				b.WriteString(`<sm xmlns='urn:xmpp:sm:3'/>`)
			}
			if st.srv.cfg.CSI.Enabled {
				b.WriteString(`<csi xmlns='urn:xmpp:csi:0'/>`)
			}
			for _, f := range st.srv.cfg.Features {
				b.Write(f.AppendXML(nil, stanza.NSStream, stanza.NSClient))
			}
			st.features(b.String())
			return st.bind(ctx)
		}
	}
}

func (st *Stream) features(inner string) {
	_ = st.c.WriteNow([]byte("<stream:features>" + inner + "</stream:features>"))
}

func (st *Stream) readFailure(err error) error {
	switch {
	case errors.Is(err, conn.ErrTooBig):
		return streamErr("policy-violation", fmt.Sprintf("stanza too large (limit %d bytes)", st.srv.cfg.Limits.MaxStanzaBytes))
	case errors.Is(err, conn.ErrTooDeep):
		return streamErr("policy-violation", fmt.Sprintf("XML nested too deeply (limit %d levels)", st.srv.cfg.Limits.MaxDepth))
	case errors.Is(err, conn.ErrRestricted):
		return streamErr("restricted-xml", "comments, processing instructions and DTDs are not allowed")
	case errors.Is(err, conn.ErrNotWellFormed):
		return streamErr("not-well-formed", "the XML is not well-formed")
	case errors.Is(err, conn.ErrIdle):
		return streamErr("connection-timeout", "no data received in time")
	case errors.Is(err, conn.ErrStreamClosed):
		return errStreamClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return streamErr("connection-timeout", "stream negotiation took too long")
	}
	return err
}

var errStreamClosed = errors.New("c2s: client closed the stream")

func (st *Stream) startTLS(deadline time.Time) error {
	start, err := st.c.Next()
	if err != nil {
		return st.readFailure(err)
	}
	if _, err := st.c.ReadElement(start); err != nil {
		return st.readFailure(err)
	}
	if start.Name.Space != nsTLS || start.Name.Local != "starttls" {
		if start.Name.Space == nsSASL && start.Name.Local == "auth" {
			_ = st.c.WriteNow([]byte(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>`))
		}
		return streamErr("policy-violation", "TLS is required: negotiate STARTTLS first")
	}
	_ = st.c.WriteNow([]byte(`<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`))
	if err := st.c.StartTLS(st.tlsCfg, deadline); err != nil {
		return err
	}
	st.secure = true
	return nil
}

// tlsState returns the TLS state protecting the stream: the stream's own,
// or that of the transport below it (Secured); nil without TLS.
func (st *Stream) tlsState() *tls.ConnectionState {
	if cs := st.c.TLS(); cs != nil {
		return cs
	}
	if sc, ok := st.c.NetConn().(Secured); ok {
		if cs := sc.ConnectionState(); cs.HandshakeComplete {
			return &cs
		}
	}
	return nil
}

func (st *Stream) mechanismsXML() string {
	cs := st.tlsState()
	var b strings.Builder
	b.WriteString(`<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`)
	for _, m := range st.srv.mechanisms(cs, st.cert) {
		b.WriteString("<mechanism>" + m + "</mechanism>")
	}
	b.WriteString(`</mechanisms>`)
	if cbs := auth.ChannelBindings(cs, st.cert); len(cbs) > 0 {
		b.WriteString(`<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>`)
		for _, cb := range cbs {
			b.WriteString(`<channel-binding type='` + cb + `'/>`)
		}
		b.WriteString(`</sasl-channel-binding>`)
	}
	return b.String()
}

func (st *Stream) saslFailure(cond, text string) {
	var b strings.Builder
	b.WriteString(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><` + cond + `/>`)
	if text != "" {
		b.WriteString(`<text xml:lang='en'>`)
		xml.EscapeText(&b, []byte(text))
		b.WriteString(`</text>`)
	}
	b.WriteString(`</failure>`)
	_ = st.c.WriteNow([]byte(b.String()))
}

// authenticate runs SASL exchanges until one succeeds or the attempts run
// out (RFC 6120 §6.4.5).
func (st *Stream) authenticate(ctx context.Context) error {
	cs := st.tlsState()
	advertised := st.srv.mechanisms(cs, st.cert)
	for {
		start, err := st.c.Next()
		if err != nil {
			return st.readFailure(err)
		}
		el, err := st.c.ReadElement(start)
		if err != nil {
			return st.readFailure(err)
		}
		if start.Name.Space != nsSASL || start.Name.Local != "auth" {
			if start.Name.Space == nsSASL && start.Name.Local == "abort" {
				st.saslFailure("aborted", "")
				continue
			}
			if start.Name.Space == stanza.NSClient && start.Name.Local == "iq" && st.srv.cfg.Register != nil {
				// XEP-0077 §3.1: registration before authentication.
				if err := st.preAuthIQ(ctx, el); err != nil {
					return err
				}
				continue
			}
			return streamErr("not-authorized", "authenticate first")
		}
		if th := st.srv.cfg.Throttle; th != nil {
			if wait := th.Wait(st.ip); wait > 0 {
				// Refused without looking at the credentials: a guess
				// costs the guesser time, not us.
				st.authFailed("temporary-auth-failure", fmt.Sprintf("too many failed logins from your address; try again in %s", wait.Round(time.Second)))
				if st.authFails >= st.srv.cfg.MaxAuthAttempts {
					return streamErr("policy-violation", "too many failed authentication attempts")
				}
				continue
			}
		}
		ok, err := st.exchange(ctx, el, cs, advertised)
		if err != nil {
			return err
		}
		if ok {
			st.c.Reset()
			return nil
		}
		if st.authFails >= st.srv.cfg.MaxAuthAttempts {
			return streamErr("policy-violation", "too many failed authentication attempts")
		}
	}
}

// preAuthIQ answers an iq sent before authentication: only in-band
// registration is served; anything else gets not-authorized. The stanza
// carries no address the client could have been given yet.
func (st *Stream) preAuthIQ(ctx context.Context, el *stanza.Element) error {
	iq, err := stanza.FromElement(el)
	if err != nil || iq.ID == "" {
		return streamErr("bad-format", "malformed iq before authentication")
	}
	if !iq.IsRequest() {
		return nil
	}
	reply := st.srv.cfg.Register(ctx, st.ip, st.host, iq)
	if reply == nil {
		return nil
	}
	reply.To, reply.From = jid.JID{}, jid.JID{}
	return st.c.WriteNow(reply.AppendXML(nil, stanza.NSClient))
}

// exchange runs one SASL exchange; it returns true on success.
func (st *Stream) exchange(ctx context.Context, el *stanza.Element, cs *tls.ConnectionState, advertised []string) (bool, error) {
	mech := el.AttrValue("mechanism")
	ex, err := auth.NewExchange(auth.ExchangeConfig{
		Mechanism: mech, TLS: cs, ServerCert: st.cert, Lookup: st.srv.cfg.Lookup,
		AllowPlain: st.srv.cfg.AllowPlain || st.srv.cfg.PlainOnly, Advertised: advertised,
		Domain: st.host, FakeIterations: st.srv.cfg.SCRAMIterations, Secret: st.srv.cfg.AuthSecret,
		VerifyPlain: st.srv.cfg.VerifyPlain,
	})
	if err != nil {
		st.authFailedErr(err)
		return false, nil
	}
	in, ok := decodeSASL(el.Text())
	if !ok {
		st.authFailed("incorrect-encoding", "")
		return false, nil
	}
	for {
		out, done, err := ex.Step(ctx, in)
		if err != nil {
			if th := st.srv.cfg.Throttle; th != nil {
				th.Failed(st.ip, ex.Claimed())
			}
			st.authFailedErr(err)
			// The reason (condition and cause) helps operators; it never
			// contains SASL payloads or passwords.
			st.log.WithField("mechanism", mech).WithError(err).Info("authentication failed")
			return false, nil
		}
		if done {
			user := ex.Username()
			if th := st.srv.cfg.Throttle; th != nil {
				th.Succeeded(st.ip, user)
			}
			if st.srv.cfg.Disabled != nil && st.srv.cfg.Disabled(ctx, user) {
				st.authFailed("account-disabled", "this account is locked")
				return false, nil
			}
			payload := ""
			if len(out) > 0 {
				payload = base64.StdEncoding.EncodeToString(out)
			}
			_ = st.c.WriteNow([]byte(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + payload + `</success>`))
			st.user = user
			st.mechanism = mech
			return true, nil
		}
		_ = st.c.WriteNow([]byte(`<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + base64.StdEncoding.EncodeToString(out) + `</challenge>`))
		start, err := st.c.Next()
		if err != nil {
			return false, st.readFailure(err)
		}
		resp, err := st.c.ReadElement(start)
		if err != nil {
			return false, st.readFailure(err)
		}
		if start.Name.Space == nsSASL && start.Name.Local == "abort" {
			st.authFailed("aborted", "")
			return false, nil
		}
		if start.Name.Space != nsSASL || start.Name.Local != "response" {
			return false, streamErr("not-authorized", "expected a SASL response")
		}
		if in, ok = decodeSASL(resp.Text()); !ok {
			st.authFailed("incorrect-encoding", "")
			return false, nil
		}
	}
}

// authFailed counts a failed attempt before telling the client, so the
// count is exact by the time the client sees the failure.
func (st *Stream) authFailed(cond, text string) {
	st.authFails++
	st.srv.authFailures.Add(1)
	st.saslFailure(cond, text)
}

func (st *Stream) authFailedErr(err error) {
	st.authFails++
	st.srv.authFailures.Add(1)
	st.sendSASLError(err)
}

func (st *Stream) sendSASLError(err error) {
	var f *auth.Failure
	if errors.As(err, &f) {
		st.saslFailure(f.Condition, f.Text)
		return
	}
	st.saslFailure("temporary-auth-failure", "")
}

// decodeSASL decodes base64 SASL data; "=" is an empty response.
func decodeSASL(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "=" {
		return nil, true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return b, err == nil
}

// bind handles resource binding (RFC 6120 §7).
func (st *Stream) bind(ctx context.Context) error {
	for {
		start, err := st.c.Next()
		if err != nil {
			return st.readFailure(err)
		}
		if stanza.KindOf(start.Name.Local) != stanza.KindIQ {
			el, err := st.c.ReadElement(start)
			if err != nil {
				return st.readFailure(err)
			}
			if start.Name.Space == nsSM && st.srv.cfg.SM.Enabled {
				if start.Name.Local != "resume" {
					// XEP-0198 §3: enable comes after binding.
					st.smFailed(stanza.UnexpectedRequest, "bind a resource first")
					continue
				}
				ok, err := st.resume(el)
				if ok || err != nil {
					return err
				}
				continue
			}
			return streamErr("not-authorized", "bind a resource first")
		}
		iq, err := st.c.ReadStanza(start)
		if err != nil {
			var pe *stanza.ParseError
			if !errors.As(err, &pe) {
				return st.readFailure(err)
			}
		}
		b := iq.Child(nsBind, "bind")
		if b == nil || iq.Type != "set" {
			st.reply(stanza.Bounce(iq, stanza.NotAllowed, "bind a resource first"))
			continue
		}
		res := strings.TrimSpace(b.ChildText(nsBind, "resource"))
		full, cond, text := st.chooseResource(res)
		if cond != "" {
			st.reply(stanza.Bounce(iq, cond, text))
			continue
		}
		st.jid = full
		st.link = newLink(ctx, st)
		sess := sessions.New(full, st.c.ID, st.link, sessions.Info{
			RemoteAddr: st.c.NetConn().RemoteAddr().String(),
			TLSVersion: tlsVersion(st.tlsState()),
			Mechanism:  st.mechanism, Started: time.Now(),
		})
		st.link.sess = sess
		sess.SetValue(linkKey, st.link)
		res2 := iq.Result(stanza.NewElement(nsBind, "bind").Append(
			stanza.NewElement(nsBind, "jid").AppendText(full.String())))
		res2.To = jid.JID{}
		res2.From = jid.JID{}
		// The result goes out before the session is in the table: once
		// it is, stanzas for it (among them what a replaced session
		// never got acknowledged) may be queued, and they must follow.
		st.reply(res2)
		st.sess = sess
		if old := st.srv.table.Add(sess); old != nil {
			old.Close("conflict", "replaced by a new session with the same resource")
		}
		return nil
	}
}

func (st *Stream) chooseResource(res string) (jid.JID, stanza.Condition, string) {
	if res == "" {
		return st.randomResource()
	}
	full, err := jid.New(st.user, st.host, res)
	if err != nil {
		return jid.JID{}, stanza.BadRequest, "the resource is not valid"
	}
	if st.srv.table.Exists(full) {
		switch st.srv.cfg.ResourceConflict {
		case ConflictRefuse:
			return jid.JID{}, stanza.Conflict, "that resource is in use"
		case ConflictRename:
			return st.renamed(res)
		}
	}
	return full, "", ""
}

func (st *Stream) randomResource() (jid.JID, stanza.Condition, string) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	full, err := jid.New(st.user, st.host, "gh-"+hex.EncodeToString(b[:]))
	if err != nil {
		return jid.JID{}, stanza.InternalServerError, ""
	}
	return full, "", ""
}

func (st *Stream) renamed(res string) (jid.JID, stanza.Condition, string) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	full, err := jid.New(st.user, st.host, res+"-"+hex.EncodeToString(b[:]))
	if err != nil {
		return st.randomResource()
	}
	return full, "", ""
}

// reply writes a stanza during negotiation or queues it after.
func (st *Stream) reply(s *stanza.Stanza) {
	if s == nil {
		return
	}
	if st.sess == nil {
		_ = st.c.WriteNow(s.AppendXML(nil, stanza.NSClient))
		return
	}
	_ = st.link.Send(s)
}

func tlsVersion(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	return tls.VersionName(cs.Version)
}

// serve is the bound read loop: parse, check, stamp, route.
func (st *Stream) serve(ctx context.Context) error {
	bare := st.jid.Bare()
	src := router.Endpoint{Zone: router.ZoneLocal, Domain: st.host, Conn: st.c.ID}
	for {
		start, err := st.c.Next()
		if err != nil {
			return st.readFailure(err)
		}
		if stanza.KindOf(start.Name.Local) == 0 || start.Name.Space != stanza.NSClient {
			el, err := st.c.ReadElement(start)
			if err != nil {
				return st.readFailure(err)
			}
			switch {
			case el.Name.Space == nsSM && st.srv.cfg.SM.Enabled:
				if err := st.smNonza(el); err != nil {
					return err
				}
				continue
			case el.Name.Space == nsCSI && st.srv.cfg.CSI.Enabled:
				st.csiNonza(el)
				continue
			}
			if !st.nonza(ctx, el) {
				return streamErr("unsupported-stanza-type", "unknown top-level element "+start.Name.Local)
			}
			continue
		}
		s, err := st.c.ReadStanza(start)
		if st.smOn && s != nil {
			// Counted when read: from here on it is the server's to
			// handle (route, answer or bounce), which is what h means.
			st.link.inH.Add(1)
		}
		if err != nil {
			var pe *stanza.ParseError
			if !errors.As(err, &pe) {
				return st.readFailure(err)
			}
			if pe.Attr == "from" {
				return streamErr("invalid-from", "the 'from' address is malformed")
			}
			s.From = st.jid
			st.reply(stanza.Bounce(s, stanza.JIDMalformed, "the 'to' address is malformed"))
			continue
		}
		if !s.From.Equal(jid.JID{}) && !s.From.Equal(st.jid) && !s.From.Equal(bare) {
			return streamErr("invalid-from", "'from' does not match the authenticated address")
		}
		s.From = st.jid
		if st.link.sess != nil {
			st.link.sess.Touch() // idle time for admins (gatehouse session list)
		}
		if cond, text := check(s); cond != "" {
			st.reply(stanza.Bounce(s, cond, text))
			continue
		}
		if s.Kind == stanza.KindIQ && s.Type == "set" && s.Child(nsSession, "session") != nil {
			st.reply(s.Result())
			continue
		}
		_ = st.srv.router.Route(ctx, &router.Envelope{Stanza: s, Src: src})
	}
}

// check validates a stanza's type and shape (RFC 6120 §8).
func check(s *stanza.Stanza) (stanza.Condition, string) {
	switch s.Kind {
	case stanza.KindIQ:
		switch s.Type {
		case "get", "set":
			if len(s.Elements()) != 1 {
				return stanza.BadRequest, "an iq request carries exactly one payload"
			}
		case "result", "error":
		default:
			return stanza.BadRequest, "invalid iq type"
		}
		if s.ID == "" {
			return stanza.BadRequest, "an iq needs an id"
		}
	case stanza.KindPresence:
		switch s.Type {
		case "", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error":
		default:
			return stanza.BadRequest, "invalid presence type"
		}
	case stanza.KindMessage:
		switch s.Type {
		case "", "normal", "chat", "groupchat", "headline", "error":
		default:
			return stanza.BadRequest, "invalid message type"
		}
	}
	return "", ""
}

func (st *Stream) nonza(ctx context.Context, el *stanza.Element) bool {
	for _, n := range st.srv.nonzas {
		if n(ctx, st, el) {
			return true
		}
	}
	return false
}

// ping sends a XEP-0199 ping when the client has been idle.
func (st *Stream) ping() {
	host, _ := jid.New("", st.host, "")
	_ = st.link.Send(&stanza.Stanza{Kind: stanza.KindIQ, Type: "get", ID: "idle-ping", To: st.jid, From: host,
		Children: []stanza.Node{{El: stanza.NewElement(nsPing, "ping")}}})
}

// end tears the bound session down, or keeps it for resumption when the
// connection dropped and the client asked for that (XEP-0198 §5).
func (st *Stream) end(ctx context.Context, err error) {
	resumable := st.resumable(err)
	var se *streamError
	switch {
	case errors.As(err, &se):
		st.log.WithField("condition", se.cond).Info("stream error: " + se.text)
		st.c.CloseStreamWith(se.cond, se.text, se.app)
	case errors.Is(err, errStreamClosed):
		st.c.CloseStream("", "")
	default:
		// The peer is gone: nothing more can be written.
		_ = st.c.Close()
	}
	defer func() {
		select {
		case <-st.c.Done():
		case <-time.After(3 * time.Second):
		}
	}()
	l := st.link
	l.mu.Lock()
	if l.owner != st {
		// Resumed on another connection, which now serves the session.
		l.mu.Unlock()
		st.log.WithField("jid", st.jid.String()).Info("connection replaced by resumption")
		return
	}
	if resumable && l.smID != "" && !st.srv.isClosing() {
		// Unacknowledged stanzas stay with the session; the connection
		// is closed, so nothing can be counted after this.
		l.detach(st.c.DetachAcks())
		l.mu.Unlock()
		st.srv.smChanged()
		st.log.WithFields(logrus.Fields{"jid": st.jid.String(), "timeout": l.resume}).Info("session detached, waiting for resumption")
		return
	}
	l.mu.Unlock()
	if l.endIf(func() bool { return l.owner == st }, st.c, nil) {
		st.log.WithField("jid", st.jid.String()).Info("session ended")
	} else {
		st.log.WithField("jid", st.jid.String()).Info("connection replaced by resumption")
	}
}

// resumable reports whether the stream ended in a way a client may resume
// from: the connection dropped or went silent. A clean close, a stream
// error for something the client did, or this server closing the stream
// (conflict, shutdown, too many unacknowledged stanzas) ends the session.
func (st *Stream) resumable(err error) bool {
	if !st.smOn || errors.Is(err, errStreamClosed) || st.c.StreamClosed() {
		return false
	}
	var se *streamError
	if errors.As(err, &se) {
		return se.cond == "connection-timeout"
	}
	return true
}
