package muc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/stanza"
)

// Affiliation is a long-lived relation of a user (bare JID) to a room.
type Affiliation string

// Affiliations (XEP-0045 §5.2), in rank order.
const (
	AffOutcast Affiliation = "outcast"
	AffNone    Affiliation = "none"
	AffMember  Affiliation = "member"
	AffAdmin   Affiliation = "admin"
	AffOwner   Affiliation = "owner"
)

func (a Affiliation) rank() int {
	switch a {
	case AffOutcast:
		return -1
	case AffMember:
		return 1
	case AffAdmin:
		return 2
	case AffOwner:
		return 3
	}
	return 0
}

func parseAffiliation(s string) (Affiliation, bool) {
	switch a := Affiliation(s); a {
	case AffOutcast, AffNone, AffMember, AffAdmin, AffOwner:
		return a, true
	}
	return "", false
}

// Role is an occupant's temporary position in the room.
type Role string

// Roles (XEP-0045 §5.1), in rank order.
const (
	RoleNone        Role = "none"
	RoleVisitor     Role = "visitor"
	RoleParticipant Role = "participant"
	RoleModerator   Role = "moderator"
)

func (r Role) rank() int {
	switch r {
	case RoleVisitor:
		return 1
	case RoleParticipant:
		return 2
	case RoleModerator:
		return 3
	}
	return 0
}

func parseRole(s string) (Role, bool) {
	switch r := Role(s); r {
	case RoleNone, RoleVisitor, RoleParticipant, RoleModerator:
		return r, true
	}
	return "", false
}

// Values of RoomConfig.WhoIs and AllowPM.
const (
	WhoIsModerators = "moderators"
	WhoIsAnyone     = "anyone"
	PMAnyone        = "anyone"
	PMParticipants  = "participants"
	PMModerators    = "moderators"
	PMNone          = "none"
)

// RoomConfig is a room's configuration (muc#roomconfig).
type RoomConfig struct {
	Name          string `json:"name,omitempty"`
	Desc          string `json:"desc,omitempty"`
	Persistent    bool   `json:"persistent"`
	Public        bool   `json:"public"`
	MembersOnly   bool   `json:"members_only"`
	Moderated     bool   `json:"moderated"`
	Password      string `json:"password,omitempty"`
	WhoIs         string `json:"whois"`
	MaxUsers      int    `json:"max_users"`
	ChangeSubject bool   `json:"change_subject"`
	AllowInvites  bool   `json:"allow_invites"`
	AllowPM       string `json:"allow_pm"`
	Logging       bool   `json:"logging"`
	History       int    `json:"history"`
}

// defaultConfig is the configuration of a new room.
func (s *Service) defaultConfig() RoomConfig {
	return RoomConfig{
		Public: true, WhoIs: WhoIsModerators, MaxUsers: s.cfg.MaxOccupants,
		AllowPM: PMAnyone, Logging: s.archive != nil, History: s.cfg.History,
	}
}

// session is one client of an occupant.
type session struct {
	jid  jid.JID        // real full JID
	pres *stanza.Stanza // last presence it sent to the room
}

// occupant is a nickname in the room, used by one user (bare JID) from one
// or more clients.
type occupant struct {
	nick     string
	jid      jid.JID // room@service/nick
	real     jid.JID // bare real JID
	id       string  // XEP-0421 occupant id
	role     Role
	sessions []session
}

func (o *occupant) pres() *stanza.Stanza {
	return o.sessions[len(o.sessions)-1].pres
}

func (o *occupant) session(j jid.JID) int {
	for i, s := range o.sessions {
		if s.jid.Equal(j) {
			return i
		}
	}
	return -1
}

// histEntry is a message kept for new occupants.
type histEntry struct {
	msg   *stanza.Stanza // as broadcast, without 'to'
	stamp time.Time
	id    string // stanza-id
	chars int    // serialized size, computed when a join first asks for maxchars
}

// Room is one chat room.
type Room struct {
	svc  *Service
	jid  jid.JID
	salt []byte // keys occupant ids; kept with the room

	mu        sync.Mutex
	cfg       RoomConfig
	affs      map[string]Affiliation // bare JID → affiliation other than none
	occ       map[string]*occupant   // by nick
	byReal    map[string]*occupant   // real full JID → occupant
	history   []histEntry
	subject   *stanza.Stanza // last subject change, without 'to'
	locked    bool           // created, not yet configured (XEP-0045 §10.1)
	destroyed bool

	pending map[string]pendingIQ // relayed iq requests by the id we gave them (relay.go)
	invites map[string]string    // invitee bare JID → inviter bare JID, for declines

	out      []*stanza.Stanza // queued for sending after the lock is released
	spare    []*stanza.Stanza
	draining bool
}

