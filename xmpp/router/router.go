// Package router is the one place that hands a stanza from its ingress to a
// deliverer. It knows which side of the company border each address is on
// and calls the Boundary exactly once for every stanza that crosses it.
//
// It must not import policy, logging/archive, c2s, s2s or transports: it sees
// the boundary and the deliverers only through the interfaces below.
package router

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// Zone says on which side of the border an address lives.
type Zone uint8

// Zones.
const (
	ZoneNone      Zone = iota
	ZoneLocal          // hosted domains and their services
	ZoneRemote         // other XMPP servers (s2s)
	ZoneTransport      // components bridging other networks
)

func (z Zone) String() string {
	switch z {
	case ZoneLocal:
		return "local"
	case ZoneRemote:
		return "remote"
	case ZoneTransport:
		return "transport"
	}
	return "none"
}

// Endpoint is one end of a routed stanza.
type Endpoint struct {
	Zone Zone
	// Domain is the domain the ingress authenticated (never taken from the
	// stanza's 'from'), or the destination domain.
	Domain string
	// Conn is the ingress connection id; 0 when the server generated the
	// stanza.
	Conn uint64
}

// Flags mark envelopes.
type Flags uint8

// Envelope flags.
const (
	// BoundaryDone marks stanzas the boundary itself emitted (bounces,
	// notices): they are not inspected again.
	BoundaryDone Flags = 1 << iota
)

// Envelope carries a stanza through the router.
type Envelope struct {
	Seq    uint64
	Stanza *stanza.Stanza
	Src    Endpoint
	Dst    Endpoint
	Flags  Flags
}

// Deliverer takes a routed stanza towards its destination. It must not
// block on the network: it enqueues.
type Deliverer interface {
	Deliver(ctx context.Context, env *Envelope) error
}

// Verdict is the boundary's decision.
type Verdict uint8

// Verdicts.
const (
	Allow Verdict = iota
	Deny
)

// Decision is what the boundary returns for a crossing.
type Decision struct {
	Verdict Verdict
	// Condition and Text go into the bounce when Verdict is Deny.
	Condition stanza.Condition
	Text      string
	// Rule names the policy rule that decided; PolicyVersion the policy
	// that held it. Both go into the compliance archive.
	Rule          string
	PolicyVersion string
	// Scan is the virus scan of the files the stanza offers, for the
	// archive's file_transfers rows: "clean", "infected: NAME",
	// "unscanned: REASON", "clean (scanned at upload)"; "" when no file
	// was scanned.
	Scan string
}

// Boundary inspects (and records) every stanza that crosses between the
// local zone and the outside. It may replace env.Stanza (e.g. redaction).
type Boundary interface {
	Cross(ctx context.Context, env *Envelope) (Decision, error)
}

// PassThrough is a Boundary that allows everything.
type PassThrough struct{}

// Cross allows the crossing.
func (PassThrough) Cross(context.Context, *Envelope) (Decision, error) {
	return Decision{Verdict: Allow}, nil
}

// Observer is told about every routed stanza and boundary decision
// (metrics). It must be fast and must not block.
type Observer interface {
	Routed(src, dst Zone)
	Decided(d Decision, err error)
}

// Local is the local zone's side of routing: the hook bus. Outbound runs
// sender-side processing for stanzas from local client sessions (roster
// updates on subscriptions, presence broadcast, carbons) and reports whether
// it consumed the stanza. Deliver handles stanzas addressed to the local zone.
type Local interface {
	Deliverer
	Outbound(ctx context.Context, env *Envelope) (handled bool)
}

// Resolver maps a destination domain to its zone.
type Resolver interface {
	ZoneOf(domain string) Zone
}

// Errors from Route.
var (
	ErrNoRoute  = errors.New("router: no route")
	ErrRelay    = errors.New("router: outside to outside is not relayed")
	ErrDenied   = errors.New("router: denied at the boundary")
	ErrBoundary = errors.New("router: boundary failed")
)

// Router routes envelopes. Construct with New; the zero value is not usable.
type Router struct {
	seq       atomic.Uint64
	resolve   Resolver
	local     Local
	remote    Deliverer
	transport Deliverer
	boundary  Boundary
	observer  Observer
}

// Config wires a router. Remote and Transport may be nil (stanzas to those
// zones then bounce with remote-server-not-found).
type Config struct {
	Resolver  Resolver
	Local     Local
	Remote    Deliverer
	Transport Deliverer
	Boundary  Boundary
}

