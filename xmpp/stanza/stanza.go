package stanza

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"
)

// Kind is the top-level stanza kind.
type Kind uint8

// Stanza kinds.
const (
	KindMessage Kind = iota + 1
	KindPresence
	KindIQ
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindPresence:
		return "presence"
	case KindIQ:
		return "iq"
	}
	return "unknown"
}

// KindOf maps a top-level element name to a Kind (0 when not a stanza).
func KindOf(local string) Kind {
	switch local {
	case "message":
		return KindMessage
	case "presence":
		return KindPresence
	case "iq":
		return KindIQ
	}
	return 0
}

// Stanza is a parsed message, presence or iq. Children in the stream's
// content namespace have Name.Space "" so the same stanza can be written to
// a client, server or component stream.
type Stanza struct {
	Kind Kind
	To   jid.JID
	From jid.JID
	ID   string
	Type string
	Lang string
	// Attr holds the attributes other than to, from, id, type and xml:lang.
	Attr     []xml.Attr
	Children []Node
}

// Errors returned by Parse. A *ParseError carries the stanza so the caller
// can bounce it.
var (
	ErrNotStanza = errors.New("stanza: not a stanza element")
)

// ParseError reports a stanza whose addressing could not be parsed.
type ParseError struct {
	Stanza *Stanza
	Attr   string
	Err    error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("stanza: malformed %s: %v", e.Attr, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// IsContentNS reports whether ns is a stream content namespace.
func IsContentNS(ns string) bool {
	return ns == NSClient || ns == NSServer || ns == NSComponent || ns == ""
}

// Parse reads the rest of the element opened by start from d and returns it
// as a stanza. On a malformed to/from it still consumes the element and
// returns a *ParseError holding the stanza (with To/From swapped in only if
// they parsed).
func Parse(d xml.TokenReader, start xml.StartElement) (*Stanza, error) {
	k := KindOf(start.Name.Local)
	if k == 0 || !IsContentNS(start.Name.Space) {
		if _, err := ReadElement(d, start); err != nil {
			return nil, err
		}
		return nil, ErrNotStanza
	}
	s := &Stanza{Kind: k}
	var perr *ParseError
	for _, a := range start.Attr {
		if a.Name.Space == "" {
			switch a.Name.Local {
			case "to":
				j, err := jid.Parse(a.Value)
				if err != nil {
					perr = &ParseError{Attr: "to", Err: err}
				} else {
					s.To = j
				}
				continue
			case "from":
				j, err := jid.Parse(a.Value)
				if err != nil {
					perr = &ParseError{Attr: "from", Err: err}
				} else {
					s.From = j
				}
				continue
			case "id":
				s.ID = a.Value
				continue
			case "type":
				s.Type = a.Value
				continue
			case "xmlns":
				continue
			}
		}
		if a.Name.Space == "xmlns" {
			continue
		}
		if a.Name.Local == "lang" && (a.Name.Space == NSXML || a.Name.Space == "xml") {
			s.Lang = a.Value
			continue
		}
		s.Attr = append(s.Attr, a)
	}
	children, err := readChildren(d, 1)
	if err != nil {
		return nil, err
	}
	s.Children = children
	if perr != nil {
		perr.Stanza = s
		return s, perr
	}
	return s, nil
}

// ReadElement reads the rest of the element opened by start.
func ReadElement(d xml.TokenReader, start xml.StartElement) (*Element, error) {
	e := &Element{Name: start.Name, Attr: cleanAttrs(start.Attr)}
	if IsContentNS(e.Name.Space) {
		e.Name.Space = ""
	}
	children, err := readChildren(d, 1)
	if err != nil {
		return nil, err
	}
	e.Children = children
	return e, nil
}

func cleanAttrs(attrs []xml.Attr) []xml.Attr {
	out := attrs[:0]
	for _, a := range attrs {
		if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// readChildren reads nodes until the end element that closes the current one.
func readChildren(d xml.TokenReader, depth int) ([]Node, error) {
	var nodes []Node
	for {
		tok, err := d.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			e := &Element{Name: t.Name, Attr: cleanAttrs(t.Attr)}
			if IsContentNS(e.Name.Space) {
				e.Name.Space = ""
			}
			e.Children, err = readChildren(d, depth+1)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, Node{El: e})
		case xml.CharData:
			if n := len(nodes); n > 0 && nodes[n-1].El == nil {
				nodes[n-1].Text += string(t)
			} else {
				nodes = append(nodes, Node{Text: string(t)})
			}
		case xml.EndElement:
			return nodes, nil
		}
	}
}

// AppendXML appends the stanza to buf as it is written on a stream whose
// content namespace is streamNS (the stanza itself carries no xmlns).
func (s *Stanza) AppendXML(buf []byte, streamNS string) []byte {
	local := s.Kind.String()
	buf = append(buf, '<')
	buf = append(buf, local...)
	if !s.To.Equal(jid.JID{}) {
		buf = append(buf, ` to="`...)
		buf = appendEscaped(buf, s.To.String(), true)
		buf = append(buf, '"')
	}
	if !s.From.Equal(jid.JID{}) {
		buf = append(buf, ` from="`...)
		buf = appendEscaped(buf, s.From.String(), true)
		buf = append(buf, '"')
	}
	if s.ID != "" {
		buf = append(buf, ` id="`...)
		buf = appendEscaped(buf, s.ID, true)
		buf = append(buf, '"')
	}
	if s.Type != "" {
		buf = append(buf, ` type="`...)
		buf = appendEscaped(buf, s.Type, true)
		buf = append(buf, '"')
	}
	if s.Lang != "" {
		buf = append(buf, ` xml:lang="`...)
		buf = appendEscaped(buf, s.Lang, true)
		buf = append(buf, '"')
	}
	buf = appendAttrs(buf, s.Attr)
	return appendContent(buf, local, streamNS, streamNS, s.Children)
}

// String serializes the stanza as on a client stream (for logs and tests).
func (s *Stanza) String() string {
	return string(s.AppendXML(nil, NSClient))
}

// Element returns the stanza as a generic element in the stream content
// namespace (used to embed it, e.g. in a carbon or offline store).
func (s *Stanza) Element() *Element {
	e := &Element{Name: xml.Name{Local: s.Kind.String()}}
	set := func(k, v string) {
		if v != "" {
			e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: k}, Value: v})
		}
	}
	if !s.To.Equal(jid.JID{}) {
		set("to", s.To.String())
	}
	if !s.From.Equal(jid.JID{}) {
		set("from", s.From.String())
	}
	set("id", s.ID)
	set("type", s.Type)
	if s.Lang != "" {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Space: NSXML, Local: "lang"}, Value: s.Lang})
	}
	e.Attr = append(e.Attr, s.Attr...)
	e.Children = s.Children
	return e
}

