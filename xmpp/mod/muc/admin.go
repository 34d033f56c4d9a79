package muc

import (
	"context"
	"sort"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// maxAdminItems bounds the items of one muc#admin request.
const maxAdminItems = 100

// roomIQ handles iq stanzas to the room's bare JID.
func (s *Service) roomIQ(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	if !st.IsRequest() {
		return // results of nothing we asked
	}
	p := st.Payload()
	if p == nil || len(st.Elements()) != 1 {
		s.bounce(ctx, env, stanza.BadRequest, "an iq request carries exactly one payload")
		return
	}
	r := s.lockRoom(ctx, env)
	if r == nil {
		return
	}
	o := r.byReal[st.From.String()]
	aff := r.affOf(st.From.Bare())
	if r.locked && aff != AffOwner {
		r.errorReply(st, stanza.ItemNotFound, "no such room")
		r.unlockAndFlush(ctx)
		return
	}
	switch {
	case p.Name.Space == NSDiscoInfo && p.Name.Local == "query" && st.Type == "get":
		r.emit(r.discoInfo(st, p.AttrValue("node")))
	case p.Name.Space == NSDiscoItems && p.Name.Local == "query" && st.Type == "get":
		r.emit(r.discoItems(st, o))
	case p.Name.Space == NSAdmin && p.Name.Local == "query":
		if st.Type == "get" {
			r.adminGet(st, p, o, aff)
		} else {
			r.adminSet(ctx, st, p, o, aff)
		}
	case p.Name.Space == NSOwner && p.Name.Local == "query":
		if aff != AffOwner {
			r.errorReply(st, stanza.Forbidden, "only owners may configure the room")
			break
		}
		if st.Type == "get" {
			r.emit(st.Result(stanza.NewElement(NSOwner, "query").Append(r.configForm())))
		} else {
			r.ownerSet(ctx, st, p)
		}
	case p.Name.Space == mam.NS && p.Name.Local == "query":
		r.archiveQuery(ctx, st, o, aff)
	case p.Name.Space == mam.NS && p.Name.Local == "metadata" && st.Type == "get":
		r.archiveMetadata(ctx, st, o, aff)
	case p.Name.Space == NSModerate && p.Name.Local == "moderate" && st.Type == "set":
		r.moderate(ctx, st, o, p)
	case p.Name.Space == NSPing && p.Name.Local == "ping" && st.Type == "get":
		r.emit(st.Result())
	default:
		r.errorReply(st, stanza.ServiceUnavailable, "")
	}
	r.unlockAndFlush(ctx)
}

// archiveQuery answers a XEP-0313 query of the room archive. Occupants
// may query; so may members of a members-only room. The results are queued
// behind the room lock like everything else the room sends.
func (r *Room) archiveQuery(ctx context.Context, st *stanza.Stanza, o *occupant, aff Affiliation) {
	if !r.archiveAccess(st, o, aff) {
		return
	}
	reply := mam.AnswerQuery(ctx, r.svc.archive, r.jid.String(), st, archiveMaxPag, func(m *stanza.Stanza) error {
		r.emit(m)
		return nil
	})
	if reply != nil {
		r.emit(reply)
	}
}

// archiveAccess reports whether the requester may read the room archive,
// answering the request with the error when not.
func (r *Room) archiveAccess(st *stanza.Stanza, o *occupant, aff Affiliation) bool {
	switch {
	case r.svc.archive == nil || !r.cfg.Logging:
		r.errorReply(st, stanza.ServiceUnavailable, "this room keeps no archive")
	case aff == AffOutcast:
		r.errorReply(st, stanza.Forbidden, "")
	case r.cfg.MembersOnly && aff.rank() < AffMember.rank():
		r.errorReply(st, stanza.Forbidden, "only members may read the archive of this room")
	case !r.cfg.MembersOnly && !r.cfg.Public && o == nil && aff.rank() < AffMember.rank():
		r.errorReply(st, stanza.Forbidden, "join the room to read its archive")
	default:
		return true
	}
	return false
}

// archiveMetadata answers a XEP-0313 <metadata/> request to the room
// (part of urn:xmpp:mam:2#extended, which rooms advertise).
func (r *Room) archiveMetadata(ctx context.Context, st *stanza.Stanza, o *occupant, aff Affiliation) {
	if !r.archiveAccess(st, o, aff) {
		return
	}
	md, err := mam.Metadata(ctx, r.svc.archive, r.jid.String())
	if err != nil {
		r.errorReply(st, stanza.InternalServerError, "")
		return
	}
	r.emit(st.Result(md))
}

// occupantIQ handles iq stanzas to room@service/nick: self-ping (XEP-0410)
// is answered here; other requests are relayed to the occupant and their
// answers back (see relayIQ).
func (s *Service) occupantIQ(ctx context.Context, env *router.Envelope) {
	st := env.Stanza
	r := s.lockRoom(ctx, env)
	if r == nil {
		return
	}
	defer r.unlockAndFlush(ctx)
	if !st.IsRequest() {
		r.relayAnswer(st)
		return
	}
	o := r.byReal[st.From.String()]
	p := st.Payload()
	target := r.occ[st.To.Resourcepart()]
	switch {
	case o == nil:
		// XEP-0410 §3.2: the client is not joined (any more).
		r.errorReply(st, stanza.NotAcceptable, "you are not an occupant of this room")
	case target == nil:
		r.errorReply(st, stanza.ItemNotFound, "no such occupant")
	case o == target && p != nil && p.Name.Space == NSPing && st.Type == "get":
		r.emit(st.Result())
	default:
		r.relayIQ(st, o, target)
	}
}

// adminGet lists occupants by role or users by affiliation (XEP-0045 §9, §8.5).
func (r *Room) adminGet(st *stanza.Stanza, q *stanza.Element, o *occupant, aff Affiliation) {
	items := q.Elements()
	if len(items) != 1 || items[0].Name.Local != "item" {
		r.errorReply(st, stanza.BadRequest, "ask for one role or affiliation")
		return
	}
	it := items[0]
	out := stanza.NewElement(NSAdmin, "query")
	if a := it.AttrValue("affiliation"); a != "" {
		want, ok := parseAffiliation(a)
		if !ok || want == AffNone {
			r.errorReply(st, stanza.BadRequest, "unknown affiliation")
			return
		}
		if !r.mayListAffiliation(aff, want) {
			r.errorReply(st, stanza.Forbidden, "only admins may list this affiliation")
			return
		}
		bares := make([]string, 0, len(r.affs))
		for b, a := range r.affs {
			if a == want {
				bares = append(bares, b)
			}
		}
		sort.Strings(bares)
		for _, b := range bares {
			e := stanza.NewElement(NSAdmin, "item", "affiliation", string(want), "jid", b)
			for _, oc := range r.occ {
				if oc.real.String() == b {
					e.SetAttr("nick", oc.nick)
					e.SetAttr("role", string(oc.role))
				}
			}
			out.Append(e)
		}
		r.emit(st.Result(out))
		return
	}
	role, ok := parseRole(it.AttrValue("role"))
	if !ok || role == RoleNone {
		r.errorReply(st, stanza.BadRequest, "ask for a role or an affiliation")
		return
	}
	if o == nil || o.role != RoleModerator {
		r.errorReply(st, stanza.Forbidden, "only moderators may list roles")
		return
	}
	for _, oc := range r.sortedOccupants() {
		if oc.role == role {
			out.Append(stanza.NewElement(NSAdmin, "item", "nick", oc.nick, "role", string(oc.role),
				"affiliation", string(r.affOf(oc.real)), "jid", oc.sessions[0].jid.String()))
		}
	}
	r.emit(st.Result(out))
}

// mayListAffiliation: admins and owners see every list. Members of a
// non-anonymous room see who the members, admins and owners are (the
// JIDs are no secret there, and clients such as Conversations need the
// lists to encrypt for everyone, XEP-0384); outcasts stay for admins.
func (r *Room) mayListAffiliation(aff, want Affiliation) bool {
	switch {
	case aff.rank() >= AffAdmin.rank():
		return true
	case want == AffOutcast || aff.rank() < AffMember.rank():
		return false
	}
	return r.cfg.WhoIs == WhoIsAnyone
}

// change is one checked item of a muc#admin set.
type change struct {
	target *occupant // role change
	role   Role
	bare   jid.JID // affiliation change
	aff    Affiliation
	reason string
}

// adminSet applies role and affiliation changes. Every item is checked
// before any is applied, so a request is done whole or not at all.
func (r *Room) adminSet(ctx context.Context, st *stanza.Stanza, q *stanza.Element, o *occupant, aff Affiliation) {
	items := q.Elements()
	if len(items) == 0 || len(items) > maxAdminItems {
		r.errorReply(st, stanza.BadRequest, "between 1 and 100 items")
		return
	}
	var changes []change
	for _, it := range items {
		if it.Name.Local != "item" {
			r.errorReply(st, stanza.BadRequest, "unexpected element")
			return
		}
		c, cond, text := r.checkItem(it, o, aff)
		if cond != "" {
			r.errorReply(st, cond, text)
			return
		}
		changes = append(changes, c)
	}
	var actor *stanza.Element
	if o != nil {
		actor = stanza.NewElement(NSUser, "actor", "nick", o.nick)
	}
	persist := false
	for _, c := range changes {
		var extra []*stanza.Element
		if actor != nil {
			extra = append(extra, actor)
		}
		if c.reason != "" {
			extra = append(extra, stanza.NewElement(NSUser, "reason").AppendText(c.reason))
		}
		if c.target != nil {
			r.applyRole(ctx, c.target, c.role, extra)
			continue
		}
		r.setAff(c.bare.String(), c.aff)
		persist = true
		r.applyAffiliation(ctx, c.bare, c.aff, extra)
	}
	if persist {
		r.persist(ctx)
	}
	r.emit(st.Result())
}

// checkItem validates one muc#admin item against the actor's privileges
// (XEP-0045 §8, §9, §10).
func (r *Room) checkItem(it *stanza.Element, o *occupant, aff Affiliation) (change, stanza.Condition, string) {
	c := change{reason: it.ChildText(NSAdmin, "reason")}
	if ra := it.AttrValue("role"); ra != "" {
		role, ok := parseRole(ra)
		if !ok {
			return c, stanza.BadRequest, "unknown role"
		}
		t := r.occ[it.AttrValue("nick")]
		switch {
		case o == nil || o.role != RoleModerator:
			return c, stanza.Forbidden, "only moderators may change roles"
		case t == nil:
			return c, stanza.ItemNotFound, "no such occupant"
		}
		tAff := r.affOf(t.real)
		switch {
		case role == RoleModerator || t.role == RoleModerator && role != RoleNone:
			// Granting or revoking moderation: admins and owners only.
			if aff.rank() < AffAdmin.rank() || tAff.rank() >= aff.rank() && aff != AffOwner {
				return c, stanza.NotAllowed, "you may not change this occupant's moderation privileges"
			}
		case tAff.rank() >= AffAdmin.rank():
			return c, stanza.NotAllowed, "admins and owners cannot be kicked or silenced"
		}
		c.target, c.role = t, role
		return c, "", ""
	}
	a, ok := parseAffiliation(it.AttrValue("affiliation"))
	if !ok {
		return c, stanza.BadRequest, "an item needs a role or an affiliation"
	}
	bare, err := jid.Parse(it.AttrValue("jid"))
	if err != nil || bare.Equal(jid.JID{}) {
		if t := r.occ[it.AttrValue("nick")]; t != nil {
			bare = t.real
		} else {
			return c, stanza.BadRequest, "an affiliation change needs a jid"
		}
	}
	bare = bare.Bare()
	cur := r.affOf(bare)
	switch {
	case aff.rank() < AffAdmin.rank():
		return c, stanza.Forbidden, "only admins and owners may change affiliations"
	case aff == AffAdmin && (a.rank() >= AffAdmin.rank() || cur.rank() >= AffAdmin.rank()):
		return c, stanza.NotAllowed, "admins may not change admins and owners"
	case cur == AffOwner && a != AffOwner && r.owners() == 1:
		return c, stanza.Conflict, "a room needs an owner"
	}
	c.bare, c.aff = bare, a
	return c, "", ""
}

func (r *Room) owners() int {
	n := 0
	for _, a := range r.affs {
		if a == AffOwner {
			n++
		}
	}
	return n
}

// applyRole changes an occupant's role; none kicks (status 307).
func (r *Room) applyRole(ctx context.Context, t *occupant, role Role, extra []*stanza.Element) {
	if role == RoleNone {
		r.removeOccupant(ctx, t, nil, []string{codeKicked}, extra)
		return
	}
	t.role = role
	r.broadcastItem(t, extra)
}

// applyAffiliation updates the occupants of a user whose affiliation
// changed: banned ones leave (301), and so do those no longer allowed in a
// members-only room (321); the others get the role that goes with it.
func (r *Room) applyAffiliation(ctx context.Context, bare jid.JID, a Affiliation, extra []*stanza.Element) {
	for _, t := range r.sortedOccupants() {
		if !t.real.Equal(bare) {
			continue
		}
		switch {
		case a == AffOutcast:
			r.removeOccupant(ctx, t, nil, []string{codeBanned}, extra)
		case r.cfg.MembersOnly && a.rank() < AffMember.rank():
			r.removeOccupant(ctx, t, nil, []string{codeAffChange}, extra)
		default:
			t.role = r.defaultRole(a)
			r.broadcastItem(t, extra)
		}
	}
}

// broadcastItem tells everyone t's new role or affiliation.
func (r *Room) broadcastItem(t *occupant, extra []*stanza.Element) {
	for _, v := range r.sortedOccupants() {
		it := r.item(t, v == t || r.canSeeJIDs(v.role))
		it.Append(extra...)
		var codes []string
		if v == t {
			codes = []string{codeSelf}
		}
		p := r.occupantPresence(t, t.pres(), it, codes)
		for _, ses := range v.sessions {
			c := p.ShallowCopy()
			c.To = ses.jid
			r.emit(c)
		}
	}
}

// ownerSet handles configuration submissions and destruction (XEP-0045 §10).
func (r *Room) ownerSet(ctx context.Context, st *stanza.Stanza, q *stanza.Element) {
	if d := q.Child(NSOwner, "destroy"); d != nil {
		r.destroy(ctx, d)
		r.emit(st.Result())
		return
	}
	x := q.Child(NSData, "x")
	if x == nil {
		r.errorReply(st, stanza.BadRequest, "submit a form or destroy the room")
		return
	}
	switch x.AttrValue("type") {
	case "cancel":
		if r.locked {
			// The creator gave up on a new room (XEP-0045 §10.1.3).
			r.destroy(ctx, nil)
		}
		r.emit(st.Result())
		return
	case "submit":
	default:
		r.errorReply(st, stanza.BadRequest, "the form type must be submit or cancel")
		return
	}
	cfg, err := ParseConfigForm(x, r.cfg, r.svc.cfg.MaxOccupants, r.svc.cfg.History)
	if err != nil {
		r.errorReply(st, stanza.NotAcceptable, err.Error())
		return
	}
	r.applyConfig(ctx, cfg)
	r.emit(st.Result())
}

// applyConfig installs a new configuration and tells occupants what
// changed in ways they see.
func (r *Room) applyConfig(ctx context.Context, cfg RoomConfig) {
	old := r.cfg
	r.cfg = cfg
	r.locked = false
	if len(r.history) > cfg.History {
		r.history = append(r.history[:0], r.history[len(r.history)-cfg.History:]...)
	}
	switch {
	case cfg.Persistent:
		r.persist(ctx)
	case old.Persistent:
		if err := r.svc.store.Delete(ctx, r.jid.Localpart()); err != nil {
			r.svc.log.WithError(err).WithField("room", r.jid.String()).Error("forgetting room")
		}
	}
	var codes []string
	if old.WhoIs != cfg.WhoIs {
		if cfg.WhoIs == WhoIsAnyone {
			codes = append(codes, "172")
		} else {
			codes = append(codes, "173")
		}
	}
	if old.Logging != cfg.Logging {
		if cfg.Logging {
			codes = append(codes, "170")
		} else {
			codes = append(codes, "171")
		}
	}
	codes = append(codes, "104") // configuration change that is not privacy related
	m := &stanza.Stanza{Kind: stanza.KindMessage, Type: "groupchat", From: r.jid, ID: randomID()}
	x := stanza.NewElement(NSUser, "x")
	for _, c := range codes {
		x.Append(stanza.NewElement(NSUser, "status", "code", c))
	}
	r.broadcast(m.Append(x))
	if cfg.MembersOnly && !old.MembersOnly {
		for _, t := range r.sortedOccupants() {
			if r.affOf(t.real).rank() < AffMember.rank() {
				r.removeOccupant(ctx, t, nil, []string{codeMembersOnly}, nil)
			}
		}
	}
	if cfg.Moderated != old.Moderated {
		for _, t := range r.sortedOccupants() {
			if want := r.defaultRole(r.affOf(t.real)); want != t.role && t.role != RoleModerator {
				t.role = want
				r.broadcastItem(t, nil)
			}
		}
	}
	r.maybeEnd(ctx)
}

// destroy ends the room (XEP-0045 §10.9): everyone leaves with the destroy
// notice, and a persistent room is forgotten.
func (r *Room) destroy(ctx context.Context, d *stanza.Element) {
	var extra []*stanza.Element
	if d != nil {
		e := stanza.NewElement(NSUser, "destroy")
		if alt := d.AttrValue("jid"); alt != "" {
			e.SetAttr("jid", alt)
		}
		if reason := d.ChildText(NSOwner, "reason"); reason != "" {
			e.Append(stanza.NewElement(NSUser, "reason").AppendText(reason))
		}
		extra = append(extra, e)
	} else {
		extra = append(extra, stanza.NewElement(NSUser, "destroy"))
	}
	r.cfg.Persistent = false
	for _, t := range r.sortedOccupants() {
		delete(r.affs, t.real.String()) // the last presences say affiliation none
		r.removeOccupant(ctx, t, nil, nil, nil, extra...)
	}
	r.destroyed = true
	r.svc.remove(r)
	r.svc.log.WithField("room", r.jid.String()).Info("room destroyed")
	if err := r.svc.store.Delete(ctx, r.jid.Localpart()); err != nil {
		r.svc.log.WithError(err).WithField("room", r.jid.String()).Error("forgetting room")
	}
}
