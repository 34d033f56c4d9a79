// Package entitytime answers XEP-0202 entity time queries to the server, so
// clients can estimate clock skew (e.g. to judge delayed-delivery stamps).
//
// It must not import c2s, s2s, transports or other modules.
package entitytime

import (
	"context"
	"time"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NS is the XEP-0202 namespace.
const NS = "urn:xmpp:time"

// Module is the entity time responder.
type Module struct {
	now func() time.Time
}

// New returns the module. now is the clock (nil: time.Now); its location is
// the zone reported in <tzo/>.
func New(now func() time.Time) *Module {
	if now == nil {
		now = time.Now
	}
	return &Module{now: now}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	bus.HandleIQ(hook.AddrHost, NS, "time", m.handle)
	bus.AddFeature(hook.AddrHost, NS)
}

func (m *Module) handle(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "entity time is read-only")
	}
	return st.Result(Element(m.now()))
}

// Element builds <time xmlns='urn:xmpp:time'/> for t. The offset is a
// XEP-0082 TZD ("Z" for UTC, otherwise ±hh:mm) and utc is whole seconds in
// UTC, which every client parser accepts.
func Element(t time.Time) *stanza.Element {
	tzo := stanza.NewElement(NS, "tzo").AppendText(t.Format("Z07:00"))
	utc := stanza.NewElement(NS, "utc").AppendText(t.UTC().Format("2006-01-02T15:04:05Z"))
	return stanza.NewElement(NS, "time").Append(tzo, utc)
}
