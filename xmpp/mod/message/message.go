// Package message delivers messages to local accounts by RFC 6121 §8 rules,
// keeps offline messages (XEP-0160, stamped per XEP-0203) and sends message
// carbons (XEP-0280).
//
// It must not import c2s, s2s, transports or other modules.
package message

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Namespaces.
const (
	NSCarbons = "urn:xmpp:carbons:2"
	NSForward = "urn:xmpp:forward:0"
	NSHints   = "urn:xmpp:hints"
	NSOffline = "msgoffline"
)

// Store is the offline storage this module needs.
type Store interface {
	StoreOffline(ctx context.Context, user string, stamp time.Time, xml []byte, max int) error
	TakeOffline(ctx context.Context, user string) ([]storage.OfflineMessage, error)
}

// Module is the message delivery module.
type Module struct {
	bus        *hook.Bus
	store      Store
	maxOffline int
	log        logrus.FieldLogger
	now        func() time.Time
}

// New returns the module. maxOffline 0 disables offline storage.
func New(store Store, maxOffline int, log logrus.FieldLogger, now func() time.Time) *Module {
	if now == nil {
		now = time.Now
	}
	return &Module{store: store, maxOffline: maxOffline, log: log, now: now}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindMessage, Addr: hook.AddrBare}, 0, m.toBare)
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindMessage, Addr: hook.AddrFull}, 0, m.toFull)
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindMessage, Addr: hook.AddrHost}, 0, m.toHost)
	for _, a := range []hook.Addr{hook.AddrNone, hook.AddrHost, hook.AddrBare, hook.AddrFull} {
		bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindMessage, Addr: a}, 0, m.outbound)
	}
	// Offline messages go out with the initial presence (XEP-0160 §3).
	bus.On(hook.Event{Dir: hook.Out, Kind: stanza.KindPresence, Addr: hook.AddrNone}, 100, m.initialPresence)
	bus.HandleIQ(hook.AddrHost, NSCarbons, "enable", m.carbonsIQ(true))
	bus.HandleIQ(hook.AddrHost, NSCarbons, "disable", m.carbonsIQ(false))
	bus.AddFeature(hook.AddrHost, NSCarbons, NSOffline)
}

func (m *Module) carbonsIQ(on bool) hook.IQHandler {
	return func(ctx context.Context, env *router.Envelope) *stanza.Stanza {
		st := env.Stanza
		if st.Type != "set" {
			return stanza.Bounce(st, stanza.BadRequest, "")
		}
		s := m.bus.Sessions().Get(st.From)
		if s == nil {
			return stanza.Bounce(st, stanza.NotAllowed, "only a client session can enable carbons")
		}
		s.SetCarbons(on)
		return st.Result()
	}
}

func (m *Module) toHost(ctx context.Context, env *router.Envelope) bool {
	// Messages to the server itself have no recipient (RFC 6121 §8.5.1).
	return true
}

// toFull applies RFC 6121 §8.5.3.
func (m *Module) toFull(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if s := m.bus.Sessions().Get(st.To); s != nil {
		_ = s.Send(st)
		m.carbonReceived(st, s)
		return true
	}
	switch st.Type {
	case "", "normal", "chat":
		return m.toBare(ctx, env)
	case "groupchat":
		m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
	}
	return true
}

// toBare applies RFC 6121 §8.5.2.
func (m *Module) toBare(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	switch st.Type {
	case "error":
		return true
	case "groupchat":
		m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
		return true
	}
	top := m.bus.Sessions().Top(st.To)
	if len(top) == 0 {
		if st.Type != "headline" {
			m.storeOffline(ctx, env)
		}
		return true
	}
	for _, s := range top {
		_ = s.Send(st)
	}
	m.carbonReceived(st, top...)
	return true
}

// storable reports whether a message is worth keeping offline: it has a
// body or encrypted payload and no no-store hint (XEP-0334, XEP-0160).
func storable(st *stanza.Stanza) bool {
	if st.Child(NSHints, "no-store") != nil || st.Child(NSHints, "no-permanent-store") != nil {
		return false
	}
	if st.Child("", "body") != nil {
		return true
	}
	for _, e := range st.Elements() {
		switch e.Name.Space {
		case "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:openpgp:0", "jabber:x:conference", "http://jabber.org/protocol/muc#user":
			return true
		}
		if e.Name.Local == "store" && e.Name.Space == NSHints {
			return true
		}
	}
	return false
}

