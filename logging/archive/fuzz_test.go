package archive

import (
	"encoding/xml"
	"strings"
	"testing"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// FuzzRecordFromStanza feeds arbitrary stanzas (as a remote server or a
// transport could send them) through what the boundary extracts for the
// archive: the stanza record and the file offers. Nothing may panic, and
// what is extracted must be something the schema accepts.
func FuzzRecordFromStanza(f *testing.F) {
	for _, s := range []string{
		`<message from='bob@partner.example' to='alice@example.com' type='chat'><body>hi</body><thread>t</thread></message>`,
		`<message from='x\20y@wa.example.com' to='alice@example.com'><x xmlns='jabber:x:oob'><url>https://h/a/b.pdf</url></x></message>`,
		`<message from='b@p.example' to='a@example.com'><file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'><name>n</name><size>12</size><hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=</hash></file><sources><url-data xmlns='http://jabber.org/protocol/url-data' target='https://h/f'/></sources></file-sharing></message>`,
		`<iq from='b@p.example/r' to='a@example.com/l' type='set' id='1'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate'><content><description xmlns='urn:xmpp:jingle:apps:file-transfer:3'><offer><file><name>x</name><size>-5</size></file></offer></description></content></jingle></iq>`,
		`<presence from='b@p.example' to='a@example.com' type='subscribe'/>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		dec := xml.NewDecoder(strings.NewReader(raw))
		var st *stanza.Stanza
		for {
			tok, err := dec.Token()
			if err != nil {
				return
			}
			if se, ok := tok.(xml.StartElement); ok {
				if stanza.KindOf(se.Name.Local) == 0 {
					return
				}
				if st, err = stanza.Parse(dec, se); err != nil {
					return
				}
				break
			}
		}
		e := &router.Envelope{Stanza: st, Src: router.Endpoint{Zone: router.ZoneTransport, Domain: st.From.Domainpart()},
			Dst: router.Endpoint{Zone: router.ZoneLocal, Domain: "example.com"}}
		rec := FromEnvelope(e)
		if err := rec.check(); err != nil {
			t.Fatalf("record the schema refuses: %v\n%+v", err, rec)
		}
		for _, o := range fileOffers(st) {
			if o.size < -1 || (o.sha256 != "" && len(o.sha256) != 64) {
				t.Fatalf("bad offer %+v", o)
			}
		}
	})
}