// New returns a router.
func New(cfg Config) *Router {
	b := cfg.Boundary
	if b == nil {
		b = PassThrough{}
	}
	return &Router{resolve: cfg.Resolver, local: cfg.Local, remote: cfg.Remote, transport: cfg.Transport, boundary: b}
}

// SetRemote installs the deliverer for the remote zone (s2s).
func (r *Router) SetRemote(d Deliverer) { r.remote = d }

// SetTransport installs the deliverer for the transport zone.
func (r *Router) SetTransport(d Deliverer) { r.transport = d }

// SetObserver installs an observer (before serving).
func (r *Router) SetObserver(o Observer) { r.observer = o }

// SetBoundary replaces the boundary (before serving).
func (r *Router) SetBoundary(b Boundary) { r.boundary = b }

// Route sends env towards its destination: assign Seq, run sender-side
// processing for local client stanzas, resolve the destination zone, refuse
// outside→outside, call the boundary once when the sides differ, then
// deliver. Failures bounce to the sender where the stanza type allows it; the
// returned error says what happened (for logs and tests).
func (r *Router) Route(ctx context.Context, env *Envelope) error {
	if env.Seq == 0 {
		env.Seq = r.seq.Add(1)
	}
	if env.Src.Zone == ZoneLocal && env.Src.Conn != 0 {
		if r.local.Outbound(ctx, env) {
			return nil
		}
	}
	return r.forward(ctx, env)
}

// Forward routes without sender-side processing; modules use it for stanzas
// they generated on a user's behalf after doing that processing themselves.
func (r *Router) Forward(ctx context.Context, env *Envelope) error {
	if env.Seq == 0 {
		env.Seq = r.seq.Add(1)
	}
	return r.forward(ctx, env)
}

func (r *Router) forward(ctx context.Context, env *Envelope) error {
	st := env.Stanza
	domain := st.To.Domainpart()
	if domain == "" {
		// No 'to': the sender's own server (RFC 6120 §10.3).
		domain = env.Src.Domain
	}
	zone := r.resolve.ZoneOf(domain)
	env.Dst = Endpoint{Zone: zone, Domain: domain}
	if env.Src.Zone != ZoneLocal && zone != ZoneLocal {
		r.bounce(ctx, env, stanza.NotAllowed, "relaying between outside networks is not allowed")
		return ErrRelay
	}
	if env.Src.Zone != zone && env.Flags&BoundaryDone == 0 {
		dec, err := r.boundary.Cross(ctx, env)
		if r.observer != nil {
			r.observer.Decided(dec, err)
		}
		if err != nil {
			r.bounce(ctx, env, stanza.ResourceConstraint, "the message could not be recorded; try again later")
			return fmt.Errorf("%w: %w", ErrBoundary, err)
		}
		env.Flags |= BoundaryDone
		if dec.Verdict == Deny {
			cond := dec.Condition
			if cond == "" {
				cond = stanza.PolicyViolation
			}
			r.bounce(ctx, env, cond, dec.Text)
			return ErrDenied
		}
		st = env.Stanza
	}
	var d Deliverer
	switch zone {
	case ZoneLocal:
		d = r.local
	case ZoneRemote:
		d = r.remote
	case ZoneTransport:
		d = r.transport
	}
	if d == nil {
		r.bounce(ctx, env, stanza.RemoteServerNotFound, "")
		return fmt.Errorf("%w to %s", ErrNoRoute, domain)
	}
	if r.observer != nil {
		r.observer.Routed(env.Src.Zone, zone)
	}
	return d.Deliver(ctx, env)
}

// Bounce routes an error reply for env's stanza back to its sender. The
// reply skips the boundary when the original never crossed it.
func (r *Router) Bounce(ctx context.Context, env *Envelope, cond stanza.Condition, text string) {
	r.bounce(ctx, env, cond, text)
}

func (r *Router) bounce(ctx context.Context, env *Envelope, cond stanza.Condition, text string) {
	reply := stanza.Bounce(env.Stanza, cond, text)
	if reply == nil {
		return
	}
	if reply.From.Equal(zeroJID) && env.Dst.Domain != "" {
		reply.From = domainJID(env.Dst.Domain)
	}
	// A bounce generated here (or by the boundary) is not a new crossing
	// that policy could block: it only tells the sender what happened.
	// The server itself speaks, so the source is local.
	b := &Envelope{Stanza: reply, Src: Endpoint{Zone: ZoneLocal, Domain: env.Dst.Domain}, Flags: BoundaryDone}
	_ = r.Forward(ctx, b)
}

var zeroJID jid.JID

func domainJID(domain string) jid.JID {
	j, err := jid.New("", domain, "")
	if err != nil {
		return zeroJID
	}
	return j
}
