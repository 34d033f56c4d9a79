package stanza

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
)

// parseString parses one stanza from a client-stream fragment.
func parseString(t testing.TB, s string) (*Stanza, error) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(`<stream xmlns='jabber:client'>` + s))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local != "stream" {
			return Parse(d, se)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"message", `<message to='b@x' from='a@x/r' type='chat' id='1'><body>hi &amp; &lt;3</body></message>`,
			`<message to="b@x" from="a@x/r" id="1" type="chat"><body>hi &amp; &lt;3</body></message>`},
		{"foreign ns", `<message to='b@x'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
			`<message to="b@x"><active xmlns="http://jabber.org/protocol/chatstates"/></message>`},
		{"mixed content", `<message><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>a <b>b</b> c</p></body></html></message>`,
			`<message><html xmlns="http://jabber.org/protocol/xhtml-im"><body xmlns="http://www.w3.org/1999/xhtml"><p>a <b>b</b> c</p></body></html></message>`},
		{"prefixed attr", `<iq type='get' id='x' xmlns:foo='urn:foo'><q xmlns='urn:q' foo:a='v'/></iq>`,
			`<iq id="x" type="get"><q xmlns="urn:q" xmlns:ns1="urn:foo" ns1:a="v"/></iq>`},
		{"xml lang", `<presence xml:lang='de'><status xml:lang='en'>x</status></presence>`,
			`<presence xml:lang="de"><status xml:lang="en">x</status></presence>`},
		{"quotes", `<message><body>"it's"</body></message>`, `<message><body>"it's"</body></message>`},
		{"nested jabber:client", `<message><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>x</body></message></forwarded></message>`,
			`<message><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"><body>x</body></message></forwarded></message>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseString(t, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			// Re-parsing the output gives the same output (stable).
			s2, err := parseString(t, s.String())
			if err != nil {
				t.Fatal(err)
			}
			if s2.String() != tc.want {
				t.Fatalf("unstable: %s", s2)
			}
		})
	}
}

func TestServerNamespace(t *testing.T) {
	s, err := parseString(t, `<message to='b@x'><body>x</body></message>`)
	if err != nil {
		t.Fatal(err)
	}
	got := string(s.AppendXML(nil, NSServer))
	if got != `<message to="b@x"><body>x</body></message>` {
		t.Fatal(got)
	}
	// Embedded in a foreign element the content namespace is declared.
	e := NewElement("urn:xmpp:forward:0", "forwarded").Append(s.Element())
	if got := string(e.AppendXML(nil, NSServer, NSServer)); !strings.Contains(got, `<message xmlns="jabber:server" to="b@x">`) {
		t.Fatal(got)
	}
}

func TestMalformedJID(t *testing.T) {
	s, err := parseString(t, `<message to='a@b@c'><body>x</body></message>`)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Attr != "to" || s == nil || s.Body() != "x" {
		t.Fatalf("err=%v s=%v", err, s)
	}
}

func TestErrorReply(t *testing.T) {
	s, _ := parseString(t, `<iq to='srv' from='a@srv/r' type='get' id='7'><q xmlns='urn:unknown'/></iq>`)
	r := Bounce(s, ServiceUnavailable, "")
	want := `<iq to="a@srv/r" from="srv" id="7" type="error"><q xmlns="urn:unknown"/><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`
	if r.String() != want {
		t.Fatalf("got %s", r)
	}
	if r.ErrorCondition() != ServiceUnavailable {
		t.Fatal(r.ErrorCondition())
	}
	if Bounce(r, ServiceUnavailable, "") != nil {
		t.Fatal("an error must never be answered with an error")
	}
}

func TestEscapeInvalidChars(t *testing.T) {
	e := NewElement("", "body").AppendText("a\x00b\x1bc\uFFFEd")
	got := e.String()
	if got != "<body>a\uFFFDb\uFFFDc\uFFFDd</body>" {
		t.Fatalf("%q", got)
	}
}

func TestFromElement(t *testing.T) {
	s, _ := parseString(t, `<message to='b@x' from='a@x/r' type='chat' id='1' xml:lang='en' extra='1'><body>hi</body></message>`)
	back, err := FromElement(s.Element())
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != s.String() {
		t.Fatalf("%s != %s", back, s)
	}
}

// FuzzParse feeds arbitrary bytes as the inside of a client stream: parsing
// must not panic, and whatever parses must serialize to well-formed XML that
// parses to the same serialization.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`<message to='b@x' type='chat'><body>hi</body></message>`,
		`<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>`,
		`<presence><show>away</show><status xml:lang='en'>brb</status><priority>5</priority></presence>`,
		`<message xmlns:a='urn:a'><x a:b='c' xmlns='urn:x'><y/>text<z>t</z></x></message>`,
		`<message to='&amp;@x'/>`,
		`<iq><a><b><c><d/></c></b></a></iq>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := xml.NewDecoder(streamReader(data))
		var start xml.StartElement
		for {
			tok, err := d.Token()
			if err != nil {
				return
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local != "stream" {
				start = se
				break
			}
		}
		s, err := Parse(d, start)
		if err != nil {
			return
		}
		out := s.String()
		s2, err := parseString(t, out)
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out)
		}
		if s2.String() != out {
			t.Fatalf("unstable serialization:\n%s\n%s", out, s2)
		}
	})
}

func streamReader(data []byte) *bytes.Reader {
	return bytes.NewReader(append([]byte(`<stream xmlns='jabber:client'>`), data...))
}

func BenchmarkParseEncode(b *testing.B) {
	in := `<message to='bob@localhost/phone' from='alice@localhost/desk' type='chat' id='abc123'><body>Hello there, how are you doing today?</body><active xmlns='http://jabber.org/protocol/chatstates'/><origin-id xmlns='urn:xmpp:sid:0' id='9f8e7d'/></message>`
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		s, err := parseString(b, in)
		if err != nil {
			b.Fatal(err)
		}
		buf = s.AppendXML(buf[:0], NSClient)
	}
}
