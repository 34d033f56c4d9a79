// Package muc is the group chat service (XEP-0045 Multi-User Chat) at its
// own domain in the local zone (conference.<domain> by default): temporary
// and persistent rooms, configuration forms (XEP-0004 muc#roomconfig),
// affiliations and roles, members-only, password-protected and moderated
// rooms, kicks and bans, subject, history on join, mediated invitations,
// self-ping (XEP-0410), occupant ids (XEP-0421), moderation (XEP-0425) and
// a room archive queried with XEP-0313.
//
// The service is an internal component of the hook bus: the router
// delivers stanzas for its domain to Deliver, and everything a room sends
// goes back out through the router (hook.Bus.Send), so a copy for an
// occupant outside the company crosses the boundary like any other stanza,
// once per recipient.
//
// A room's state sits behind its mutex. What a room sends is queued while
// the mutex is held and sent after it is released, by whichever goroutine
// finds the queue idle (see Room.unlockAndFlush): routing can come straight
// back into the room (a bounce from an occupant's server, a boundary
// refusal), so nothing is ever routed with a room lock held, and the order
// of a room's stanzas is the order of its queue. Copies for outside
// recipients wait for the boundary and go out in parallel, each
// recipient's in order (send.go).
//
// It must not import c2s, s2s, transports, policy or logging/archive; of
// the other modules it uses only mod/mam's store and query protocol.
package muc

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Namespaces.
const (
	NS            = "http://jabber.org/protocol/muc"
	NSUser        = "http://jabber.org/protocol/muc#user"
	NSAdmin       = "http://jabber.org/protocol/muc#admin"
	NSOwner       = "http://jabber.org/protocol/muc#owner"
	NSRoomConfig  = "http://jabber.org/protocol/muc#roomconfig"
	NSRoomInfo    = "http://jabber.org/protocol/muc#roominfo"
	NSRequest     = "http://jabber.org/protocol/muc#request"
	NSSelfPing    = "http://jabber.org/protocol/muc#self-ping-optimization"
	NSStableID    = "http://jabber.org/protocol/muc#stable_id"
	NSOccupantID  = "urn:xmpp:occupant-id:0"
	NSModerate    = "urn:xmpp:message-moderate:1"
	NSRetract     = "urn:xmpp:message-retract:1"
	NSConference  = "jabber:x:conference"
	NSDiscoInfo   = "http://jabber.org/protocol/disco#info"
	NSDiscoItems  = "http://jabber.org/protocol/disco#items"
	NSData        = "jabber:x:data"
	NSPing        = "urn:xmpp:ping"
	NSVCard       = "vcard-temp"
	NSSID         = "urn:xmpp:sid:0"
	archiveMaxPag = 100 // page size cap of room archive queries
)

// Options configure Open.
type Options struct {
	Config  config.MUC
	Domain  string // the service domain (config.MUC.ServiceDomain)
	DataDir string
	Log     logrus.FieldLogger
	Now     func() time.Time // nil: time.Now
}

// Service is the group chat service.
type Service struct {
	cfg     config.MUC
	domain  jid.JID
	log     logrus.FieldLogger
	now     func() time.Time
	bus     *hook.Bus
	store   *Store
	archive *mam.Store // nil when archiving is off

	mu    sync.Mutex
	rooms map[string]*Room // by localpart

	pruneMu    sync.Mutex
	pruneTimer *time.Timer
	closed     bool
	ctx        context.Context
	cancel     context.CancelFunc
}

