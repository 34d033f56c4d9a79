package muc

import (
	"context"
	"crypto/subtle"
	"sort"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Status codes (XEP-0045 §15.6).
const (
	codeNonAnonymous = "100"
	codeSelf         = "110"
	codeLogging      = "170"
	codeCreated      = "201"
	codeNickChanged  = "303"
	codeBanned       = "301"
	codeKicked       = "307"
	codeAffChange    = "321"
	codeMembersOnly  = "322"
	codeShutdown     = "332"
	codeError        = "333"
)

// presence handles presence to room@service/nick: join, presence update,
// nickname change, leave.
func (s *Service) presence(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	switch st.Type {
	case "", "unavailable", "error":
	default:
		// Subscriptions and probes mean nothing to a room.
		return
	}
	for range 2 {
		r := s.room(st.To.Localpart())
		created := false
		if r == nil {
			if st.Type != "" {
				return
			}
			var cond stanza.Condition
			r, created, cond = s.create(st)
			if r == nil {
				s.bounce(ctx, env, cond, "you may not create rooms here")
				return
			}
		}
		r.mu.Lock()
		if r.destroyed {
			// Lost a race with the room's end: look again.
			r.mu.Unlock()
			continue
		}
		r.presence(ctx, st, created)
		r.unlockAndFlush(ctx)
		return
	}
}

// create makes a new room with the sender as owner.
func (s *Service) create(st *stanza.Stanza) (*Room, bool, stanza.Condition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rooms[st.To.Localpart()]; r != nil {
		return r, false, ""
	}
	if !s.mayCreate(st.From) {
		return nil, false, stanza.NotAllowed
	}
	j, err := jid.New(st.To.Localpart(), s.domain.Domainpart(), "")
	if err != nil {
		return nil, false, stanza.JIDMalformed
	}
	r := newRoom(s, j, s.defaultConfig(), nil)
	r.affs[st.From.Bare().String()] = AffOwner
	// A client that speaks MUC configures the room before others may join
	// (XEP-0045 §10.1.1); an old groupchat client gets an instant room.
	r.locked = st.Child(NS, "x") != nil
	s.rooms[j.Localpart()] = r
	s.log.WithFields(logrus.Fields{"room": j.String(), "owner": st.From.Bare().String()}).Info("room created")
	return r, true, ""
}

// presence applies a presence stanza; call with r.mu held.
func (r *Room) presence(ctx context.Context, st *stanza.Stanza, created bool) {
	from := st.From
	o := r.byReal[from.String()]
	switch st.Type {
	case "error":
		// The occupant's client or server refused what we sent: it is gone.
		if o != nil && o.nick == st.To.Resourcepart() {
			r.dropSession(ctx, o, from, nil, []string{codeError})
		}
		return
	case "unavailable":
		if o != nil && o.nick == st.To.Resourcepart() {
			r.dropSession(ctx, o, from, cleanPresence(st), nil)
		}
		return
	}
	if o != nil {
		if o.nick == st.To.Resourcepart() {
			o.sessions[o.session(from)].pres = cleanPresence(st)
			if x := st.Child(NS, "x"); x != nil {
				// A join from a client the room thinks is inside: it
				// reconnected before its old session's leave arrived.
				// It gets the whole room state again, like a new client.
				r.sendOccupants(from, o)
				r.emit(r.selfPresence(o, st, r.joinCodes(false)))
				r.sendHistory(from, x)
				r.sendSubject(from)
				return
			}
			r.broadcastPresence(o, st, nil)
			return
		}
		r.changeNick(st, o)
		return
	}
	r.join(ctx, st, created)
}

// cleanPresence is the part of a client's presence the room passes on.
func cleanPresence(st *stanza.Stanza) *stanza.Stanza {
	p := &stanza.Stanza{Kind: stanza.KindPresence, Type: st.Type, Lang: st.Lang}
	for _, n := range st.Children {
		if e := n.El; e != nil {
			switch {
			case e.Name.Space == NS, e.Name.Space == NSUser, e.Name.Space == NSOccupantID:
				continue
			}
		} else if n.Text == "" {
			continue
		}
		p.Children = append(p.Children, n)
	}
	return p
}

func (r *Room) join(ctx context.Context, st *stanza.Stanza, created bool) {
	from := st.From
	bare := from.Bare()
	nick := st.To.Resourcepart()
	aff := r.affOf(bare)
	x := st.Child(NS, "x")
	existing := r.occ[nick]
	switch {
	case aff == AffOutcast:
		r.errorReply(st, stanza.Forbidden, "you are banned from this room")
		return
	case r.locked && aff != AffOwner:
		r.errorReply(st, stanza.ItemNotFound, "this room is not configured yet")
		return
	case existing != nil && !existing.real.Equal(bare):
		r.errorReply(st, stanza.Conflict, "this nickname is in use")
		return
	case r.cfg.MembersOnly && aff.rank() < AffMember.rank():
		r.errorReply(st, stanza.RegistrationRequiredCond, "this room is for members only")
		return
	case r.cfg.Password != "" && aff != AffOwner && (x == nil || !samePassword(x.ChildText(NS, "password"), r.cfg.Password)):
		r.errorReply(st, stanza.NotAuthorized, "a password is required")
		return
	case existing == nil && r.count() >= r.cfg.MaxUsers && aff.rank() < AffAdmin.rank():
		r.errorReply(st, stanza.ServiceUnavailable, "the room is full")
		return
	}
	pres := cleanPresence(st)
	if existing != nil {
		// The same user from another client joins under the same nick.
		existing.sessions = append(existing.sessions, session{jid: from, pres: pres})
		r.byReal[from.String()] = existing
		r.sendOccupants(from, existing)
		r.emit(r.selfPresence(existing, st, r.joinCodes(false)))
		r.sendHistory(from, x)
		r.sendSubject(from)
		return
	}
	o := &occupant{nick: nick, jid: st.To, real: bare, id: r.occupantID(bare), role: r.defaultRole(aff),
		sessions: []session{{jid: from, pres: pres}}}
	r.sendOccupants(from, nil)
	r.occ[nick] = o
	r.byReal[from.String()] = o
	r.broadcastPresence(o, st, r.joinCodes(created))
	r.sendHistory(from, x)
	r.sendSubject(from)
}

// samePassword compares in constant time, so response times say nothing
// about the room password.
func samePassword(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// joinCodes are the status codes of a new occupant's own presence.
func (r *Room) joinCodes(created bool) []string {
	codes := make([]string, 0, 3)
	if r.cfg.WhoIs == WhoIsAnyone {
		codes = append(codes, codeNonAnonymous)
	}
	if r.cfg.Logging && r.svc.archive != nil {
		codes = append(codes, codeLogging)
	}
	if created && r.locked {
		codes = append(codes, codeCreated)
	}
	return codes
}

// sendOccupants sends the presence of every occupant but skip to a
// joining client.
func (r *Room) sendOccupants(to jid.JID, skip *occupant) {
	nicks := make([]string, 0, len(r.occ))
	for n := range r.occ {
		nicks = append(nicks, n)
	}
	sort.Strings(nicks)
	// A joining client is not an occupant yet; what it may see follows
	// from the role it will have.
	role := r.defaultRole(r.affOf(to.Bare()))
	for _, n := range nicks {
		o := r.occ[n]
		if o == skip {
			continue
		}
		p := r.occupantPresence(o, o.pres(), r.item(o, r.canSeeJIDs(role)), nil)
		p.To = to
		r.emit(p)
	}
}

// item is the <item/> describing o.
func (r *Room) item(o *occupant, withJID bool) *stanza.Element {
	it := stanza.NewElement(NSUser, "item", "affiliation", string(r.affOf(o.real)), "role", string(o.role))
	if withJID {
		it.SetAttr("jid", o.sessions[0].jid.String())
	}
	return it
}

// occupantPresence builds o's presence from base (type and payload), with
// item and status codes in the muc#user element, and o's occupant id.
func (r *Room) occupantPresence(o *occupant, base *stanza.Stanza, item *stanza.Element, codes []string, extra ...*stanza.Element) *stanza.Stanza {
	p := &stanza.Stanza{Kind: stanza.KindPresence, From: o.jid, Type: base.Type, Lang: base.Lang}
	p.Children = make([]stanza.Node, 0, len(base.Children)+2)
	p.Children = append(p.Children, base.Children...)
	x := stanza.NewElement(NSUser, "x").Append(item)
	x.Append(extra...)
	for _, c := range codes {
		x.Append(stanza.NewElement(NSUser, "status", "code", c))
	}
	p.Append(x, stanza.NewElement(NSOccupantID, "occupant-id", "id", o.id))
	return p
}

// selfPresence is o's presence for the client that sent trigger.
func (r *Room) selfPresence(o *occupant, trigger *stanza.Stanza, codes []string) *stanza.Stanza {
	p := r.occupantPresence(o, o.pres(), r.item(o, true), append([]string{codeSelf}, codes...))
	p.To, p.ID = trigger.From, trigger.ID
	return p
}

// broadcastPresence sends o's current presence to every occupant. The
// client that sent trigger (nil: none) gets its own presence back with
// selfCodes and the id of its stanza.
func (r *Room) broadcastPresence(o *occupant, trigger *stanza.Stanza, selfCodes []string) {
	base := o.pres()
	var withJID, without *stanza.Stanza
	for _, v := range r.sortedOccupants() {
		var tmpl *stanza.Stanza
		switch {
		case v == o:
			for _, ses := range o.sessions {
				if trigger != nil && ses.jid.Equal(trigger.From) {
					r.emit(r.selfPresence(o, trigger, selfCodes))
					continue
				}
				p := r.occupantPresence(o, base, r.item(o, true), []string{codeSelf})
				p.To = ses.jid
				r.emit(p)
			}
			continue
		case r.canSeeJIDs(v.role):
			if withJID == nil {
				withJID = r.occupantPresence(o, base, r.item(o, true), nil)
			}
			tmpl = withJID
		default:
			if without == nil {
				without = r.occupantPresence(o, base, r.item(o, false), nil)
			}
			tmpl = without
		}
		for _, ses := range v.sessions {
			c := tmpl.ShallowCopy()
			c.To = ses.jid
			r.emit(c)
		}
	}
}

// sortedOccupants returns the occupants in nickname order, so every
// occupant sees the same order.
func (r *Room) sortedOccupants() []*occupant {
	out := make([]*occupant, 0, len(r.occ))
	for _, o := range r.occ {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].nick < out[j].nick })
	return out
}

