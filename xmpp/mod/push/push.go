// Package push implements XEP-0357 push notifications on the user's
// server side: clients enable and disable app servers for their account,
// and when a message arrives that no connected client will see (the
// account has no session, or its sessions wait for stream management
// resumption), each registered app server is sent a pubsub publish with a
// summary form. The publish goes through the router from the account's
// bare JID, so an app server on another domain is a boundary crossing
// like any other: policy applies and the archive records it.
//
// By default the summary says only that something arrived (message
// count); push.include_body adds sender and body, which then leave the
// company through the app server and the phone vendor's push service.
//
// It must not import c2s, s2s, transports or other modules; whether a
// session is away is asked through the Away function the server wires.
package push

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
)

// Namespaces.
const (
	NS         = "urn:xmpp:push:0"
	nsPubSub   = "http://jabber.org/protocol/pubsub"
	nsData     = "jabber:x:data"
	nsSummary  = "urn:xmpp:push:summary"
	idPrefix   = "push-"
	hookPrio   = 1000 // before delivery, which consumes the message
	maxPending = 1 << 20
)

// Config configures the module.
type Config struct {
	MaxPerUser  int
	IncludeBody bool
}

// Module is the push notification service of the user's server.
type Module struct {
	cfg   Config
	store *Store
	log   logrus.FieldLogger
	away  func(full jid.JID) bool
	bus   *hook.Bus

	mu      sync.Mutex
	pending map[string]int // messages notified since the user was last online
}

// New returns the module over store. away reports a session that lost
// its connection and waits to be resumed (nil: none ever is).
func New(cfg Config, store *Store, away func(jid.JID) bool, log logrus.FieldLogger) *Module {
	if away == nil {
		away = func(jid.JID) bool { return false }
	}
	if cfg.MaxPerUser <= 0 {
		cfg.MaxPerUser = 10
	}
	return &Module{cfg: cfg, store: store, away: away, log: log, pending: make(map[string]int)}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.HandleIQ(hook.AddrHost, NS, "enable", m.enable)
	bus.HandleIQ(hook.AddrHost, NS, "disable", m.disable)
	// XEP-0357 §4: advertised on the account.
	bus.AddFeature(hook.AddrBare, NS)
	for _, a := range []hook.Addr{hook.AddrBare, hook.AddrFull} {
		bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindMessage, Addr: a}, hookPrio, m.inbound)
	}
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindIQ, Addr: hook.AddrBare}, hookPrio, m.answer)
	bus.OnSessionBound(0, func(_ context.Context, s *sessions.Session) {
		m.mu.Lock()
		delete(m.pending, s.JID.Localpart()+"@"+s.JID.Domainpart())
		m.mu.Unlock()
	})
}

// own checks a request comes from a local account about itself.
func own(env *router.Envelope) bool {
	st := env.Stanza
	return env.Src.Zone == router.ZoneLocal && st.From.Localpart() != "" && st.To.Domainpart() == st.From.Domainpart() &&
		(st.To.Localpart() == "" || st.To.Localpart() == st.From.Localpart())
}

