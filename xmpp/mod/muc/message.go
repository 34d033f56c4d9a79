package muc

import (
	"context"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Error conditions from an occupant's side that mean it is gone (XEP-0045
// §7.2.x "errors from occupants"; Prosody's list).
func gone(cond stanza.Condition) bool {
	switch cond {
	case stanza.Gone, stanza.ItemNotFound, stanza.RecipientUnavailable, "redirect",
		stanza.RemoteServerNotFound, stanza.RemoteServerTimeout, stanza.ServiceUnavailable:
		return true
	}
	return false
}

// lockRoom returns the room st is addressed to, locked, or nil after
// answering item-not-found.
func (s *Service) lockRoom(ctx context.Context, env *router.Envelope) *Room {
	st := env.Stanza
	r := s.room(st.To.Localpart())
	if r != nil {
		r.mu.Lock()
		if !r.destroyed {
			return r
		}
		r.mu.Unlock()
	}
	if !st.IsError() && st.Kind != stanza.KindPresence && (st.Kind != stanza.KindIQ || st.IsRequest()) {
		s.bounce(ctx, env, stanza.ItemNotFound, "no such room")
	}
	return nil
}

// roomMessage handles messages to the room's bare JID.
func (s *Service) roomMessage(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	r := s.lockRoom(ctx, env)
	if r == nil {
		return
	}
	defer r.unlockAndFlush(ctx)
	o := r.byReal[st.From.String()]
	switch st.Type {
	case "error":
		if o != nil && gone(st.ErrorCondition()) {
			r.dropSession(ctx, o, st.From, nil, []string{codeError})
		}
		return
	case "groupchat":
		r.groupchat(ctx, st, o)
		return
	}
	if x := st.Child(NSUser, "x"); x != nil {
		if inv := x.Child(NSUser, "invite"); inv != nil {
			r.invite(ctx, st, o, inv)
			return
		}
		if dec := x.Child(NSUser, "decline"); dec != nil {
			r.decline(st, dec)
			return
		}
	}
	if x := st.Child(NSData, "x"); x != nil && formType(x) == NSRequest {
		r.voiceRequest(ctx, st, o, x)
		return
	}
	r.errorReply(st, stanza.NotAcceptable, "messages to a room are groupchat messages, invitations or voice requests")
}

// formType returns the FORM_TYPE of a data form.
func formType(x *stanza.Element) string {
	for _, f := range x.Elements() {
		if f.Name.Local == "field" && f.AttrValue("var") == "FORM_TYPE" {
			return f.ChildText(NSData, "value")
		}
	}
	return ""
}

// formValue returns the first value of field name.
func formValue(x *stanza.Element, name string) string {
	for _, f := range x.Elements() {
		if f.Name.Local == "field" && f.AttrValue("var") == name {
			return f.ChildText(NSData, "value")
		}
	}
	return ""
}

// voiceRequest handles the muc#request form (XEP-0045 §7.13, §8.6): from
// a visitor it goes to the moderators; from a moderator with
// muc#request_allow it grants voice.
func (r *Room) voiceRequest(ctx context.Context, st *stanza.Stanza, o *occupant, x *stanza.Element) {
	switch {
	case o == nil:
		r.errorReply(st, stanza.NotAcceptable, "only occupants may ask for voice")
		return
	case o.role == RoleModerator:
		allow := formValue(x, "muc#request_allow")
		t := r.occ[formValue(x, "muc#roomnick")]
		if allow != "1" && allow != "true" {
			return // a refusal needs no answer
		}
		if t == nil {
			r.errorReply(st, stanza.ItemNotFound, "no such occupant")
			return
		}
		if t.role == RoleVisitor {
			r.applyRole(ctx, t, RoleParticipant, []*stanza.Element{stanza.NewElement(NSUser, "actor", "nick", o.nick)})
		}
		return
	case o.role != RoleVisitor:
		return // already has voice
	case formValue(x, "muc#role") != string(RoleParticipant):
		r.errorReply(st, stanza.BadRequest, "only voice (the participant role) can be requested")
		return
	}
	form := stanza.NewElement(NSData, "x", "type", "form").Append(
		stanza.NewElement(NSData, "title").AppendText("Voice request"),
		stanza.NewElement(NSData, "instructions").AppendText("To grant this person voice, submit this form with muc#request_allow set."),
		hidden("FORM_TYPE", NSRequest),
		field("muc#role", "list-single", "Requested role", string(RoleParticipant)),
		field("muc#jid", "jid-single", "User ID", o.real.String()),
		field("muc#roomnick", "text-single", "Room nickname", o.nick),
		boolField("muc#request_allow", "Grant voice to this person?", false),
	)
	for _, m := range r.sortedOccupants() {
		if m.role != RoleModerator {
			continue
		}
		for _, ses := range m.sessions {
			msg := &stanza.Stanza{Kind: stanza.KindMessage, From: r.jid, To: ses.jid, ID: randomID()}
			r.emit(msg.Append(form))
		}
	}
}

// groupchat relays an occupant's message to everyone (XEP-0045 §7.4),
// or changes the subject (§8.1).
func (r *Room) groupchat(ctx context.Context, st *stanza.Stanza, o *occupant) {
	switch {
	case o == nil:
		r.errorReply(st, stanza.NotAcceptable, "only occupants may send messages to the room")
		return
	case o.role.rank() < RoleParticipant.rank():
		r.errorReply(st, stanza.Forbidden, "you need voice to speak in this room")
		return
	}
	isSubject := st.Child("", "subject") != nil && st.Child("", "body") == nil
	if isSubject && !r.cfg.ChangeSubject && o.role != RoleModerator {
		r.errorReply(st, stanza.Forbidden, "only moderators may change the subject")
		return
	}
	m := &stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: o.jid, ID: st.ID, Lang: st.Lang}
	m.Children = make([]stanza.Node, 0, len(st.Children)+2)
	for _, n := range st.Children {
		if e := n.El; e != nil && r.forged(e) {
			continue
		}
		m.Children = append(m.Children, n)
	}
	m.Append(stanza.NewElement(NSOccupantID, "occupant-id", "id", o.id))
	if isSubject {
		r.subject = m
		r.persist(ctx)
		r.broadcast(m)
		return
	}
	now := r.svc.now().UTC()
	id := r.archiveMessage(ctx, m, o.nick, now)
	m.Append(stanza.NewElement(NSSID, "stanza-id", "by", r.jid.String(), "id", id))
	r.remember(m, id, now)
	r.broadcast(m)
}