// changeNick handles presence to a new nickname from an occupant's client
// (XEP-0045 §7.6).
func (r *Room) changeNick(st *stanza.Stanza, o *occupant) {
	nick := st.To.Resourcepart()
	switch {
	case r.occ[nick] != nil:
		r.errorReply(st, stanza.Conflict, "this nickname is in use")
		return
	case len(o.sessions) > 1:
		r.errorReply(st, stanza.NotAcceptable, "leave from your other clients before changing your nickname")
		return
	}
	// Everyone learns the old nick is gone, and what it became.
	gone := &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable"}
	for _, v := range r.sortedOccupants() {
		it := r.item(o, v == o || r.canSeeJIDs(v.role))
		it.SetAttr("nick", nick)
		codes := []string{codeNickChanged}
		if v == o {
			codes = append(codes, codeSelf)
		}
		p := r.occupantPresence(o, gone, it, codes)
		for _, ses := range v.sessions {
			c := p.ShallowCopy()
			c.To = ses.jid
			r.emit(c)
		}
	}
	delete(r.occ, o.nick)
	o.nick, o.jid = nick, st.To
	o.sessions[0].pres = cleanPresence(st)
	r.occ[nick] = o
	r.broadcastPresence(o, st, nil)
}

// dropSession removes one client of o; when it was the last, o leaves the
// room with codes (nil: a plain leave). pres is the unavailable presence
// the client sent, if it sent one.
func (r *Room) dropSession(ctx context.Context, o *occupant, real jid.JID, pres *stanza.Stanza, codes []string) {
	i := o.session(real)
	if i < 0 {
		return
	}
	if len(o.sessions) > 1 {
		// Only this client leaves; the occupant stays.
		base := pres
		if base == nil {
			base = &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable"}
		}
		p := r.occupantPresence(o, base, r.item(o, true), append([]string{codeSelf}, codes...))
		p.To = real
		r.emit(p)
		o.sessions = append(o.sessions[:i], o.sessions[i+1:]...)
		delete(r.byReal, real.String())
		r.forgetPending(real)
		return
	}
	r.removeOccupant(ctx, o, pres, codes, nil)
}

