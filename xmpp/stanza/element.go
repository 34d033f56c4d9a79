// Package stanza holds the parsed form of XMPP stanzas and generic XML
// elements: a small tree that keeps mixed content, plus the fast serializer
// used on the hot path. It must not import any other gatehouse package.
package stanza

import (
	"encoding/xml"
	"strings"
)

// XML namespaces used across the server.
const (
	NSClient    = "jabber:client"
	NSServer    = "jabber:server"
	NSComponent = "jabber:component:accept"
	NSStream    = "http://etherx.jabber.org/streams"
	NSStanzaErr = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreamErr = "urn:ietf:params:xml:ns:xmpp-streams"
	NSXML       = "http://www.w3.org/XML/1998/namespace"
	NSDelay     = "urn:xmpp:delay"
)

// Node is one child of an element: either an element or character data.
// It is a value type so a child list costs one allocation, not one per child.
type Node struct {
	El   *Element
	Text string
}

// Element is a generic XML element. Name.Space is the element's namespace
// (never a prefix); attributes in the xml: namespace use Space NSXML.
type Element struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []Node
}

// NewElement returns an element in namespace space with the given
// attributes given as name/value pairs.
func NewElement(space, local string, attrs ...string) *Element {
	e := &Element{Name: xml.Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
	}
	return e
}

// AttrValue returns the value of the un-namespaced attribute local.
func (e *Element) AttrValue(local string) string {
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// SetAttr sets (or adds) the un-namespaced attribute local; an empty value
// removes it.
func (e *Element) SetAttr(local, value string) {
	e.Attr = setAttr(e.Attr, local, value)
}

func setAttr(attrs []xml.Attr, local, value string) []xml.Attr {
	for i, a := range attrs {
		if a.Name.Local == local && a.Name.Space == "" {
			if value == "" {
				return append(attrs[:i], attrs[i+1:]...)
			}
			attrs[i].Value = value
			return attrs
		}
	}
	if value == "" {
		return attrs
	}
	return append(attrs, xml.Attr{Name: xml.Name{Local: local}, Value: value})
}

// Child returns the first child element with the given namespace and local
// name; an empty space matches any namespace.
func (e *Element) Child(space, local string) *Element {
	return childOf(e.Children, space, local)
}

func childOf(children []Node, space, local string) *Element {
	for _, c := range children {
		if c.El != nil && c.El.Name.Local == local && (space == "" || c.El.Name.Space == space) {
			return c.El
		}
	}
	return nil
}

// Elements returns the child elements (no character data).
func (e *Element) Elements() []*Element {
	return elementsOf(e.Children)
}

func elementsOf(children []Node) []*Element {
	var out []*Element
	for _, c := range children {
		if c.El != nil {
			out = append(out, c.El)
		}
	}
	return out
}

// Text returns the concatenated character data directly inside e.
func (e *Element) Text() string {
	return textOf(e.Children)
}

func textOf(children []Node) string {
	if len(children) == 1 && children[0].El == nil {
		return children[0].Text
	}
	var b strings.Builder
	for _, c := range children {
		if c.El == nil {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// ChildText returns the text of the first child space/local, or "".
func (e *Element) ChildText(space, local string) string {
	if c := e.Child(space, local); c != nil {
		return c.Text()
	}
	return ""
}

// Append adds child elements and returns e for chaining.
func (e *Element) Append(children ...*Element) *Element {
	for _, c := range children {
		e.Children = append(e.Children, Node{El: c})
	}
	return e
}

// AppendText adds character data and returns e for chaining.
func (e *Element) AppendText(s string) *Element {
	if s != "" {
		e.Children = append(e.Children, Node{Text: s})
	}
	return e
}

// RemoveChildren drops every child element with the given namespace (and
// local name, unless local is empty).
func (e *Element) RemoveChildren(space, local string) {
	e.Children = removeChildren(e.Children, space, local)
}

func removeChildren(children []Node, space, local string) []Node {
	out := children[:0]
	for _, c := range children {
		if c.El != nil && c.El.Name.Space == space && (local == "" || c.El.Name.Local == local) {
			continue
		}
		out = append(out, c)
	}
	for i := len(out); i < len(children); i++ {
		children[i] = Node{}
	}
	return out
}

// Copy returns a deep copy of e.
func (e *Element) Copy() *Element {
	if e == nil {
		return nil
	}
	c := &Element{Name: e.Name}
	if len(e.Attr) > 0 {
		c.Attr = append([]xml.Attr(nil), e.Attr...)
	}
	c.Children = copyNodes(e.Children)
	return c
}

func copyNodes(nodes []Node) []Node {
	if len(nodes) == 0 {
		return nil
	}
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		if n.El != nil {
			out[i] = Node{El: n.El.Copy()}
		} else {
			out[i] = n
		}
	}
	return out
}

// String serializes e as it would appear on a client stream.
func (e *Element) String() string {
	return string(e.AppendXML(nil, NSClient, NSClient))
}