func (m *Module) storeOffline(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	if !storable(st) {
		return
	}
	if m.maxOffline <= 0 {
		m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "the recipient is offline")
		return
	}
	err := m.store.StoreOffline(ctx, st.To.Localpart(), m.now(), st.AppendXML(nil, stanza.NSClient), m.maxOffline)
	switch {
	case errors.Is(err, storage.ErrOfflineFull):
		m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "the recipient's offline storage is full")
	case err != nil:
		m.log.WithError(err).WithField("user", st.To.Localpart()).Error("storing offline message")
		m.bus.Bounce(ctx, env, stanza.InternalServerError, "")
	default:
		// A resource of the user may have sent its initial presence while
		// the message was being stored, and flushed the offline store just
		// before the message landed in it. initialPresence marks the
		// session before it reads the store, so a marked session here means
		// that flush may have missed this message: flush again.
		for _, s := range m.bus.Sessions().Resources(st.To.Bare()) {
			if s.Value("offline-flushed") != nil {
				m.flushOffline(ctx, s)
				break
			}
		}
	}
}

// initialPresence flushes offline messages to a resource that becomes
// available with non-negative priority. It never consumes the presence.
func (m *Module) initialPresence(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if st.Type != "" || stanza.Priority(st) < 0 {
		return false
	}
	s := m.bus.Sessions().Get(st.From)
	if s == nil || s.Available() || s.Value("offline-flushed") != nil {
		return false
	}
	s.SetValue("offline-flushed", true)
	m.flushOffline(ctx, s)
	return false
}

// flushOffline delivers and removes the offline messages of s's user.
func (m *Module) flushOffline(ctx context.Context, s *sessions.Session) {
	user := s.JID.Localpart()
	msgs, err := m.store.TakeOffline(ctx, user)
	if err != nil {
		m.log.WithError(err).Error("reading offline messages")
		return
	}
	host, _ := jid.New("", s.JID.Domainpart(), "")
	for _, om := range msgs {
		msg, err := decodeStanza(om.XML)
		if err != nil {
			m.log.WithError(err).WithField("id", om.ID).Error("undecodable offline message dropped")
			continue
		}
		delay := stanza.NewElement(stanza.NSDelay, "delay", "from", host.String(), "stamp", om.Stamp.UTC().Format("2006-01-02T15:04:05.000Z"))
		delay.AppendText("Offline Storage")
		msg.Append(delay)
		if err := s.Send(msg); err != nil {
			// The session died while flushing: keep the rest for next time.
			_ = m.store.StoreOffline(ctx, user, om.Stamp, om.XML, 1<<30)
		}
	}
}

func decodeStanza(b []byte) (*stanza.Stanza, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			return stanza.Parse(d, start)
		}
	}
}

// outbound sends "sent" carbons for a local user's message; it never
// consumes the stanza.
func (m *Module) outbound(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if !eligible(st) {
		st.RemoveChildren(NSCarbons, "private")
		return false
	}
	for _, s := range m.bus.Sessions().Resources(st.From) {
		if s.JID.Equal(st.From) || !s.Carbons() {
			continue
		}
		_ = s.Send(carbon("sent", st, s.JID))
	}
	return false
}

// carbonReceived copies an inbound message to the carbon-enabled resources
// that did not get it.
func (m *Module) carbonReceived(st *stanza.Stanza, got ...*sessions.Session) {
	if !eligible(st) {
		return
	}
	for _, s := range m.bus.Sessions().Resources(st.To) {
		if !s.Carbons() || contains(got, s) {
			continue
		}
		_ = s.Send(carbon("received", st, s.JID))
	}
}

func contains(list []*sessions.Session, s *sessions.Session) bool {
	for _, o := range list {
		if o == s {
			return true
		}
	}
	return false
}

// eligible applies XEP-0280 §6: chat messages, and normal messages with a
// body, unless marked private or no-copy.
func eligible(st *stanza.Stanza) bool {
	if st.Child(NSCarbons, "private") != nil || st.Child(NSHints, "no-copy") != nil {
		return false
	}
	if st.Child(NSCarbons, "sent") != nil || st.Child(NSCarbons, "received") != nil {
		return false
	}
	switch st.Type {
	case "chat":
		return true
	case "", "normal":
		return st.Child("", "body") != nil
	}
	return false
}

func carbon(kind string, st *stanza.Stanza, to jid.JID) *stanza.Stanza {
	fwd := stanza.NewElement(NSForward, "forwarded").Append(st.Element())
	wrap := stanza.NewElement(NSCarbons, kind).Append(fwd)
	return &stanza.Stanza{Kind: stanza.KindMessage, Type: st.Type, From: to.Bare(), To: to,
		Children: []stanza.Node{{El: wrap}}}
}