// removeOccupant takes o out of the room, telling everyone with an
// unavailable presence that carries codes and extra item children (actor,
// reason) or a destroy element.
func (r *Room) removeOccupant(ctx context.Context, o *occupant, pres *stanza.Stanza, codes []string, itemExtra []*stanza.Element, extra ...*stanza.Element) {
	base := &stanza.Stanza{Kind: stanza.KindPresence, Type: "unavailable"}
	if pres != nil {
		base = pres
		base.Type = "unavailable"
	}
	o.role = RoleNone
	for _, v := range r.sortedOccupants() {
		it := r.item(o, v == o || r.canSeeJIDs(v.role))
		it.Append(itemExtra...)
		cs := codes
		if v == o {
			cs = append([]string{codeSelf}, codes...)
		}
		p := r.occupantPresence(o, base, it, cs, extra...)
		for _, ses := range v.sessions {
			c := p.ShallowCopy()
			c.To = ses.jid
			r.emit(c)
		}
	}
	delete(r.occ, o.nick)
	for _, ses := range o.sessions {
		delete(r.byReal, ses.jid.String())
		r.forgetPending(ses.jid)
	}
	r.maybeEnd(ctx)
}

// maybeEnd ends a temporary room that has become empty.
func (r *Room) maybeEnd(ctx context.Context) {
	if len(r.occ) > 0 || r.cfg.Persistent {
		return
	}
	r.destroyed = true
	r.svc.remove(r)
}

