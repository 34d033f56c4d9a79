package archive

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NSStanzaID is the XEP-0359 namespace of <origin-id/>.
const NSStanzaID = "urn:xmpp:sid:0"

// RefusedText is the text of the resource-constraint bounce a crossing gets
// when it could not be recorded.
const RefusedText = "the compliance archive is unavailable; try again later"

// Boundary is the router.Boundary the server installs: it asks the inner
// boundary (the policy) for a decision, then commits the crossing with
// that decision to the archive before returning. When the row cannot be
// committed the crossing is refused with resource-constraint, unless the
// boundary was built fail-open.
type Boundary struct {
	inner router.Boundary
	a     *Archive
	o     BoundaryOptions
	log   logrus.FieldLogger
	limit logLimiter
}

// BoundaryOptions configure a Boundary.
type BoundaryOptions struct {
	// FailOpen lets a crossing through unrecorded when the archive fails
	// (on_archive_failure: allow); the failure is logged either way.
	FailOpen bool
	// Presence records availability presence (available, unavailable,
	// probes and presence errors) too. Subscription requests and answers
	// are recorded either way.
	Presence bool
	// Log receives the operator-level line for every crossing that could
	// not be recorded (at most one a second); nil: the archive's log.
	Log logrus.FieldLogger
	// Attribute names the account behind a local address that speaks for
	// one (a group-chat nick); the row's account is then that user, its
	// local_jid the address as it crossed. nil: rows name the address.
	Attribute func(jid.JID) (jid.JID, bool)
}

// NewBoundary wraps inner (nil: router.PassThrough).
func NewBoundary(inner router.Boundary, a *Archive, o BoundaryOptions) *Boundary {
	if inner == nil {
		inner = router.PassThrough{}
	}
	log := o.Log
	if log == nil {
		log = a.log
	}
	return &Boundary{inner: inner, a: a, o: o, log: log, limit: logLimiter{every: time.Second}}
}

// Inner returns the wrapped boundary.
func (b *Boundary) Inner() router.Boundary { return b.inner }

// Records reports whether a stanza is in scope: everything but
// availability presence, which only Presence adds.
func Records(st *stanza.Stanza, presence bool) bool {
	if st.Kind != stanza.KindPresence || presence {
		return true
	}
	switch st.Type {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		return true
	}
	return false
}

// Cross implements router.Boundary.
func (b *Boundary) Cross(ctx context.Context, env *router.Envelope) (router.Decision, error) {
	if !Records(env.Stanza, b.o.Presence) {
		return b.inner.Cross(ctx, env)
	}
	// Serialize before the policy runs: it may redact or add a
	// disclaimer, and the record keeps what the sender sent.
	rec := FromEnvelope(env)
	if b.o.Attribute != nil {
		if local, err := jid.Parse(rec.LocalJID); err == nil {
			if real, ok := b.o.Attribute(local); ok {
				rec.Account = real.Bare().String()
			}
		}
	}
	files := fileOffers(env.Stanza)
	dec, err := b.inner.Cross(ctx, env)
	if err != nil {
		// The router refuses the crossing; record the attempt if we can
		// (what was refused and why belongs in the record too).
		rec.Verdict, rec.DenyCondition, rec.DenyText = Error, string(stanza.ResourceConstraint), err.Error()
		if aerr := b.record(ctx, rec, files, ""); aerr != nil {
			b.failed(env, aerr)
		}
		return dec, err
	}
	rec.SetDecision(dec, env.Stanza)
	if aerr := b.record(ctx, rec, files, dec.Scan); aerr != nil {
		b.failed(env, aerr)
		if b.o.FailOpen || dec.Verdict == router.Deny {
			return dec, nil
		}
		return router.Decision{Verdict: router.Deny, Condition: stanza.ResourceConstraint, Text: RefusedText,
			Rule: "archive", PolicyVersion: dec.PolicyVersion}, nil
	}
	return dec, nil
}

// record commits the stanza row, and with it a file_transfers row for
// each file the stanza offers.
func (b *Boundary) record(ctx context.Context, rec *Stanza, files []fileOffer, scan string) error {
	if len(files) == 0 {
		_, err := b.a.Append(ctx, rec)
		return err
	}
	return b.a.appendWithFiles(ctx, rec, files, scan)
}

// failed writes the operator-level log line for a crossing the archive
// could not record, at most once a second (the rest are counted).
func (b *Boundary) failed(env *router.Envelope, err error) {
	suppressed, ok := b.limit.allow()
	if !ok {
		return
	}
	st := env.Stanza
	action := "refused with resource-constraint"
	if b.o.FailOpen {
		action = "delivered UNRECORDED (on_archive_failure: allow)"
	}
	b.log.WithError(err).WithFields(logrus.Fields{
		"route_seq": env.Seq, "from": st.From.String(), "to": st.To.String(),
		"src_zone": env.Src.Zone.String(), "dst_zone": env.Dst.Zone.String(), "suppressed": suppressed,
	}).Error("compliance archive: crossing not recorded; " + action)
}