func newRoom(s *Service, j jid.JID, cfg RoomConfig, salt []byte) *Room {
	if len(salt) == 0 {
		salt = make([]byte, 16)
		_, _ = rand.Read(salt)
	}
	return &Room{svc: s, jid: j, salt: salt, cfg: cfg,
		affs: make(map[string]Affiliation), occ: make(map[string]*occupant), byReal: make(map[string]*occupant)}
}

// emit queues st; call with r.mu held.
func (r *Room) emit(st *stanza.Stanza) { r.out = append(r.out, st) }

// errorReply queues the error answer to st; call with r.mu held.
func (r *Room) errorReply(st *stanza.Stanza, cond stanza.Condition, text string) {
	if e := stanza.Bounce(st, cond, text); e != nil {
		r.emit(e)
	}
}

// unlockAndFlush releases r.mu and sends the queued stanzas. If another
// goroutine is already sending for this room (possibly this one, further
// up the stack, when routing came back into the room), it leaves the queue
// to that one, which keeps the order and never routes with the lock held.
func (r *Room) unlockAndFlush(ctx context.Context) {
	if r.draining {
		r.mu.Unlock()
		return
	}
	r.draining = true
	for len(r.out) > 0 {
		out := r.out
		r.out = r.spare[:0]
		r.mu.Unlock()
		r.svc.sendBatch(ctx, out)
		clear(out)
		r.mu.Lock()
		r.spare = out[:0]
	}
	r.draining = false
	r.mu.Unlock()
}

// affOf returns the affiliation of a bare JID.
func (r *Room) affOf(bare jid.JID) Affiliation {
	if a, ok := r.affs[bare.String()]; ok {
		return a
	}
	return AffNone
}

// setAff records an affiliation.
func (r *Room) setAff(bare string, a Affiliation) {
	if a == AffNone {
		delete(r.affs, bare)
		return
	}
	r.affs[bare] = a
}

// defaultRole is the role a user with affiliation a gets on joining.
func (r *Room) defaultRole(a Affiliation) Role {
	switch a {
	case AffOwner, AffAdmin:
		return RoleModerator
	case AffMember:
		return RoleParticipant
	case AffOutcast:
		return RoleNone
	}
	if r.cfg.Moderated {
		return RoleVisitor
	}
	return RoleParticipant
}

// occupantID derives the XEP-0421 id of a user: stable per room and user,
// meaningless elsewhere.
func (r *Room) occupantID(bare jid.JID) string {
	h := hmac.New(sha256.New, r.salt)
	h.Write([]byte(bare.String()))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
}

// nickJID returns room@service/nick.
func (r *Room) nickJID(nick string) (jid.JID, error) {
	return jid.New(r.jid.Localpart(), r.jid.Domainpart(), nick)
}

// count returns the number of occupants.
func (r *Room) count() int { return len(r.occ) }

// canSeeJIDs reports whether an occupant with role role sees real JIDs.
func (r *Room) canSeeJIDs(role Role) bool {
	return r.cfg.WhoIs == WhoIsAnyone || role == RoleModerator
}

// persist saves a persistent room's state; call with r.mu held.
func (r *Room) persist(ctx context.Context) {
	if !r.cfg.Persistent || r.destroyed {
		return
	}
	sr := StoredRoom{Config: r.cfg, Affiliations: r.affs, Salt: r.salt}
	if r.subject != nil {
		sr.Subject = string(r.subject.AppendXML(nil, stanza.NSClient))
	}
	if err := r.svc.store.Save(ctx, r.jid.Localpart(), sr); err != nil {
		r.svc.log.WithError(err).WithField("room", r.jid.String()).Error("saving room")
	}
}

// loadHistory fills the history of a stored room from its archive.
func (r *Room) loadHistory(ctx context.Context) {
	if r.svc.archive == nil || !r.cfg.Logging || r.cfg.History == 0 {
		return
	}
	res, err := r.svc.archive.Query(ctx, r.jid.String(), mam.Filter{}, mam.Page{Max: r.cfg.History, Backward: true})
	if err != nil {
		r.svc.log.WithError(err).WithField("room", r.jid.String()).Warn("loading room history")
		return
	}
	for _, it := range res.Items {
		msg, err := decodeStanza(it.XML)
		if err != nil || msg.Child("", "body") == nil {
			continue
		}
		r.history = append(r.history, histEntry{msg: msg, stamp: it.Time, id: it.ID})
	}
}
