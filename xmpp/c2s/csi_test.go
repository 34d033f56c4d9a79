package c2s_test

import (
	"testing"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// fromBob matches presence and messages from bob (with or without body).
func fromBob(bob jid.JID) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind != stanza.KindIQ && s.From.Equal(bob)
	}
}

func describe(s *stanza.Stanza) string {
	switch {
	case s.Kind == stanza.KindPresence:
		return "presence " + s.Type + ":" + s.Child("", "status").Text()
	case s.Body() != "":
		return "body:" + s.Body()
	case len(s.Elements()) > 0:
		return "state:" + s.Elements()[0].Name.Local
	}
	return s.String()
}

// TestCSI: while alice is inactive, presence and chat states from bob wait
// (the latest per sender only); a message with a body, or <active/>,
// releases them first, in order.
//
// Any stanza that is not held releases the others (an iq too, as in
// Prosody's mod_csi_simple), so alice synchronises with an XEP-0198 ack
// round trip, which the server answers without a stanza.
func TestCSI(t *testing.T) {
	tests := []struct {
		name    string
		send    []string // from bob to alice, while alice is inactive
		release string   // what alice or bob does to release (raw XML from alice if active)
		want    []string // what alice then sees from bob, in order
	}{
		{
			name: "body releases held presence and chat states",
			send: []string{
				`<presence to='%s'><status>one</status></presence>`,
				`<message to='%s' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
				`<presence to='%s'><status>two</status></presence>`,
				`<message to='%s' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>`,
				`<message to='%s' type='chat'><body>hello</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
			},
			want: []string{"presence :two", "state:paused", "body:hello"},
		},
		{
			name: "active flushes",
			send: []string{
				`<presence to='%s'><status>away</status></presence>`,
				`<presence to='%s' type='unavailable'><status>gone</status></presence>`,
			},
			release: `<active xmlns='urn:xmpp:csi:0'/>`,
			want:    []string{"presence unavailable:gone"},
		},
		{
			name: "receipts are urgent",
			send: []string{
				`<presence to='%s'><status>held</status></presence>`,
				`<message to='%s' type='chat' id='r'><received xmlns='urn:xmpp:receipts' id='x'/></message>`,
			},
			want: []string{"presence :held", "state:received"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := smServer(t)
			bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
			alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true})
			alice.Send(`<inactive xmlns='urn:xmpp:csi:0'/>`)
			alice.RequestAck() // inactive is in effect
			last := len(tc.send)
			if tc.release == "" {
				last-- // the last stanza is what releases the rest
			}
			for _, x := range tc.send[:last] {
				bob.Sendf(x, alice.JID)
			}
			bob.Ping()         // all of it has reached alice's session
			alice.RequestAck() // and anything not held would be here
			alice.ExpectNone(fromBob(bob.JID), 0)
			if tc.release != "" {
				alice.Send(tc.release)
			} else {
				bob.Sendf(tc.send[last], alice.JID)
			}
			var got []string
			for range tc.want {
				got = append(got, describe(alice.Expect(fromBob(bob.JID))))
			}
			alice.RequestAck()
			alice.ExpectNone(fromBob(bob.JID), 0)
			for i := range tc.want {
				if got[i] != tc.want[i] {
					t.Fatalf("alice saw %q, want %q", got, tc.want)
				}
			}
		})
	}
}

// TestCSIMaxHeld: a full hold queue is flushed even while inactive.
func TestCSIMaxHeld(t *testing.T) {
	ts := smServer(t, func(c *config.Config) { c.C2S.CSIMaxHeld = 2 })
	ts.AddUser(t, "carol", "carol password")
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	carol := ts.Dial(t, "carol", "carol password", xmpptest.ClientOptions{})
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true})
	alice.Send(`<inactive xmlns='urn:xmpp:csi:0'/>`)
	alice.RequestAck() // inactive is in effect
	bob.Sendf(`<presence to='%s'/>`, alice.JID)
	bob.Ping()
	alice.RequestAck()
	alice.ExpectNone(fromBob(bob.JID), 0)
	carol.Sendf(`<presence to='%s'/>`, alice.JID)
	alice.Expect(fromBob(bob.JID))
	alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.From.Equal(carol.JID) })
}

// TestCSIWithResumption: what was held when the connection dropped is
// delivered on resumption, after the unacknowledged stanzas.
func TestCSIWithResumption(t *testing.T) {
	ts := smServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true})
	phone.Send(`<inactive xmlns='urn:xmpp:csi:0'/>`)
	phone.RequestAck() // inactive is in effect
	bob.Sendf(`<presence to='%s'><status>held</status></presence>`, phone.JID)
	bob.Ping()
	phone.RequestAck()
	phone.ExpectNone(fromBob(bob.JID), 0)
	h := phone.Handled()
	phone.Drop()
	waitDetached(t, ts, phone.JID)
	phone2 := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", Resume: phone.SMID, ResumeH: h})
	if phone2.Resumed == nil {
		t.Fatalf("resume failed: %s", phone2.ResumeFailed)
	}
	p := phone2.Expect(fromBob(bob.JID))
	if describe(p) != "presence :held" {
		t.Fatalf("got %s", p)
	}
	// Resumed streams start active.
	bob.Sendf(`<presence to='%s'><status>now</status></presence>`, phone.JID)
	phone2.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && describe(s) == "presence :now" })
}