// logLimiter lets one event through per interval and counts the others.
type logLimiter struct {
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow() (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return 0, false
	}
	l.last = now
	n := l.suppressed
	l.suppressed = 0
	return n, true
}

// FromEnvelope builds the stanza record for a routed envelope whose Src
// and Dst zones are set: a crossing (In or Out) or, when both are local,
// internal traffic. The verdict is Allow until SetDecision.
func FromEnvelope(env *router.Envelope) *Stanza {
	st := env.Stanza
	r := &Stanza{Verdict: Allow, ConnID: env.Src.Conn, RouteSeq: env.Seq}
	var local, peer jid.JID
	var outside router.Endpoint
	switch {
	case env.Src.Zone == router.ZoneLocal && env.Dst.Zone == router.ZoneLocal:
		r.Direction, r.Zone = Internal, ZoneLocal
		local, peer, outside = st.From, st.To, env.Dst
	case env.Src.Zone == router.ZoneLocal:
		r.Direction = Out
		local, peer, outside = st.From, st.To, env.Dst
	default:
		r.Direction = In
		local, peer, outside = st.To, st.From, env.Src
	}
	if r.Zone == "" {
		r.Zone = Zone(outside.Zone.String())
		if outside.Zone != router.ZoneRemote && outside.Zone != router.ZoneTransport {
			r.Zone = ZoneRemote
		}
	}
	r.Network = outside.Domain
	if r.Network == "" {
		r.Network = peer.Domainpart()
	}
	r.Account, r.LocalJID = local.Bare().String(), local.String()
	r.Peer, r.PeerJID = peer.Bare().String(), peer.String()
	if r.Zone == ZoneTransport && peer.Localpart() != "" {
		r.LegacyID = unescapeLocal(peer.Localpart())
	}
	r.Kind = st.Kind.String()
	r.Type = effectiveType(st)
	r.StanzaID = st.ID
	if o := st.Child(NSStanzaID, "origin-id"); o != nil {
		r.OriginID = o.AttrValue("id")
	}
	if st.Kind == stanza.KindMessage {
		r.Thread = childText(st, "thread")
		r.Subject = childText(st, "subject")
		r.Body = st.Body()
	}
	r.Raw = string(st.AppendXML(nil, stanza.NSClient))
	return r
}

// SetDecision stores the boundary's decision, and what was delivered when
// the policy changed the stanza.
func (r *Stanza) SetDecision(dec router.Decision, delivered *stanza.Stanza) {
	r.Rule, r.PolicyVersion = dec.Rule, dec.PolicyVersion
	if dec.Verdict == router.Deny {
		r.Verdict = Deny
		r.DenyCondition = string(dec.Condition)
		if r.DenyCondition == "" {
			r.DenyCondition = string(stanza.PolicyViolation) // what the router bounces with
		}
		r.DenyText = dec.Text
		return
	}
	r.Verdict = Allow
	if delivered != nil {
		if out := string(delivered.AppendXML(nil, stanza.NSClient)); out != r.Raw {
			r.RawDelivered = out
		}
	}
}

// effectiveType makes the RFC 6120 default types explicit, so reviewers
// can write type = 'normal' instead of type IS NULL.
func effectiveType(st *stanza.Stanza) string {
	if st.Type != "" {
		return st.Type
	}
	switch st.Kind {
	case stanza.KindMessage:
		return "normal"
	case stanza.KindPresence:
		return "available"
	}
	return "get" // an iq without a type is invalid; the stream layer refuses it
}

// unescapeLocal undoes XEP-0106 JID escaping (\20 for a space, \40 for @
// ...), which transports use to carry legacy addresses in a localpart.
func unescapeLocal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+2 < len(s) {
			if c, ok := xep0106(s[i+1 : i+3]); ok {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// xep0106 maps an escape sequence's two hex digits to its character.
func xep0106(hex string) (byte, bool) {
	switch hex {
	case "20":
		return ' ', true
	case "22":
		return '"', true
	case "26":
		return '&', true
	case "27":
		return '\'', true
	case "2f":
		return '/', true
	case "3a":
		return ':', true
	case "3c":
		return '<', true
	case "3e":
		return '>', true
	case "40":
		return '@', true
	case "5c":
		return '\\', true
	}
	return 0, false
}

func childText(st *stanza.Stanza, local string) string {
	if e := st.Child("", local); e != nil {
		return e.Text()
	}
	return ""
}
