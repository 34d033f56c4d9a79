package mam

import (
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

// Namespaces the archiving decision looks at.
const (
	nsHints      = "urn:xmpp:hints"
	nsChatStates = "http://jabber.org/protocol/chatstates"
	nsReceipts   = "urn:xmpp:receipts"
	nsMarkers    = "urn:xmpp:chat-markers:0"
	nsConference = "jabber:x:conference"
	nsMUCUser    = "http://jabber.org/protocol/muc#user"
	nsEME        = "urn:xmpp:eme:0"
)

// encrypted lists the end-to-end encryption payloads that stand in for a
// body: the server cannot see what they say, so it must assume it matters.
var encrypted = [...]struct{ space, local string }{
	{"eu.siacs.conversations.axolotl", "encrypted"}, // OMEMO (legacy, Conversations)
	{"urn:xmpp:omemo:2", "encrypted"},               // OMEMO 2 (XEP-0384)
	{"urn:xmpp:openpgp:0", "openpgp"},               // OpenPGP for XMPP (XEP-0373)
	{"jabber:x:encrypted", "x"},                     // legacy OpenPGP (XEP-0027)
	{nsEME, "encryption"},                           // explicit encryption marker (XEP-0380)
}

// storable decides whether a message belongs in a user archive, following
// XEP-0313 §6.1.1 and what Prosody's mod_mam does:
//
//   - only types chat and normal (headline is ephemeral, groupchat is the
//     room's archive, errors are not conversation);
//   - never with a no-store or no-permanent-store hint, always with a store
//     hint (XEP-0334);
//   - with a body, or a subject;
//   - without a body only if it carries something a user would miss in
//     their history: an end-to-end encrypted payload (OMEMO, OpenPGP, ...),
//     a delivery receipt or chat marker (clients sync read state through
//     the archive), an invitation (XEP-0249 or mediated), or a call
//     signal (XEP-0353 Jingle Message Initiation, for call logs).
//
// Chat states alone, like any other bodiless message, are not archived.
func storable(st *stanza.Stanza) bool {
	switch st.Type {
	case "", "normal", "chat":
	default:
		return false
	}
	if st.Child(nsHints, "no-store") != nil || st.Child(nsHints, "no-permanent-store") != nil {
		return false
	}
	if st.Child(nsHints, "store") != nil {
		return true
	}
	if isContent(st, "body") || isContent(st, "subject") {
		return true
	}
	for _, n := range st.Children {
		e := n.El
		if e == nil {
			continue
		}
		for _, enc := range encrypted {
			if e.Name.Space == enc.space && e.Name.Local == enc.local {
				return true
			}
		}
		switch e.Name.Space {
		case nsReceipts, nsMarkers, "urn:xmpp:jingle-message:0", "urn:xmpp:jingle-message:1":
			return true
		case nsConference:
			if e.Name.Local == "x" {
				return true
			}
		case nsMUCUser:
			if e.Name.Local == "x" && e.Child(nsMUCUser, "invite") != nil {
				return true
			}
		}
	}
	return false
}

// isContent reports whether st has a child named local in the stream's
// content namespace (Child with space "" matches any namespace, and a
// <body xmlns='urn:example'/> is not a body).
func isContent(st *stanza.Stanza, local string) bool {
	for _, n := range st.Children {
		if e := n.El; e != nil && e.Name.Local == local && e.Name.Space == "" {
			return true
		}
	}
	return false
}

// forStorage is the copy of st that goes into the archive: chat states
// are left out (they say nothing once the moment is gone, and Prosody drops
// them too). It shares everything else with st.
func forStorage(st *stanza.Stanza) *stanza.Stanza {
	if !hasChildNS(st, nsChatStates) {
		return st
	}
	c := *st
	c.Children = nil
	for _, n := range st.Children {
		if n.El != nil && n.El.Name.Space == nsChatStates {
			continue
		}
		c.Children = append(c.Children, n)
	}
	return &c
}

func hasChildNS(st *stanza.Stanza, space string) bool {
	for _, n := range st.Children {
		if n.El != nil && n.El.Name.Space == space {
			return true
		}
	}
	return false
}

// stripLocalIDs removes every <stanza-id/> whose 'by' is an address on one
// of our hosted domains (XEP-0359 §3: an entity that adds stanza-ids must
// override any that claim to be its own, or a sender could forge archive
// ids for our users). Ids from other archives (a MUC's, another server's) stay.
// The child list is copied, never edited in place, because carbons and
// other copies may share it.
func stripLocalIDs(st *stanza.Stanza, isHost func(string) bool) {
	keep := -1
	for i, n := range st.Children {
		if n.El != nil && isLocalID(n.El, isHost) {
			keep = i
			break
		}
	}
	if keep < 0 {
		return
	}
	out := make([]stanza.Node, 0, len(st.Children)-1)
	for _, n := range st.Children {
		if n.El != nil && isLocalID(n.El, isHost) {
			continue
		}
		out = append(out, n)
	}
	st.Children = out
}

func isLocalID(e *stanza.Element, isHost func(string) bool) bool {
	if e.Name.Local != "stanza-id" || e.Name.Space != NSSID {
		return false
	}
	by, err := jid.Parse(e.AttrValue("by"))
	if err != nil {
		// Not an address at all, so not ours: a client cannot take it for
		// our archive id since ours always carry by='user@domain'.
		return false
	}
	return isHost(by.Domainpart())
}

// stanzaID is the element announcing where a message was archived.
func stanzaID(by jid.JID, id string) *stanza.Element {
	return stanza.NewElement(NSSID, "stanza-id", "by", by.String(), "id", id)
}