// Open opens the rooms database (and the room archive) and loads the
// persistent rooms.
func Open(ctx context.Context, o Options) (*Service, error) {
	d, err := jid.New("", o.Domain, "")
	if err != nil || o.Domain == "" {
		return nil, fmt.Errorf("muc: service domain %q: %w", o.Domain, err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{cfg: o.Config, domain: d, log: o.Log, now: o.Now, rooms: make(map[string]*Room)}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	path := func(f string) string {
		if filepath.IsAbs(f) {
			return f
		}
		return filepath.Join(o.DataDir, f)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		s.cancel()
		return nil, fmt.Errorf("muc: data directory: %w", err)
	}
	s.store, err = OpenStore(ctx, path(o.Config.File))
	if err != nil {
		s.cancel()
		return nil, err
	}
	if o.Config.Archive {
		s.archive, err = mam.OpenStore(ctx, path(o.Config.ArchiveFile), nil)
		if err != nil {
			s.cancel()
			_ = s.store.Close()
			return nil, fmt.Errorf("muc: room archive: %w", err)
		}
		s.archive.SetErrorHandler(func(e mam.Entry, err error) {
			s.log.WithError(err).WithField("room", e.User).Error("room message not archived")
		})
	}
	saved, err := s.store.Load(ctx)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	for name, sr := range saved {
		j, err := jid.New(name, o.Domain, "")
		if err != nil {
			s.log.WithError(err).WithField("room", name).Error("stored room has an invalid name; skipped")
			continue
		}
		// Limits lowered in the configuration since the room was saved apply.
		sr.Config.MaxUsers = min(max(sr.Config.MaxUsers, 1), o.Config.MaxOccupants)
		sr.Config.History = min(max(sr.Config.History, 0), o.Config.History)
		r := newRoom(s, j, sr.Config, sr.Salt)
		r.affs = sr.Affiliations
		if r.affs == nil {
			r.affs = make(map[string]Affiliation)
		}
		if sr.Subject != "" {
			r.subject, _ = decodeStanza([]byte(sr.Subject))
		}
		r.loadHistory(ctx)
		s.rooms[name] = r
	}
	if o.Config.Archive && o.Config.ArchiveRetention > 0 {
		s.schedulePrune(time.Minute)
	}
	return s, nil
}

// Close stops pruning and closes the databases. Call it after the last
// stanza was routed.
func (s *Service) Close() error {
	s.pruneMu.Lock()
	s.closed = true
	if s.pruneTimer != nil {
		s.pruneTimer.Stop()
	}
	s.pruneMu.Unlock()
	s.cancel()
	var errs []error
	if s.archive != nil {
		if err := s.archive.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.store.Close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("muc: close: %v", errs)
	}
	return nil
}

// Domain returns the service domain.
func (s *Service) Domain() string { return s.domain.Domainpart() }

// Register makes the service the bus's internal component for its domain.
func (s *Service) Register(bus *hook.Bus) {
	s.bus = bus
	bus.AddComponent(s.domain.Domainpart(), s)
}

func (s *Service) schedulePrune(d time.Duration) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	if s.closed {
		return
	}
	s.pruneTimer = time.AfterFunc(d, s.prune)
}

func (s *Service) prune() {
	cutoff := s.now().Add(-s.cfg.ArchiveRetention.D())
	n, err := s.archive.Prune(s.ctx, cutoff)
	switch {
	case err != nil && s.ctx.Err() == nil:
		s.log.WithError(err).Error("pruning the room archive")
	case n > 0:
		s.log.WithField("deleted", n).Info("pruned the room archive")
	}
	s.schedulePrune(time.Hour)
}

// send routes a stanza the service generated.
func (s *Service) send(ctx context.Context, st *stanza.Stanza) {
	s.bus.Send(ctx, st)
}

// bounce answers env's stanza with an error from the service itself.
func (s *Service) bounce(ctx context.Context, env *router.Envelope, cond stanza.Condition, text string) {
	if r := stanza.Bounce(env.Stanza, cond, text); r != nil {
		s.send(ctx, r)
	}
}

// room returns the room named local, or nil.
func (s *Service) room(local string) *Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[local]
}