// sendHistory sends the room history to a joining client, limited as the
// client asked (XEP-0045 §7.2.15).
func (r *Room) sendHistory(to jid.JID, x *stanza.Element) {
	h := r.history
	if len(h) == 0 {
		return
	}
	maxStanzas, maxChars := len(h), -1
	var since time.Time
	if x != nil {
		if hr := x.Child(NS, "history"); hr != nil {
			if v, err := strconv.Atoi(hr.AttrValue("maxstanzas")); err == nil && v >= 0 {
				maxStanzas = min(maxStanzas, v)
			}
			if v, err := strconv.Atoi(hr.AttrValue("maxchars")); err == nil && v >= 0 {
				maxChars = v
			}
			if v, err := strconv.Atoi(hr.AttrValue("seconds")); err == nil && v >= 0 {
				since = r.svc.now().Add(-time.Duration(v) * time.Second)
			}
			if t, err := time.Parse(time.RFC3339, hr.AttrValue("since")); err == nil && t.After(since) {
				since = t
			}
		}
	}
	start := len(h) - maxStanzas
	if maxChars >= 0 {
		total := 0
		i := len(h)
		for i > start {
			e := &h[i-1]
			if e.chars == 0 {
				e.chars = len(e.msg.AppendXML(nil, stanza.NSClient))
			}
			if total+e.chars > maxChars {
				break
			}
			total += e.chars
			i--
		}
		start = i
	}
	for _, e := range h[start:] {
		if !since.IsZero() && e.stamp.Before(since) {
			continue
		}
		c := e.msg.ShallowCopy()
		c.To = to
		c.Append(stanza.NewElement(stanza.NSDelay, "delay", "from", r.jid.String(), "stamp", e.stamp.UTC().Format("2006-01-02T15:04:05.000Z")))
		r.emit(c)
	}
}

// sendSubject sends the subject, empty if none was set: it tells the
// client the join is complete (XEP-0045 §7.2.16).
func (r *Room) sendSubject(to jid.JID) {
	var m *stanza.Stanza
	if r.subject != nil {
		m = r.subject.ShallowCopy()
	} else {
		m = &stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: r.jid}
		m.Append(stanza.NewElement("", "subject"))
	}
	m.To = to
	r.emit(m)
}