// forged reports a child a sender must not set: ids the room vouches for.
func (r *Room) forged(e *stanza.Element) bool {
	switch {
	case e.Name.Space == NSOccupantID:
		return true
	case e.Name.Space == NSSID && e.Name.Local == "stanza-id":
		by, err := jid.Parse(e.AttrValue("by"))
		return err != nil || by.Equal(r.jid)
	}
	return false
}

// archiveMessage stores m in the room archive if the room keeps one, and
// returns its stanza id (a fresh random one when nothing is archived).
func (r *Room) archiveMessage(ctx context.Context, m *stanza.Stanza, nick string, now time.Time) string {
	if r.svc.archive == nil || !r.cfg.Logging || !archivable(m) {
		return randomID()
	}
	// Queued for the archive's group commit: the room does not wait for
	// the disk (archive queries wait for the queue first).
	id, err := r.svc.archive.AppendAsync(ctx, mam.Entry{User: r.jid.String(), Time: now, Peer: r.jid.String(),
		PeerRes: nick, XML: m.AppendXML(nil, stanza.NSClient)})
	if err != nil {
		r.svc.log.WithError(err).WithField("room", r.jid.String()).Error("room message not archived")
		return randomID()
	}
	return id
}

// archivable: what is worth keeping in a room's history and archive —
// messages with a body, or encrypted ones, minus no-store hints.
func archivable(m *stanza.Stanza) bool {
	if m.Child("urn:xmpp:hints", "no-store") != nil || m.Child("urn:xmpp:hints", "no-permanent-store") != nil {
		return false
	}
	if m.Child("", "body") != nil || m.Child("urn:xmpp:hints", "store") != nil {
		return true
	}
	return m.Child("eu.siacs.conversations.axolotl", "encrypted") != nil || m.Child("urn:xmpp:omemo:2", "encrypted") != nil
}

// remember keeps m for new occupants.
func (r *Room) remember(m *stanza.Stanza, id string, now time.Time) {
	if r.cfg.History <= 0 || !archivable(m) {
		return
	}
	if len(r.history) >= r.cfg.History {
		n := copy(r.history, r.history[len(r.history)-r.cfg.History+1:])
		clear(r.history[n:])
		r.history = r.history[:n]
	}
	r.history = append(r.history, histEntry{msg: m, stamp: now, id: id})
}

