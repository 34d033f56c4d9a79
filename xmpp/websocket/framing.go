package websocket

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
)

// Namespaces of RFC 7395 framing and of the TCP stream it replaces.
const (
	NSFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	nsStream  = "http://etherx.jabber.org/streams"
	nsClient  = "jabber:client"
)

var errFraming = errors.New("websocket: not a complete XML element")

// inbound translates one WebSocket message from the client (a complete
// element, RFC 7395 §3.3.3) into the bytes of a TCP stream: <open/> becomes
// a stream header, <close/> the closing tag, anything else passes as it is
// (the stream's own parser checks it). A leading XML declaration is
// dropped: each message may be a document, the stream has one prolog.
func inbound(msg []byte) []byte {
	msg = bytes.TrimLeft(msg, " \t\r\n")
	if bytes.HasPrefix(msg, []byte("<?xml")) {
		if i := bytes.Index(msg, []byte("?>")); i >= 0 {
			msg = bytes.TrimLeft(msg[i+2:], " \t\r\n")
		}
	}
	d := xml.NewDecoder(bytes.NewReader(msg))
	tok, err := d.RawToken()
	if err != nil {
		return msg
	}
	start, ok := tok.(xml.StartElement)
	if !ok || (start.Name.Local != "open" && start.Name.Local != "close") {
		return msg
	}
	// RawToken leaves prefixes unresolved: find the default namespace.
	ns := ""
	for _, a := range start.Attr {
		if a.Name.Space == "" && a.Name.Local == "xmlns" {
			ns = a.Value
		}
	}
	if start.Name.Space != "" || ns != NSFraming {
		return msg
	}
	if start.Name.Local == "close" {
		return []byte("</stream:stream>")
	}
	var b strings.Builder
	b.WriteString(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'`)
	for _, a := range start.Attr {
		switch {
		case a.Name.Space == "" && (a.Name.Local == "to" || a.Name.Local == "from" || a.Name.Local == "version" || a.Name.Local == "id"):
			b.WriteString(" " + a.Name.Local + "='")
		case a.Name.Space == "xml" && a.Name.Local == "lang":
			b.WriteString(" xml:lang='")
		default:
			continue
		}
		escapeAttr(&b, a.Value)
		b.WriteString("'")
	}
	b.WriteString(">")
	return []byte(b.String())
}

func escapeAttr(b *strings.Builder, v string) {
	for _, r := range v {
		switch r {
		case '\'':
			b.WriteString("&apos;")
		case '"':
			b.WriteString("&quot;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(r)
		}
	}
}

// splitter cuts the server's outbound TCP-style stream into RFC 7395
// messages: one per top-level element, each namespace-complete. It works
// on bytes the server itself serialized (well-formed, '<' always escaped
// in text and attribute values), so a small scanner suffices; an
// element split across writes waits for the rest.
type splitter struct {
	pending []byte
}

// feed adds written bytes and returns the complete messages they finish.
func (s *splitter) feed(p []byte) ([][]byte, error) {
	s.pending = append(s.pending, p...)
	var out [][]byte
	i := 0
	for {
		// Between top-level elements: whitespace keepalives are dropped
		// (RFC 7395 §3.4 uses WebSocket pings instead).
		for i < len(s.pending) && s.pending[i] != '<' {
			i++
		}
		if i >= len(s.pending) {
			s.pending = s.pending[:0]
			return out, nil
		}
		end, msg, err := s.element(s.pending[i:])
		if err != nil {
			return out, err
		}
		if end == 0 {
			break // incomplete: wait for more
		}
		if msg != nil {
			out = append(out, msg)
		}
		i += end
	}
	s.pending = append(s.pending[:0], s.pending[i:]...)
	return out, nil
}

// element scans the top-level construct at the start of b (which begins
// with '<'). It returns its length (0 if incomplete) and its translation
// (nil for what is dropped).
func (s *splitter) element(b []byte) (int, []byte, error) {
	switch {
	case bytes.HasPrefix(b, []byte("<?")):
		i := bytes.Index(b, []byte("?>"))
		if i < 0 {
			return 0, nil, nil
		}
		return i + 2, nil, nil
	case bytes.HasPrefix(b, []byte("</")):
		i := bytes.IndexByte(b, '>')
		if i < 0 {
			return 0, nil, nil
		}
		if strings.TrimSpace(string(b[2:i])) != "stream:stream" {
			return 0, nil, errFraming
		}
		return i + 1, []byte(`<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`), nil
	}
	tagEnd, selfClosing, ok := tagLen(b)
	if !ok {
		return 0, nil, nil
	}
	name := tagName(b[1:tagEnd])
	if name == "stream:stream" {
		return tagEnd + 1, openFrom(b[:tagEnd+1]), nil
	}
	end := tagEnd + 1
	if !selfClosing {
		depth := 1
		for depth > 0 {
			j := bytes.IndexByte(b[end:], '<')
			if j < 0 {
				return 0, nil, nil
			}
			end += j
			rest := b[end:]
			switch {
			case bytes.HasPrefix(rest, []byte("</")):
				k := bytes.IndexByte(rest, '>')
				if k < 0 {
					return 0, nil, nil
				}
				depth--
				end += k + 1
			default:
				n, sc, ok := tagLen(rest)
				if !ok {
					return 0, nil, nil
				}
				if !sc {
					depth++
				}
				end += n + 1
			}
		}
	}
	return end, qualify(b[:end], name, tagEnd), nil
}

// tagLen returns the index of the '>' ending the start tag at b[0], and
// whether the tag closes itself; quotes are honoured.
func tagLen(b []byte) (int, bool, bool) {
	var quote byte
	for i := 1; i < len(b); i++ {
		c := b[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '>':
			return i, b[i-1] == '/', true
		}
	}
	return 0, false, false
}

func tagName(tag []byte) string {
	end := bytes.IndexAny(tag, " \t\r\n/>")
	if end < 0 {
		end = len(tag)
	}
	return string(tag[:end])
}

// qualify makes a top-level element stand alone: stream-prefixed ones
// (features, errors) declare the prefix, stanzas written in the stream's
// default namespace declare jabber:client.
func qualify(el []byte, name string, tagEnd int) []byte {
	tag := el[:tagEnd]
	var decl string
	switch {
	case strings.HasPrefix(name, "stream:"):
		if !bytes.Contains(tag, []byte("xmlns:stream=")) {
			decl = ` xmlns:stream='` + nsStream + `'`
		}
	case !strings.Contains(name, ":"):
		if !hasDefaultNS(tag) {
			decl = ` xmlns='` + nsClient + `'`
		}
	}
	if decl == "" {
		return append([]byte(nil), el...)
	}
	at := 1 + len(name)
	out := make([]byte, 0, len(el)+len(decl))
	out = append(out, el[:at]...)
	out = append(out, decl...)
	return append(out, el[at:]...)
}

func hasDefaultNS(tag []byte) bool {
	for _, q := range []string{` xmlns="`, ` xmlns='`, "\txmlns=", "\nxmlns="} {
		if bytes.Contains(tag, []byte(q)) {
			return true
		}
	}
	return false
}

// openFrom turns the server's stream header into <open/> (RFC 7395 §3.3.2).
func openFrom(tag []byte) []byte {
	d := xml.NewDecoder(bytes.NewReader(append(append([]byte(nil), tag...), "</stream:stream>"...)))
	var attrs []xml.Attr
	if tok, err := d.RawToken(); err == nil {
		if st, ok := tok.(xml.StartElement); ok {
			attrs = st.Attr
		}
	}
	var b strings.Builder
	b.WriteString(`<open xmlns='` + NSFraming + `'`)
	for _, a := range attrs {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		b.WriteString(" ")
		if a.Name.Space != "" {
			b.WriteString(a.Name.Space + ":")
		}
		b.WriteString(a.Name.Local + "='")
		escapeAttr(&b, a.Value)
		b.WriteString("'")
	}
	b.WriteString("/>")
	return []byte(b.String())
}
