package muc

import (
	"sort"
	"strconv"

	"gatehouse/xmpp/mod/mam"
	"gatehouse/xmpp/stanza"
)

func identity(category, typ, name string) *stanza.Element {
	e := stanza.NewElement(NSDiscoInfo, "identity", "category", category, "type", typ)
	if name != "" {
		e.SetAttr("name", name)
	}
	return e
}

func features(q *stanza.Element, ns ...string) {
	sort.Strings(ns)
	for _, f := range ns {
		q.Append(stanza.NewElement(NSDiscoInfo, "feature", "var", f))
	}
}

// serviceInfo answers disco#info to the service domain.
func (s *Service) serviceInfo(st *stanza.Stanza) *stanza.Stanza {
	if p := st.Payload(); p.AttrValue("node") != "" {
		return stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	q := stanza.NewElement(NSDiscoInfo, "query").Append(identity("conference", "text", "Chatrooms"))
	// Self-ping, occupant ids, moderation and MAM are room features
	// (XEP-0410, XEP-0421, XEP-0425, XEP-0313 §6): rooms advertise them.
	features(q, NS, NSDiscoInfo, NSDiscoItems, NSPing, "urn:xmpp:unique")
	return st.Result(q)
}

// serviceItems lists the public rooms (XEP-0045 §6.3).
func (s *Service) serviceItems(st *stanza.Stanza) *stanza.Stanza {
	q := stanza.NewElement(NSDiscoItems, "query")
	for _, name := range s.Rooms() {
		r := s.room(name)
		if r == nil {
			continue
		}
		r.mu.Lock()
		public, title, jidStr := r.cfg.Public && !r.locked && !r.destroyed, r.cfg.Name, r.jid.String()
		r.mu.Unlock()
		if !public {
			continue
		}
		it := stanza.NewElement(NSDiscoItems, "item", "jid", jidStr)
		if title != "" {
			it.SetAttr("name", title)
		}
		q.Append(it)
	}
	return st.Result(q)
}

// discoInfo describes the room (XEP-0045 §6.4); call with r.mu held.
func (r *Room) discoInfo(st *stanza.Stanza, node string) *stanza.Stanza {
	if node != "" {
		return stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	c := r.cfg
	name := c.Name
	if name == "" {
		name = r.jid.Localpart()
	}
	q := stanza.NewElement(NSDiscoInfo, "query").Append(identity("conference", "text", name))
	fs := []string{NS, NSDiscoInfo, NSDiscoItems, NSSelfPing, NSOccupantID, NSModerate, NSRetract, NSStableID, NSSID, NSPing, NSRequest}
	pick := func(cond bool, yes, no string) {
		if cond {
			fs = append(fs, yes)
		} else {
			fs = append(fs, no)
		}
	}
	pick(c.Persistent, "muc_persistent", "muc_temporary")
	pick(c.Public, "muc_public", "muc_hidden")
	pick(c.MembersOnly, "muc_membersonly", "muc_open")
	pick(c.Moderated, "muc_moderated", "muc_unmoderated")
	pick(c.Password != "", "muc_passwordprotected", "muc_unsecured")
	pick(c.WhoIs == WhoIsAnyone, "muc_nonanonymous", "muc_semianonymous")
	if r.svc.archive != nil && c.Logging {
		fs = append(fs, mam.NS, mam.NSExtended)
	}
	features(q, fs...)
	x := stanza.NewElement(NSData, "x", "type", "result").Append(hidden("FORM_TYPE", NSRoomInfo))
	x.Append(
		field("muc#roominfo_description", "text-single", "Description", c.Desc),
		field("muc#roominfo_occupants", "text-single", "Number of occupants", strconv.Itoa(r.count())),
		field("muc#roomconfig_roomname", "text-single", "Room name", c.Name),
		field("muc#maxhistoryfetch", "text-single", "Messages sent on join", strconv.Itoa(c.History)),
	)
	subj := ""
	if r.subject != nil {
		if e := r.subject.Child("", "subject"); e != nil {
			subj = e.Text()
		}
	}
	x.Append(field("muc#roominfo_subject", "text-single", "Subject", subj))
	q.Append(x)
	return st.Result(q)
}

// discoItems lists the occupants to occupants only (XEP-0045 §6.5).
func (r *Room) discoItems(st *stanza.Stanza, o *occupant) *stanza.Stanza {
	q := stanza.NewElement(NSDiscoItems, "query")
	if o != nil {
		for _, v := range r.sortedOccupants() {
			q.Append(stanza.NewElement(NSDiscoItems, "item", "jid", v.jid.String()))
		}
	}
	return st.Result(q)
}