// Rooms returns the names of the rooms that exist now.
func (s *Service) Rooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.rooms))
	for n := range s.rooms {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// remove forgets r (destroyed or emptied); called with r.mu held.
func (s *Service) remove(r *Room) {
	s.mu.Lock()
	if s.rooms[r.jid.Localpart()] == r {
		delete(s.rooms, r.jid.Localpart())
	}
	s.mu.Unlock()
}

// mayCreate applies muc.create to the would-be creator.
func (s *Service) mayCreate(from jid.JID) bool {
	if s.cfg.Create == config.MUCCreateAnyone {
		return true
	}
	return from.Localpart() != "" && s.bus.IsHost(from.Domainpart())
}

// Deliver implements router.Deliverer for the service domain. It runs on
// the ingress goroutine and only queues stanzas for other connections.
func (s *Service) Deliver(ctx context.Context, env *router.Envelope) error {
	st := env.Stanza
	if st.From.Equal(jid.JID{}) {
		return nil // every ingress stamps 'from'; nobody to answer
	}
	if st.From.Domainpart() == s.domain.Domainpart() {
		// Rooms do not join rooms; this also stops loops.
		if !st.IsError() {
			s.bounce(ctx, env, stanza.NotAllowed, "")
		}
		return nil
	}
	if st.To.Localpart() == "" {
		s.serviceStanza(ctx, env)
		return nil
	}
	switch st.Kind {
	case stanza.KindPresence:
		if st.To.Resourcepart() == "" {
			if st.Type == "" {
				s.bounce(ctx, env, stanza.JIDMalformed, "a nickname is required to join a room")
			}
			return nil
		}
		s.presence(ctx, env)
	case stanza.KindMessage:
		if st.To.Resourcepart() == "" {
			s.roomMessage(ctx, env)
		} else {
			s.privateMessage(ctx, env)
		}
	case stanza.KindIQ:
		if st.To.Resourcepart() == "" {
			s.roomIQ(ctx, env)
		} else {
			s.occupantIQ(ctx, env)
		}
	}
	return nil
}

// serviceStanza handles stanzas to the service domain itself.
func (s *Service) serviceStanza(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	if !st.IsRequest() {
		if st.Kind == stanza.KindMessage && st.Type != "error" && st.Type != "groupchat" {
			s.bounce(ctx, env, stanza.ServiceUnavailable, "")
		}
		return
	}
	p := st.Payload()
	if p == nil || len(st.Elements()) != 1 {
		s.bounce(ctx, env, stanza.BadRequest, "an iq request carries exactly one payload")
		return
	}
	var reply *stanza.Stanza
	switch {
	case p.Name.Space == NSDiscoInfo && p.Name.Local == "query" && st.Type == "get":
		reply = s.serviceInfo(st)
	case p.Name.Space == NSDiscoItems && p.Name.Local == "query" && st.Type == "get":
		reply = s.serviceItems(st)
	case p.Name.Space == NSPing && p.Name.Local == "ping" && st.Type == "get":
		reply = st.Result()
	case p.Name.Space == "urn:xmpp:unique" && p.Name.Local == "unique" && st.Type == "get":
		// XEP-0307: a fresh room name.
		reply = st.Result(stanza.NewElement("urn:xmpp:unique", "unique").AppendText(randomID()))
	default:
		reply = stanza.Bounce(st, stanza.ServiceUnavailable, "")
	}
	s.send(ctx, reply)
}

// randomID returns an unguessable id (128 random bits, base32).
func randomID() string { return rand.Text() }

// RealJID returns the real bare JID of the occupant behind
// room@service/nick, for the boundary: a room's copy for an outside
// occupant comes from the room, and policy and the compliance archive can
// attribute it to the account that spoke with this. It must not be called
// with a room lock held (the boundary never is: rooms route unlocked).
func (s *Service) RealJID(occupant jid.JID) (jid.JID, bool) {
	if occupant.Domainpart() != s.domain.Domainpart() || occupant.Resourcepart() == "" {
		return jid.JID{}, false
	}
	r := s.room(occupant.Localpart())
	if r == nil {
		return jid.JID{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.occ[occupant.Resourcepart()]
	if o == nil {
		return jid.JID{}, false
	}
	return o.real, true
}
