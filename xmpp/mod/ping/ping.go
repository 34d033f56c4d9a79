// Package ping answers XEP-0199 pings addressed to the server. Clients use
// them to check that the stream and the server are alive (and the test
// harness uses them as a round-trip barrier), so the answer must come from
// the server and never be forwarded. A user's ping to their own bare JID
// reaches the same handler through the bus's own-account fallback.
//
// The server's own idle pings to clients are sent by c2s; this package
// only answers. It must not import c2s, s2s, transports or other modules.
package ping

import (
	"context"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NS is the XEP-0199 namespace.
const NS = "urn:xmpp:ping"

// Module is the ping responder.
type Module struct{}

// New returns the module.
func New() *Module { return &Module{} }

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	bus.HandleIQ(hook.AddrHost, NS, "ping", m.handle)
	bus.AddFeature(hook.AddrHost, NS)
}

func (m *Module) handle(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		// XEP-0199 §3 defines only an iq get.
		return stanza.Bounce(st, stanza.BadRequest, "a ping is an iq get")
	}
	return st.Result()
}