func (m *Module) enable(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "set" {
		return stanza.Bounce(st, stanza.BadRequest, "enable is an iq set")
	}
	if !own(env) {
		return stanza.Bounce(st, stanza.Forbidden, "push is enabled by the account itself")
	}
	e := st.Payload()
	svc, err := jid.Parse(e.AttrValue("jid"))
	node := e.AttrValue("node")
	if err != nil || svc.Domainpart() == "" || node == "" {
		return stanza.Bounce(st, stanza.BadRequest, "enable needs the app server's 'jid' and a 'node'")
	}
	opts := []byte{}
	if x := e.Child(nsData, "x"); x != nil {
		opts = x.AppendXML(nil, "", "")
	}
	if err := m.store.Put(ctx, st.From.Localpart(), Registration{Service: svc.String(), Node: node, Options: opts}, m.cfg.MaxPerUser); err != nil {
		m.log.WithError(err).Error("push enable failed")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	m.log.WithFields(logrus.Fields{"user": st.From.Bare().String(), "service": svc.String()}).Info("push enabled")
	return st.Result()
}

func (m *Module) disable(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "set" {
		return stanza.Bounce(st, stanza.BadRequest, "disable is an iq set")
	}
	if !own(env) {
		return stanza.Bounce(st, stanza.Forbidden, "push is disabled by the account itself")
	}
	e := st.Payload()
	svc, err := jid.Parse(e.AttrValue("jid"))
	if err != nil || svc.Domainpart() == "" {
		return stanza.Bounce(st, stanza.BadRequest, "disable needs the app server's 'jid'")
	}
	if _, err := m.store.Delete(ctx, st.From.Localpart(), svc.String(), e.AttrValue("node")); err != nil {
		m.log.WithError(err).Error("push disable failed")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	return st.Result()
}

// inbound notifies the app servers of a message no connected client will
// see now. It never consumes the message.
func (m *Module) inbound(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	switch st.Type {
	case "error", "groupchat", "headline":
		return false
	}
	if st.Child("", "body") == nil || st.To.Localpart() == "" {
		return false
	}
	if m.live(st.To) {
		return false
	}
	user := st.To.Localpart()
	regs, err := m.store.List(ctx, user)
	if err != nil {
		m.log.WithError(err).Error("push: reading registrations")
		return false
	}
	if len(regs) == 0 {
		return false
	}
	bare := st.To.Bare()
	m.mu.Lock()
	if len(m.pending) >= maxPending {
		clear(m.pending)
	}
	m.pending[bare.String()]++
	count := m.pending[bare.String()]
	m.mu.Unlock()
	for _, r := range regs {
		m.notify(ctx, bare, r, count, st)
	}
	return false
}

// live reports whether a connected session will get a message to 'to'
// (RFC 6121 §8.5: a full JID's session, else the bare JID's available
// non-negative-priority resources).
func (m *Module) live(to jid.JID) bool {
	table := m.bus.Sessions()
	if to.Resourcepart() != "" {
		if s := table.Get(to); s != nil {
			return !m.away(s.JID)
		}
	}
	for _, s := range table.Resources(to.Bare()) {
		if s.Available() && s.Priority() >= 0 && !m.away(s.JID) {
			return true
		}
	}
	return false
}

func (m *Module) notify(ctx context.Context, user jid.JID, r Registration, count int, msg *stanza.Stanza) {
	svc, err := jid.Parse(r.Service)
	if err != nil {
		return
	}
	form := stanza.NewElement(nsData, "x", "type", "form")
	form.Append(field("FORM_TYPE", nsSummary), field("message-count", strconv.Itoa(count)))
	if m.cfg.IncludeBody {
		form.Append(field("last-message-sender", msg.From.String()), field("last-message-body", msg.Body()))
	}
	pub := stanza.NewElement(nsPubSub, "pubsub").Append(
		stanza.NewElement(nsPubSub, "publish", "node", r.Node).Append(
			stanza.NewElement(nsPubSub, "item").Append(
				stanza.NewElement(NS, "notification").Append(form))))
	if len(r.Options) > 0 {
		if x := parse(r.Options); x != nil {
			pub.Append(stanza.NewElement(nsPubSub, "publish-options").Append(x))
		}
	}
	iq := &stanza.Stanza{Kind: stanza.KindIQ, Type: "set", ID: idPrefix + newID(), From: user, To: svc}
	iq.Append(pub)
	m.bus.Send(ctx, iq)
}

// answer takes the app servers' replies to notifications. An error other
// than a temporary one disables the registration (XEP-0357 §6: the app
// server no longer wants them).
func (m *Module) answer(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if st.IsRequest() || !strings.HasPrefix(st.ID, idPrefix) || st.From.Domainpart() == "" {
		return false
	}
	if st.Type == "error" {
		if e := st.Child("", "error"); e != nil && e.AttrValue("type") != "wait" {
			n, err := m.store.Delete(ctx, st.To.Localpart(), st.From.String(), "")
			if err == nil && n > 0 {
				m.log.WithFields(logrus.Fields{"user": st.To.Bare().String(), "service": st.From.String(), "error": st.ErrorCondition()}).Info("push disabled: the app server refused a notification")
			}
		}
	}
	return true
}

func field(v, value string) *stanza.Element {
	return stanza.NewElement(nsData, "field", "var", v).Append(stanza.NewElement(nsData, "value").AppendText(value))
}

func parse(b []byte) *stanza.Element {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil
		}
		if se, ok := tok.(xml.StartElement); ok {
			e, err := stanza.ReadElement(d, se)
			if err != nil {
				return nil
			}
			return e
		}
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
