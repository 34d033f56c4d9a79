package s2s

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"net"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/conn"
	"gatehouse/xmpp/stanza"
)

// Stream negotiation namespaces.
const (
	nsTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBidi     = "urn:xmpp:bidi"
	nsBidiFeat = "urn:xmpp:features:bidi"
	nsPing     = "urn:xmpp:ping"
)

// ALPN is the protocol name of direct TLS s2s (XEP-0368).
const ALPN = "xmpp-server"

// Authentication methods, as reported in link status and logs.
const (
	MethodSASLExternal = "sasl-external"
	MethodDialback     = "dialback"
	// MethodDialbackCert: a dialback request answered from the peer's
	// verified certificate, without a callback (XEP-0344 §2.4).
	MethodDialbackCert = "dialback-cert"
)

// streamError ends a stream with an RFC 6120 §4.9.3 condition.
type streamError struct{ cond, text string }

func (e *streamError) Error() string { return "s2s: stream error " + e.cond + ": " + e.text }

func streamErr(cond, text string) error { return &streamError{cond, text} }

// errStreamClosed: the peer closed its stream.
var errStreamClosed = errors.New("s2s: peer closed the stream")

// readFailures maps read errors to stream errors, in the order checked.
var readFailures = []struct {
	err        error
	cond, text string
}{
	{conn.ErrTooBig, "policy-violation", "stanza too large"},
	{conn.ErrTooDeep, "policy-violation", "XML nested too deeply"},
	{conn.ErrRestricted, "restricted-xml", "comments, processing instructions and DTDs are not allowed"},
	{conn.ErrNotWellFormed, "not-well-formed", "the XML is not well-formed"},
	{conn.ErrIdle, "connection-timeout", "no data received in time"},
}

func readFailure(err error) error {
	if errors.Is(err, conn.ErrStreamClosed) {
		return errStreamClosed
	}
	for _, f := range readFailures {
		if errors.Is(err, f.err) {
			return streamErr(f.cond, f.text)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return streamErr("connection-timeout", "stream negotiation took too long")
	}
	return err
}

// header is a parsed stream header.
type header struct {
	to, from, id, version, defaultNS string
	dialback                         bool // declares xmlns:db (XEP-0220 support)
	ok                               bool // stream:stream in the streams namespace
}

func parseHeader(start xml.StartElement) header {
	h := header{ok: start.Name.Local == "stream" && start.Name.Space == stanza.NSStream}
	for _, a := range start.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to":
			h.to = a.Value
		case a.Name.Space == "" && a.Name.Local == "from":
			h.from = a.Value
		case a.Name.Space == "" && a.Name.Local == "id":
			h.id = a.Value
		case a.Name.Space == "" && a.Name.Local == "version":
			h.version = a.Value
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			h.defaultNS = a.Value
		case a.Name.Space == "xmlns" && a.Value == nsDialback:
			h.dialback = true
		}
	}
	return h
}

// check returns the stream error for a header that is not an XMPP 1.0
// server stream.
func (h header) check() error {
	switch {
	case !h.ok:
		return streamErr("invalid-namespace", "expected a stream:stream header in "+stanza.NSStream)
	case h.defaultNS != stanza.NSServer:
		return streamErr("invalid-namespace", "the default namespace must be jabber:server")
	case !versionOK(h.version):
		// Pre-1.0 servers have no STARTTLS; TLS is mandatory here.
		return streamErr("unsupported-version", "XMPP 1.0 is required")
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

// domainOf returns the canonical domain of a header or dialback address
// that must be a bare domain, or "".
func domainOf(s string) string {
	if s == "" {
		return ""
	}
	j, err := jid.Parse(s)
	if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		return ""
	}
	return j.Domainpart()
}

// streamHeader renders our stream header; empty attributes are left out.
func streamHeader(from, to, id string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'`)
	for _, a := range [][2]string{{"from", from}, {"to", to}, {"id", id}} {
		if a[1] == "" {
			continue
		}
		b.WriteString(" " + a[0] + "='")
		_ = xml.EscapeText(&b, []byte(a[1]))
		b.WriteString("'")
	}
	b.WriteString(` version='1.0' xml:lang='en'>`)
	return []byte(b.String())
}

// newStreamID returns a random stream id. It is the salt of dialback keys,
// so it must be unpredictable (XEP-0185 §4).
func newStreamID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func tlsVersion(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	return tls.VersionName(cs.Version)
}

// validTypes lists the stanza types of RFC 6120 §8.2.
var validTypes = map[stanza.Kind][]string{
	stanza.KindMessage:  {"", "normal", "chat", "groupchat", "headline", "error"},
	stanza.KindPresence: {"", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error"},
	stanza.KindIQ:       {"get", "set", "result", "error"},
}

// checkStanza validates a stanza's type and, for iq, its id and payload.
func checkStanza(s *stanza.Stanza) (stanza.Condition, string) {
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
