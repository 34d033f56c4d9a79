package policy

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"

	"mellium.im/xmpp/jid"
)

// FuzzParse: any input either compiles or fails with a *Error wrapping
// ErrSyntax or ErrInvalid; a compiled policy evaluates a message without
// panicking. Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: v1\n"))
	f.Add([]byte("version: v1\nlexicons:\n  px: {terms: [Project X]}\ncontent:\n  - {id: c, lexicons: [px], action: deny}\n"))
	f.Add([]byte("version: v1\nlexicons:\n  px: {terms: [Project X]}\ncontent:\n  - {id: h, direction: outbound, lexicons: [px], action: hold}\n"))
	f.Add([]byte("version: v1\nbarriers:\n  - {id: b, between: [research, trading]}\n"))
	f.Add([]byte("version: v1\naccess:\n  - {id: a, cel: \"'sales' in groups && size(body) > 4\", action: deny}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml", Options{Hosts: []string{"localhost"}, Scanner: true})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || !(errors.Is(err, ErrSyntax) || errors.Is(err, ErrInvalid)) {
				t.Fatalf("error %v (%T) is not a policy error", err, err)
			}
			return
		}
		st := &stanza.Stanza{Kind: stanza.KindMessage, Type: "chat",
			From: jid.MustParse("alice@localhost/d"), To: jid.MustParse("bob@remote.example")}
		st.Append(stanza.NewElement("", "body").AppendText("Project X 4111 1111 1111 1111 hello"))
		e := p.Explain(Sample{Dir: Outbound, Zone: router.ZoneRemote, Stanza: st, LocalAccount: true,
			Groups: p.Groups(), Now: time.Unix(1_800_000_000, 0)})
		if e.Decision.PolicyVersion != p.Version() || e.Decision.Rule == "" {
			t.Fatalf("decision %+v", e.Decision)
		}
	})
}

// FuzzLexicon checks the automaton against a naive search, and the
// redaction mapping against the text. Seeds: testdata/fuzz/FuzzLexicon.
func FuzzLexicon(f *testing.F) {
	f.Add("Project X\nsecret", "about the PROJECT  X launch", false)
	f.Add("he\nshe\nhers", "ushers", true)
	f.Add("Рrојесt", "project", false)
	f.Fuzz(func(t *testing.T, termList, text string, substring bool) {
		// Stanza text is always UTF-8 (the XML decoder checks it).
		if len(termList) > 2000 || len(text) > 4000 || !utf8.ValidString(text) || !utf8.ValidString(termList) {
			return
		}
		match := "word"
		if substring {
			match = "substring"
		}
		var n normalizer
		var terms []term
		for _, w := range strings.Split(termList, "\n") {
			ts, err := compileTerms(len(terms)%maxSets, Lexicon{Match: match, Terms: []string{w}}, &n)
			if err != nil {
				continue // empty after normalisation
			}
			terms = append(terms, ts...)
		}
		a, err := buildAutomaton(terms)
		if err != nil {
			return
		}
		norm := append([]byte(nil), n.normalize(text)...)
		if !utf8.Valid(norm) {
			t.Fatalf("normalize(%q) = %q is not UTF-8", text, norm)
		}
		var got bitset
		a.scan(norm, &got)
		if want := naiveScan(terms, norm); got != want {
			t.Fatalf("terms %q text %q (normalised %q): automaton %v, naive %v", termList, text, norm, got, want)
		}
		// The positions used for redaction stay inside the text and on
		// code point boundaries.
		mapped := n.normalizeMap(text)
		if len(n.pos) != len(mapped) {
			t.Fatalf("%d positions for %d bytes", len(n.pos), len(mapped))
		}
		all := bitset{}
		for i := range maxSets {
			all.set(i)
		}
		p := &Policy{auto: a}
		for _, sp := range p.spans(text, &all, nil, &scratch{}) {
			if sp.start < 0 || sp.end > len(text) || sp.start >= sp.end || !utf8.RuneStart(text[sp.start]) ||
				sp.end < len(text) && !utf8.RuneStart(text[sp.end]) {
				t.Fatalf("bad span %+v in %q", sp, text)
			}
		}
		masked := maskSpans(text, p.spans(text, &all, nil, &scratch{}))
		if utf8.RuneCountInString(masked) != utf8.RuneCountInString(text) {
			t.Fatalf("masking changed the length: %q -> %q", text, masked)
		}
	})
}

// FuzzOffers: file offers are read from outside stanzas (OOB, SFS, BoB,
// IBB, Jingle, SI, data: URIs). Any stanza the XML layer accepts yields
// offers without panicking, with sizes that are -1 or non-negative, and
// the whole Gate path decides it. Seeds: testdata/fuzz/FuzzOffers.
func FuzzOffers(f *testing.F) {
	for _, s := range []string{
		`<message to='b@remote.example' type='chat'><body>x</body><x xmlns='jabber:x:oob'><url>https://h/a/f.exe</url></x></message>`,
		`<message to='b@remote.example'><body>data:text/plain;base64,aGVsbG8=</body></message>`,
		`<iq to='b@remote.example/r' type='set' id='1'><data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='0'>aGVsbG8=</data></iq>`,
		`<iq to='b@remote.example/r' type='set' id='2'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'><content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>a.pdf</name><size>12</size><media-type>application/pdf</media-type></file></description></content></jingle></iq>`,
		`<iq to='b@remote.example/r' type='set' id='3'><si xmlns='http://jabber.org/protocol/si' id='s' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='a.exe' size='-5'/></si></iq>`,
		`<message to='b@remote.example'><file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'><name>x.bin</name><size>99999999999999999999</size></file><sources><url-data xmlns='http://jabber.org/protocol/url-data' target='data:,abc'/></sources></file-sharing></message>`,
		`<message to='b@remote.example'><data xmlns='urn:xmpp:bob' cid='sha1+x@bob.xmpp.org' type='image/png'>!!notbase64</data></message>`,
	} {
		f.Add(s)
	}
	p, err := Parse([]byte("version: v1\nfiles:\n  - {id: big, max_size: 10, action: deny}\n  - {id: t, types: [.pdf, image/*], action: flag}\n"),
		"fuzz.yaml", Options{Hosts: []string{"localhost"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		d := xml.NewDecoder(strings.NewReader(doc))
		tok, err := d.Token()
		for err == nil {
			if _, ok := tok.(xml.StartElement); ok {
				break
			}
			tok, err = d.Token()
		}
		if err != nil {
			return
		}
		st, err := stanza.Parse(d, tok.(xml.StartElement))
		if err != nil {
			return
		}
		st.From = jid.MustParse("alice@localhost/d")
		for _, o := range appendOffers(nil, st) {
			if o.Size < -1 {
				t.Fatalf("offer %+v has size %d", o, o.Size)
			}
		}
		e := p.Explain(Sample{Dir: Outbound, Zone: router.ZoneRemote, Stanza: st, LocalAccount: true, Now: time.Unix(1_800_000_000, 0)})
		if e.Decision.PolicyVersion != p.Version() {
			t.Fatalf("decision %+v", e.Decision)
		}
	})
}
