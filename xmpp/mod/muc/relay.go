package muc

import (
	"gatehouse/xmpp/stanza"

	"mellium.im/xmpp/jid"
)

// maxPendingIQ bounds the relayed requests a room waits answers for; past
// it new requests are refused with resource-constraint until answers (or
// the occupants' departures) free places.
const maxPendingIQ = 256

// pendingIQ is a relayed request waiting for its answer.
type pendingIQ struct {
	from   jid.JID // the asking client's real JID
	id     string  // its id
	to     jid.JID // where the request went (an occupant's real JID)
	asNick string  // the answer comes back from room/asNick
}

// relayIQ passes a request from occupant o to target under the room's
// name (XEP-0045 §7.5-style relaying, as Prosody does): vCard requests
// go to the target's account, which the server answers (occupant
// avatars, XEP-0153); anything else to the target's newest client.
func (r *Room) relayIQ(st *stanza.Stanza, o, target *occupant) {
	if len(r.pending) >= maxPendingIQ {
		r.errorReply(st, stanza.ResourceConstraint, "too many requests waiting for answers")
		return
	}
	to := target.sessions[len(target.sessions)-1].jid
	if p := st.Payload(); p != nil && p.Name.Space == NSVCard {
		to = target.real
	}
	id := "muc-" + randomID()
	if r.pending == nil {
		r.pending = make(map[string]pendingIQ)
	}
	r.pending[id] = pendingIQ{from: st.From, id: st.ID, to: to, asNick: target.nick}
	fwd := st.ShallowCopy()
	fwd.From, fwd.To, fwd.ID = o.jid, to, id
	r.emit(fwd)
}

// relayAnswer passes the answer to a relayed request back to the asker.
// Answers that match nothing, or come from elsewhere than the request
// went, are dropped.
func (r *Room) relayAnswer(st *stanza.Stanza) {
	p, ok := r.pending[st.ID]
	if !ok || !p.to.Equal(st.From) {
		return
	}
	delete(r.pending, st.ID)
	from, err := r.nickJID(p.asNick)
	if err != nil {
		return
	}
	ans := st.ShallowCopy()
	ans.From, ans.To, ans.ID = from, p.from, p.id
	r.emit(ans)
}

// forgetPending drops the relayed requests of a client that left, and
// answers those sent to it.
func (r *Room) forgetPending(real jid.JID) {
	for id, p := range r.pending {
		switch {
		case p.from.Equal(real):
			delete(r.pending, id)
		case p.to.Equal(real):
			delete(r.pending, id)
			from, err := r.nickJID(p.asNick)
			if err != nil {
				continue
			}
			e := &stanza.Stanza{Kind: stanza.KindIQ, Type: "error", ID: p.id, From: from, To: p.from}
			e.Append(stanza.ErrorElement(stanza.Cancel, stanza.RecipientUnavailable, "the occupant left"))
			r.emit(e)
		}
	}
}