// broadcast sends m to every occupant's every client.
func (r *Room) broadcast(m *stanza.Stanza) {
	for _, o := range r.occ {
		for _, ses := range o.sessions {
			c := m.ShallowCopy()
			c.To = ses.jid
			r.emit(c)
		}
	}
}

// privateMessage relays a message to one occupant (XEP-0045 §7.5).
func (s *Service) privateMessage(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	r := s.lockRoom(ctx, env)
	if r == nil {
		return
	}
	defer r.unlockAndFlush(ctx)
	o := r.byReal[st.From.String()]
	if st.Type == "error" {
		if o != nil && gone(st.ErrorCondition()) {
			r.dropSession(ctx, o, st.From, nil, []string{codeError})
		}
		return
	}
	to := r.occ[st.To.Resourcepart()]
	switch {
	case o == nil:
		r.errorReply(st, stanza.NotAcceptable, "only occupants may send private messages")
		return
	case st.Type == "groupchat":
		r.errorReply(st, stanza.BadRequest, "groupchat messages go to the room")
		return
	case to == nil:
		r.errorReply(st, stanza.ItemNotFound, "no such occupant")
		return
	case !r.mayPM(o):
		r.errorReply(st, stanza.Forbidden, "private messages are not allowed in this room")
		return
	}
	m := st.ShallowCopy()
	m.From = o.jid
	m.Children = m.Children[:0:0]
	for _, n := range st.Children {
		if e := n.El; e != nil && (e.Name.Space == NSOccupantID || e.Name.Space == NSUser) {
			continue
		}
		m.Children = append(m.Children, n)
	}
	m.Append(stanza.NewElement(NSUser, "x"), stanza.NewElement(NSOccupantID, "occupant-id", "id", o.id))
	for _, ses := range to.sessions {
		c := m.ShallowCopy()
		c.To = ses.jid
		r.emit(c)
	}
}

func (r *Room) mayPM(o *occupant) bool {
	switch r.cfg.AllowPM {
	case PMAnyone:
		return true
	case PMParticipants:
		return o.role.rank() >= RoleParticipant.rank()
	case PMModerators:
		return o.role == RoleModerator
	}
	return false
}

// invite relays a mediated invitation (XEP-0045 §7.8.2).
func (r *Room) invite(ctx context.Context, st *stanza.Stanza, o *occupant, inv *stanza.Element) {
	if o == nil {
		r.errorReply(st, stanza.NotAcceptable, "only occupants may invite")
		return
	}
	to, err := jid.Parse(inv.AttrValue("to"))
	if err != nil || to.Equal(jid.JID{}) {
		r.errorReply(st, stanza.JIDMalformed, "the invitation needs a valid 'to'")
		return
	}
	aff := r.affOf(o.real)
	if r.cfg.MembersOnly {
		if !r.cfg.AllowInvites && aff.rank() < AffAdmin.rank() {
			r.errorReply(st, stanza.Forbidden, "only admins may invite to this room")
			return
		}
		// The invitee may then enter (XEP-0045 §7.8.2: the service MAY
		// add the invitee to the member list).
		if r.affOf(to.Bare()) == AffNone {
			r.setAff(to.Bare().String(), AffMember)
			r.persist(ctx)
		}
	}
	x := stanza.NewElement(NSUser, "x")
	fwd := stanza.NewElement(NSUser, "invite", "from", o.real.String())
	if reason := inv.Child(NSUser, "reason"); reason != nil {
		fwd.Append(reason.Copy())
	}
	x.Append(fwd)
	if r.cfg.Password != "" {
		x.Append(stanza.NewElement(NSUser, "password").AppendText(r.cfg.Password))
	}
	m := &stanza.Stanza{Kind: stanza.KindMessage, From: r.jid, To: to, ID: st.ID}
	m.Append(x, stanza.NewElement("", "body").AppendText(o.real.String()+" invites you to the room "+r.jid.String()))
	r.emit(m)
	if r.invites == nil {
		r.invites = make(map[string]string)
	}
	if len(r.invites) >= maxInvites {
		clear(r.invites) // old invitations lose their decline path, nothing else
	}
	r.invites[to.Bare().String()] = o.real.String()
}

