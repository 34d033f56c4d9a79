// Package version answers XEP-0092 software version queries to the server.
// Operators may hide the operating system (config server.hide_os) because
// it helps an attacker choose exploits and tells a legitimate client
// nothing it needs.
//
// It must not import c2s, s2s, transports or other modules.
package version

import (
	"context"
	"runtime"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NS is the XEP-0092 namespace.
const NS = "jabber:iq:version"

// DefaultName is used when no name is configured.
const DefaultName = "Gatehouse"

// Module is the software version responder.
type Module struct {
	name, version, os string
}

// New returns the module. name is the product name ("" means DefaultName),
// version the build version; hideOS leaves <os/> out of replies.
func New(name, version string, hideOS bool) *Module {
	if name == "" {
		name = DefaultName
	}
	m := &Module{name: name, version: version}
	if !hideOS {
		m.os = runtime.GOOS
	}
	return m
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	bus.HandleIQ(hook.AddrHost, NS, "query", m.handle)
	bus.AddFeature(hook.AddrHost, NS)
}

func (m *Module) handle(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "software version is read-only")
	}
	q := stanza.NewElement(NS, "query")
	q.Append(stanza.NewElement(NS, "name").AppendText(m.name))
	q.Append(stanza.NewElement(NS, "version").AppendText(m.version))
	if m.os != "" {
		q.Append(stanza.NewElement(NS, "os").AppendText(m.os))
	}
	return st.Result(q)
}
