package websocket

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestInbound(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"open", `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0' xml:lang='en'/>`,
			`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>`},
		{"open with declaration", "<?xml version='1.0'?>\n<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" to=\"a&amp;b\"/>",
			`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a&amp;b'>`},
		{"close", `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`, `</stream:stream>`},
		{"stanza passes", `<message xmlns='jabber:client' to='a@b'><body>open</body></message>`,
			`<message xmlns='jabber:client' to='a@b'><body>open</body></message>`},
		{"open in another namespace passes", `<open xmlns='urn:example'/>`, `<open xmlns='urn:example'/>`},
		{"garbage passes to the stream parser", `<<<`, `<<<`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(inbound([]byte(tc.in))); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestSplitter(t *testing.T) {
	stream := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' version='1.0' xml:lang='en'>` +
		`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>` +
		` ` + // whitespace keepalive
		`<message to='a@b' id='x&gt;'><body>a &lt;b&gt; c</body><x xmlns='urn:x' a='&apos;/&gt;'/></message>` +
		`<r xmlns='urn:xmpp:sm:3'/>` +
		`<presence xmlns="jabber:client"/>` +
		`<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`
	want := []string{
		`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='abc' from='localhost' version='1.0' xml:lang='en'/>`,
		`<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>`,
		`<message xmlns='jabber:client' to='a@b' id='x&gt;'><body>a &lt;b&gt; c</body><x xmlns='urn:x' a='&apos;/&gt;'/></message>`,
		`<r xmlns='urn:xmpp:sm:3'/>`,
		`<presence xmlns="jabber:client"/>`,
		`<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`,
		`<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`,
	}
	// Every way of cutting the stream into two writes gives the same
	// messages: an element split across writes waits for its end.
	for cut := 0; cut <= len(stream); cut++ {
		var s splitter
		var got []string
		for _, part := range []string{stream[:cut], stream[cut:]} {
			msgs, err := s.feed([]byte(part))
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			for _, m := range msgs {
				got = append(got, string(m))
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("cut %d:\ngot  %q\nwant %q", cut, got, want)
		}
	}
	for _, m := range want {
		checkStandalone(t, []byte(m))
	}
}

// checkStandalone parses m as a document of its own with every prefix bound.
func checkStandalone(t testing.TB, m []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(m))
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return
			}
			t.Fatalf("message %s is not a document: %v", m, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Space == "" {
			t.Fatalf("message %s: element %s has no namespace", m, se.Name.Local)
		}
	}
}

func TestSplitterRejectsStrayEndTag(t *testing.T) {
	var s splitter
	if _, err := s.feed([]byte(`</message>`)); err == nil {
		t.Fatal("a stray end tag at the top level was accepted")
	}
}

// FuzzInbound: whatever a client sends, the translation never panics and
// an <open/> always becomes one well-formed stream header.
func FuzzInbound(f *testing.F) {
	f.Add([]byte(`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>`))
	f.Add([]byte(`<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`))
	f.Add([]byte(`<message xmlns='jabber:client'><body>x</body></message>`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := inbound(in)
		if bytes.HasPrefix(out, []byte("<stream:stream ")) && !bytes.HasPrefix(bytes.TrimSpace(in), []byte("<stream:stream")) {
			d := xml.NewDecoder(bytes.NewReader(append(out, "</stream:stream>"...)))
			for {
				if _, err := d.Token(); err != nil {
					if err.Error() != "EOF" {
						t.Fatalf("header from %q is not well-formed: %v\n%s", in, err, out)
					}
					break
				}
			}
		}
	})
}

// FuzzSplitter: the splitter never panics, and on a stream of serialized
// elements every message it yields stands alone.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte(`<message to='a'><body>x</body></message>`), 5)
	f.Add([]byte(`<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>`), 20)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		var s splitter
		if cut < 0 || cut > len(in) {
			cut = len(in) / 2
		}
		_, _ = s.feed(in[:cut])
		_, _ = s.feed(in[cut:])
	})
}
