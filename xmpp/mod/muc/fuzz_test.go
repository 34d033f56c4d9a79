package muc

import (
	"encoding/xml"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

func parseElement(s string) (*stanza.Element, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			return stanza.ReadElement(d, start)
		}
	}
}

// FuzzConfigForm checks that any submitted form either fails or yields a
// configuration within bounds.
func FuzzConfigForm(f *testing.F) {
	f.Add(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_maxusers'><value>10</value></field></x>`)
	f.Add(`<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field><field var='muc#roomconfig_roomsecret'><value>pw</value></field></x>`)
	f.Add(`<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_whois'><value>anyone</value><value>moderators</value></field></x>`)
	f.Add(`<x xmlns='jabber:x:data' type='submit'><field var='muc#maxhistoryfetch'><value>-1</value></field><field var='muc#roomconfig_allowpm'><value>none</value></field></x>`)
	base := RoomConfig{WhoIs: WhoIsModerators, MaxUsers: 100, AllowPM: PMAnyone, History: 20}
	f.Fuzz(func(t *testing.T, form string) {
		x, err := parseElement(form)
		if err != nil {
			return
		}
		cfg, err := ParseConfigForm(x, base, 200, 50)
		if err != nil {
			if cfg != base {
				t.Fatalf("a failed form changed the configuration: %+v", cfg)
			}
			return
		}
		switch {
		case cfg.WhoIs != WhoIsModerators && cfg.WhoIs != WhoIsAnyone:
			t.Fatalf("whois %q", cfg.WhoIs)
		case cfg.MaxUsers < 1 || cfg.MaxUsers > 200:
			t.Fatalf("max users %d", cfg.MaxUsers)
		case cfg.History < 0 || cfg.History > 50:
			t.Fatalf("history %d", cfg.History)
		case cfg.AllowPM != PMAnyone && cfg.AllowPM != PMParticipants && cfg.AllowPM != PMModerators && cfg.AllowPM != PMNone:
			t.Fatalf("allowpm %q", cfg.AllowPM)
		case len(cfg.Name) > maxTextLen || len(cfg.Password) > maxTextLen:
			t.Fatal("text too long")
		}
	})
}

// FuzzRoomStanza feeds arbitrary stanzas from an occupant (the owner) and
// from a stranger to a live room through the real router: the service
// must never panic or deadlock, and the room must stay consistent.
func FuzzRoomStanza(f *testing.F) {
	f.Add(`<presence to='room@conference.corp.example/X'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='-5' maxchars='7' seconds='x' since='2020-01-01T00:00:00Z'/><password>p</password></x></presence>`)
	f.Add(`<iq type='set' to='room@conference.corp.example' id='a'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Alice' role='none'/><item jid='bob@corp.example' affiliation='owner'/></query></iq>`)
	f.Add(`<iq type='set' to='room@conference.corp.example' id='b'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='x@y'><reason>r</reason></destroy></query></iq>`)
	f.Add(`<message to='room@conference.corp.example'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='bob@corp.example'/><decline to=''/></x></message>`)
	f.Add(`<iq type='set' to='room@conference.corp.example' id='c'><moderate xmlns='urn:xmpp:message-moderate:1' id='zz'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>`)
	f.Add(`<iq type='set' to='room@conference.corp.example' id='d'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query></iq>`)
	f.Add(`<message type='error' to='room@conference.corp.example/Alice'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)
	fx := newFixture(f, false)
	alice := fx.login(f, "alice", false)
	fx.route(f, router.ZoneLocal, joinStanza(alice, "Alice"))
	fx.route(f, router.ZoneLocal, instantRoom(alice))
	stranger := jid.MustParse("someone@irc.example.net/r")
	f.Fuzz(func(t *testing.T, raw string) {
		d := xml.NewDecoder(strings.NewReader(raw))
		var st *stanza.Stanza
		for {
			tok, err := d.Token()
			if err != nil {
				return
			}
			if start, ok := tok.(xml.StartElement); ok {
				st, err = stanza.Parse(d, start)
				if err != nil {
					return
				}
				break
			}
		}
		if st.To.Domainpart() != "conference.corp.example" {
			return
		}
		for i, from := range []jid.JID{alice, stranger} {
			c := st.Copy()
			c.From = from
			z := router.ZoneLocal
			if i == 1 {
				z = router.ZoneTransport
			}
			_ = fx.r.Route(t.Context(), &router.Envelope{Stanza: c, Src: router.Endpoint{Zone: z, Domain: from.Domainpart(), Conn: 1000}})
		}
		// Whatever happened, the owner can (re)join and the room answers.
		fx.route(t, router.ZoneLocal, joinStanza(alice, "Alice"))
		if r := fx.svc.room("room"); r != nil {
			r.mu.Lock()
			for nick, o := range r.occ {
				if o.nick != nick || len(o.sessions) == 0 {
					t.Fatalf("inconsistent occupant %q: %+v", nick, o)
				}
				for _, s := range o.sessions {
					if r.byReal[s.jid.String()] != o {
						t.Fatalf("session %s not indexed", s.jid)
					}
				}
			}
			if r.draining || len(r.out) != 0 {
				t.Fatal("room left with queued stanzas")
			}
			r.mu.Unlock()
		}
	})
}
