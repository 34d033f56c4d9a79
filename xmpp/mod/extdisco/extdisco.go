// Package extdisco answers XEP-0215 external service discovery: the STUN
// and TURN servers (and the like) clients need for calls, from the
// configuration. Services with a shared secret get short-lived
// credentials per request in the TURN REST scheme that coturn implements
// (use-auth-secret): username "expiry:account", password
// base64(HMAC-SHA1(secret, username)).
//
// Only the server's own accounts are answered: credentials are not for
// strangers. It must not import c2s, s2s, transports or other modules.
package extdisco

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NS is the XEP-0215 namespace.
const NS = "urn:xmpp:extdisco:2"

// DefaultTTL is the lifetime of secret-derived credentials when the
// service sets none.
const DefaultTTL = 24 * time.Hour

// Service is one external service.
type Service struct {
	Type, Host, Transport, Name string
	Port                        int
	Username, Password          string // fixed credentials
	Secret                      string // TURN REST shared secret
	TTL                         time.Duration
}

// Module is the responder.
type Module struct {
	services []Service
	now      func() time.Time
	hosts    func(string) bool
}

// New returns the module; now may be nil (time.Now).
func New(services []Service, now func() time.Time) *Module {
	if now == nil {
		now = time.Now
	}
	return &Module{services: services, now: now}
}

// Register attaches the module to the bus. Without services it
// advertises nothing, so clients do not ask.
func (m *Module) Register(bus *hook.Bus) {
	m.hosts = bus.IsHost
	if len(m.services) == 0 {
		return
	}
	bus.HandleIQ(hook.AddrHost, NS, "services", m.listServices)
	bus.HandleIQ(hook.AddrHost, NS, "credentials", m.credentials)
	bus.AddFeature(hook.AddrHost, NS)
}

func (m *Module) local(env *router.Envelope) bool {
	f := env.Stanza.From
	return env.Src.Zone == router.ZoneLocal && f.Localpart() != "" && m.hosts(f.Domainpart())
}

// listServices answers <services/> (XEP-0215 §3.2), optionally filtered by type.
func (m *Module) listServices(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "services is an iq get")
	}
	if !m.local(env) {
		return stanza.Bounce(st, stanza.Forbidden, "external services are for this server's accounts")
	}
	typ := st.Payload().AttrValue("type")
	out := stanza.NewElement(NS, "services")
	if typ != "" {
		out.SetAttr("type", typ)
	}
	for _, s := range m.services {
		if typ == "" || s.Type == typ {
			out.Append(m.element(s, st.From.Localpart()))
		}
	}
	return st.Result(out)
}

// credentials answers <credentials/> (XEP-0215 §3.3) for one service.
func (m *Module) credentials(_ context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "credentials is an iq get")
	}
	if !m.local(env) {
		return stanza.Bounce(st, stanza.Forbidden, "external services are for this server's accounts")
	}
	q := st.Payload().Child(NS, "service")
	if q == nil {
		return stanza.Bounce(st, stanza.BadRequest, "name the service")
	}
	for _, s := range m.services {
		if s.Host != q.AttrValue("host") || s.Type != q.AttrValue("type") {
			continue
		}
		if p := q.AttrValue("port"); p != "" && p != strconv.Itoa(s.Port) {
			continue
		}
		return st.Result(stanza.NewElement(NS, "credentials").Append(m.element(s, st.From.Localpart())))
	}
	return stanza.Bounce(st, stanza.ItemNotFound, "no such service")
}

func (m *Module) element(s Service, user string) *stanza.Element {
	e := stanza.NewElement(NS, "service", "type", s.Type, "host", s.Host, "port", strconv.Itoa(s.Port))
	if s.Transport != "" {
		e.SetAttr("transport", s.Transport)
	}
	if s.Name != "" {
		e.SetAttr("name", s.Name)
	}
	switch {
	case s.Secret != "":
		ttl := s.TTL
		if ttl <= 0 {
			ttl = DefaultTTL
		}
		exp := m.now().Add(ttl).UTC().Truncate(time.Second)
		u, p := RESTCredentials(s.Secret, user, exp)
		e.SetAttr("username", u)
		e.SetAttr("password", p)
		e.SetAttr("expires", exp.Format(time.RFC3339))
		e.SetAttr("restricted", "1")
	case s.Username != "" || s.Password != "":
		e.SetAttr("username", s.Username)
		e.SetAttr("password", s.Password)
	}
	return e
}

// RESTCredentials returns the TURN REST username and password for user,
// valid until exp, under secret.
func RESTCredentials(secret, user string, exp time.Time) (string, string) {
	u := strconv.FormatInt(exp.Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(u))
	return u, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