// FromElement turns a generic element back into a stanza.
func FromElement(e *Element) (*Stanza, error) {
	start := xml.StartElement{Name: e.Name, Attr: append([]xml.Attr(nil), e.Attr...)}
	s, err := Parse(&nodeReader{nodes: e.Children}, start)
	return s, err
}

// nodeReader replays a node list as tokens followed by one end element.
type nodeReader struct {
	stack []nodeFrame
	nodes []Node
	init  bool
	done  bool
}

type nodeFrame struct {
	nodes []Node
	i     int
	name  xml.Name
}

func (r *nodeReader) Token() (xml.Token, error) {
	if !r.init {
		r.init = true
		r.stack = append(r.stack, nodeFrame{nodes: r.nodes})
	}
	for len(r.stack) > 0 {
		top := &r.stack[len(r.stack)-1]
		if top.i >= len(top.nodes) {
			name := top.name
			r.stack = r.stack[:len(r.stack)-1]
			return xml.EndElement{Name: name}, nil
		}
		n := top.nodes[top.i]
		top.i++
		if n.El == nil {
			return xml.CharData(n.Text), nil
		}
		r.stack = append(r.stack, nodeFrame{nodes: n.El.Children, name: n.El.Name})
		return xml.StartElement{Name: n.El.Name, Attr: n.El.Attr}, nil
	}
	return nil, io.EOF
}

// Child returns the first child element space/local ("" space: any).
func (s *Stanza) Child(space, local string) *Element { return childOf(s.Children, space, local) }

// Elements returns the child elements.
func (s *Stanza) Elements() []*Element { return elementsOf(s.Children) }

// Payload returns the first child element (the iq payload).
func (s *Stanza) Payload() *Element {
	for _, c := range s.Children {
		if c.El != nil {
			return c.El
		}
	}
	return nil
}

// Body returns the text of the message body, or "".
func (s *Stanza) Body() string {
	if b := s.Child("", "body"); b != nil {
		return b.Text()
	}
	return ""
}

// Append adds child elements.
func (s *Stanza) Append(children ...*Element) *Stanza {
	for _, c := range children {
		s.Children = append(s.Children, Node{El: c})
	}
	return s
}

// RemoveChildren drops children with the given namespace (and local name
// unless empty).
func (s *Stanza) RemoveChildren(space, local string) {
	s.Children = removeChildren(s.Children, space, local)
}

// Copy returns a deep copy.
func (s *Stanza) Copy() *Stanza {
	c := *s
	if len(s.Attr) > 0 {
		c.Attr = append([]xml.Attr(nil), s.Attr...)
	}
	c.Children = copyNodes(s.Children)
	return &c
}

// ShallowCopy copies the header and the child list but shares child
// elements; use it when only addressing or top-level children change.
func (s *Stanza) ShallowCopy() *Stanza {
	c := *s
	c.Children = append([]Node(nil), s.Children...)
	return &c
}

// Attribute returns the value of an extra attribute.
func (s *Stanza) Attribute(local string) string {
	for _, a := range s.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// SetAttribute sets an extra attribute (empty removes it).
func (s *Stanza) SetAttribute(local, value string) { s.Attr = setAttr(s.Attr, local, value) }

// IsError reports type="error".
func (s *Stanza) IsError() bool { return s.Type == "error" }

// IsRequest reports an iq of type get or set.
func (s *Stanza) IsRequest() bool { return s.Kind == KindIQ && (s.Type == "get" || s.Type == "set") }

// Result builds the iq result for request s with optional payload.
func (s *Stanza) Result(payload ...*Element) *Stanza {
	r := &Stanza{Kind: KindIQ, Type: "result", ID: s.ID, To: s.From, From: s.To}
	return r.Append(payload...)
}

// Priority returns a presence stanza's <priority/> (RFC 6121 §4.7.2.3),
// clamped to -128..127; missing or malformed means 0.
func Priority(s *Stanza) int {
	p := s.Child("", "priority")
	if p == nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(p.Text()))
	if err != nil {
		return 0
	}
	return min(max(n, -128), 127)
}