// maxInvites bounds the invitations a room remembers for declines.
const maxInvites = 1000

// decline relays an invitee's refusal to the inviter. Only a refusal of
// an invitation this room relayed goes out, so the room cannot be used to
// send messages in its name to anyone.
func (r *Room) decline(st *stanza.Stanza, dec *stanza.Element) {
	to, err := jid.Parse(dec.AttrValue("to"))
	if err != nil || to.Equal(jid.JID{}) {
		r.errorReply(st, stanza.JIDMalformed, "the decline needs a valid 'to'")
		return
	}
	invitee := st.From.Bare().String()
	if r.invites[invitee] != to.Bare().String() {
		r.errorReply(st, stanza.NotAcceptable, "no invitation from that address to decline")
		return
	}
	delete(r.invites, invitee)
	fwd := stanza.NewElement(NSUser, "decline", "from", st.From.Bare().String())
	if reason := dec.Child(NSUser, "reason"); reason != nil {
		fwd.Append(reason.Copy())
	}
	m := &stanza.Stanza{Kind: stanza.KindMessage, From: r.jid, To: to}
	m.Append(stanza.NewElement(NSUser, "x").Append(fwd))
	r.emit(m)
}

// moderate retracts a message for everyone (XEP-0425 0.3).
func (r *Room) moderate(ctx context.Context, st *stanza.Stanza, o *occupant, mod *stanza.Element) {
	id := mod.AttrValue("id")
	switch {
	case o == nil || o.role != RoleModerator:
		r.errorReply(st, stanza.Forbidden, "only moderators may retract messages")
		return
	case mod.Child(NSRetract, "retract") == nil:
		r.errorReply(st, stanza.FeatureNotImplemented, "only retraction is supported")
		return
	case id == "":
		r.errorReply(st, stanza.BadRequest, "the message's stanza id is missing")
		return
	}
	var original *stanza.Stanza
	for i, h := range r.history {
		if h.id == id {
			original = h.msg
			r.history = append(r.history[:i], r.history[i+1:]...)
			break
		}
	}
	if r.svc.archive != nil && original == nil {
		if it, err := r.svc.archive.Get(ctx, r.jid.String(), id); err == nil {
			original, _ = decodeStanza(it.XML)
		}
	}
	if original == nil {
		r.errorReply(st, stanza.ItemNotFound, "no such message")
		return
	}
	reason := mod.Child(NSModerate, "reason")
	if reason == nil {
		reason = mod.Child("", "reason")
	}
	moderated := func() *stanza.Element {
		return stanza.NewElement(NSModerate, "moderated", "by", o.jid.String()).
			Append(stanza.NewElement(NSOccupantID, "occupant-id", "id", o.id))
	}
	now := r.svc.now().UTC()
	// The tombstone keeps who sent it and when, nothing of what it said.
	tomb := &stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: original.From, ID: original.ID}
	retracted := stanza.NewElement(NSRetract, "retracted", "stamp", now.Format("2006-01-02T15:04:05Z")).Append(moderated())
	if reason != nil {
		retracted.Append(stanza.NewElement(NSRetract, "reason").AppendText(reason.Text()))
	}
	tomb.Append(retracted)
	if oid := original.Child(NSOccupantID, "occupant-id"); oid != nil {
		tomb.Append(oid)
	}
	if r.svc.archive != nil {
		if err := r.svc.archive.Replace(ctx, r.jid.String(), id, tomb.AppendXML(nil, stanza.NSClient)); err != nil {
			r.svc.log.WithError(err).WithField("room", r.jid.String()).Debug("retracted message not in the archive")
		}
	}
	ann := &stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: r.jid, ID: randomID()}
	retract := stanza.NewElement(NSRetract, "retract", "id", id).Append(moderated())
	if reason != nil {
		retract.Append(stanza.NewElement(NSRetract, "reason").AppendText(reason.Text()))
	}
	ann.Append(retract, stanza.NewElement("", "body").AppendText("This message was retracted by a moderator."),
		stanza.NewElement("urn:xmpp:fallback:0", "fallback", "for", NSRetract),
		stanza.NewElement("urn:xmpp:hints", "store"))
	annID := r.archiveMessage(ctx, ann, "", now)
	ann.Append(stanza.NewElement(NSSID, "stanza-id", "by", r.jid.String(), "id", annID))
	r.broadcast(ann)
	r.emit(st.Result())
}
