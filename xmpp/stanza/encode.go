package stanza

import (
	"encoding/xml"
	"strconv"
	"unicode/utf8"
)

// AppendXML appends the serialization of e to buf. parentNS is the default
// namespace in scope where e is written; a different namespace is declared
// with xmlns. Elements whose Space is "" are in the stream's content
// namespace (jabber:client, jabber:server, ...), given as streamNS.
// Attributes in other namespaces get generated prefixes.
// It allocates nothing beyond growing buf.
func (e *Element) AppendXML(buf []byte, parentNS, streamNS string) []byte {
	ns := e.Name.Space
	if ns == "" {
		ns = streamNS
	}
	buf = append(buf, '<')
	buf = append(buf, e.Name.Local...)
	if ns != parentNS {
		buf = append(buf, ` xmlns="`...)
		buf = appendEscaped(buf, ns, true)
		buf = append(buf, '"')
	}
	buf = appendAttrs(buf, e.Attr)
	return appendContent(buf, e.Name.Local, ns, streamNS, e.Children)
}

func appendAttrs(buf []byte, attrs []xml.Attr) []byte {
	prefixN := 0
	for _, a := range attrs {
		switch a.Name.Space {
		case "":
			if a.Name.Local == "xmlns" {
				continue
			}
			buf = append(buf, ' ')
			buf = append(buf, a.Name.Local...)
		case NSXML, "xml":
			buf = append(buf, " xml:"...)
			buf = append(buf, a.Name.Local...)
		case "xmlns":
			// Namespace declarations are re-derived from element names.
			continue
		default:
			if a.Name.Local == "xmlns" {
				continue
			}
			prefixN++
			p := "ns" + strconv.Itoa(prefixN)
			buf = append(buf, " xmlns:"...)
			buf = append(buf, p...)
			buf = append(buf, `="`...)
			buf = appendEscaped(buf, a.Name.Space, true)
			buf = append(buf, `" `...)
			buf = append(buf, p...)
			buf = append(buf, ':')
			buf = append(buf, a.Name.Local...)
		}
		buf = append(buf, `="`...)
		buf = appendEscaped(buf, a.Value, true)
		buf = append(buf, '"')
	}
	return buf
}

func appendContent(buf []byte, local, ns, streamNS string, children []Node) []byte {
	if len(children) == 0 {
		return append(buf, "/>"...)
	}
	buf = append(buf, '>')
	for _, c := range children {
		if c.El != nil {
			buf = c.El.AppendXML(buf, ns, streamNS)
		} else {
			buf = appendEscaped(buf, c.Text, false)
		}
	}
	buf = append(buf, "</"...)
	buf = append(buf, local...)
	return append(buf, '>')
}

// appendEscaped escapes s for character data or (attr) a quoted attribute
// value. Characters not allowed in XML 1.0 are replaced with U+FFFD so the
// output is always well-formed.
func appendEscaped(buf []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '<' && c != '>' && c != '&' && c != '"' && c != '\'' {
			i++
			continue
		}
		var esc string
		width := 1
		switch c {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '"':
			if !attr {
				i++
				continue
			}
			esc = "&quot;"
		case '\'':
			if !attr {
				i++
				continue
			}
			esc = "&apos;"
		case '\t', '\n', '\r':
			if !attr {
				i++
				continue
			}
			esc = "&#x" + strconv.FormatUint(uint64(c), 16) + ";"
		default:
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if r != utf8.RuneError && isXMLChar(r) || r == utf8.RuneError && w == 3 {
				i += w
				continue
			}
			esc = "\uFFFD"
		}
		buf = append(buf, s[last:i]...)
		buf = append(buf, esc...)
		i += width
		last = i
	}
	return append(buf, s[last:]...)
}

func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
