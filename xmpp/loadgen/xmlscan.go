package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The load generator does not build a DOM for what servers send: it splits
// the stream into top-level elements by scanning bytes (tags, quotes,
// comments, CDATA) and reads the few attributes and texts it needs straight
// from the raw element. That keeps its own CPU per stanza at a fraction of
// a server's, so it does not become the bottleneck it is measuring.

// ErrStreamClosed is returned when the server closed the XML stream.
var ErrStreamClosed = errors.New("loadgen: stream closed by server")

// errIncomplete means more bytes are needed.
var errIncomplete = errors.New("loadgen: incomplete element")

// maxElement bounds one element read from a server.
const maxElement = 1 << 20

// Reader splits an XMPP stream into top-level elements.
type Reader struct {
	r   io.Reader
	buf []byte
	pos int // start of unread data
	end int // end of data
}

// NewReader reads from r with a 32 KiB buffer that grows up to 1 MiB.
func NewReader(r io.Reader) *Reader { return &Reader{r: r, buf: make([]byte, 32<<10)} }

// Reset discards buffered data and reads from r next (stream restarts).
func (r *Reader) Reset(src io.Reader) { r.r, r.pos, r.end = src, 0, 0 }

// fill reads more data, compacting or growing the buffer.
func (r *Reader) fill() error {
	if r.pos > 0 {
		n := copy(r.buf, r.buf[r.pos:r.end])
		r.pos, r.end = 0, n
	}
	if r.end == len(r.buf) {
		if len(r.buf) >= maxElement {
			return fmt.Errorf("loadgen: element larger than %d bytes", maxElement)
		}
		nb := make([]byte, 2*len(r.buf))
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// StreamHeader reads up to and including the <stream:stream> start tag
// (skipping an XML declaration) and returns that start tag.
func (r *Reader) StreamHeader() (Elem, error) {
	for {
		b := r.buf[r.pos:r.end]
		i := skipSpace(b)
		if i < len(b) && b[i] != '<' {
			return Elem{}, fmt.Errorf("loadgen: text before stream header: %q", clip(b[i:]))
		}
		if i+1 < len(b) {
			switch b[i+1] {
			case '?':
				k := bytes.Index(b[i:], []byte("?>"))
				if k >= 0 {
					r.pos += i + k + 2
					continue
				}
			default:
				n, self, ok := tagEnd(b[i:])
				if ok {
					e := Elem{Raw: b[i : i+n]}
					if self || !e.Is("stream") {
						return Elem{}, fmt.Errorf("loadgen: expected stream header, got %q", clip(e.Raw))
					}
					r.pos += i + n
					return e, nil
				}
			}
		}
		if err := r.fill(); err != nil {
			return Elem{}, err
		}
	}
}

// Next returns the next complete top-level element. Its bytes are valid
// until the next call. Whitespace keepalives between elements are skipped;
// the end of the stream gives ErrStreamClosed.
func (r *Reader) Next() (Elem, error) {
	for {
		b := r.buf[r.pos:r.end]
		i := skipSpace(b)
		if i == len(b) {
			r.pos = r.end
		} else {
			if b[i] != '<' {
				// Stray text at stream level (not allowed, but harmless): skip it.
				k := bytes.IndexByte(b[i:], '<')
				if k < 0 {
					r.pos = r.end
				} else {
					r.pos += i + k
					continue
				}
			} else {
				n, err := elementEnd(b[i:])
				switch {
				case err == nil:
					e := Elem{Raw: b[i : i+n]}
					r.pos += i + n
					return e, nil
				case errors.Is(err, ErrStreamClosed):
					r.pos = r.end
					return Elem{}, err
				case !errors.Is(err, errIncomplete):
					return Elem{}, err
				}
				r.pos += i
			}
		}
		if err := r.fill(); err != nil {
			return Elem{}, err
		}
	}
}

func skipSpace(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// tagEnd scans a start tag at b[0]=='<' and returns its length, whether it
// is self-closing, and false when b ends first. '>' inside quoted
// attribute values is skipped.
func tagEnd(b []byte) (int, bool, bool) {
	var quote byte
	for i := 1; i < len(b); i++ {
		c := b[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i + 1, b[i-1] == '/', true
		}
	}
	return 0, false, false
}

// elementEnd returns the length of the element starting at b[0]=='<'.
func elementEnd(b []byte) (int, error) {
	depth := 0
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			return 0, errIncomplete
		}
		i += j
		if i+1 >= len(b) {
			return 0, errIncomplete
		}
		switch b[i+1] {
		case '/':
			if depth == 0 {
				return 0, ErrStreamClosed // </stream:stream>
			}
			k := bytes.IndexByte(b[i:], '>')
			if k < 0 {
				return 0, errIncomplete
			}
			i += k + 1
			depth--
			if depth == 0 {
				return i, nil
			}
		case '!':
			var term string
			switch {
			case bytes.HasPrefix(b[i:], []byte("<!--")):
				term = "-->"
			case bytes.HasPrefix(b[i:], []byte("<![CDATA[")):
				term = "]]>"
			case len(b)-i < 9:
				return 0, errIncomplete
			default:
				return 0, fmt.Errorf("loadgen: unexpected markup %q", clip(b[i:]))
			}
			k := bytes.Index(b[i:], []byte(term))
			if k < 0 {
				return 0, errIncomplete
			}
			i += k + len(term)
		case '?':
			k := bytes.Index(b[i:], []byte("?>"))
			if k < 0 {
				return 0, errIncomplete
			}
			i += k + 2
		default:
			n, self, ok := tagEnd(b[i:])
			if !ok {
				return 0, errIncomplete
			}
			i += n
			if !self {
				depth++
			} else if depth == 0 {
				return i, nil
			}
		}
	}
}

func clip(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

// Elem is one raw element as the server sent it.
type Elem struct{ Raw []byte }

// Name is the element's qualified name as written (e.g. "stream:features").
func (e Elem) Name() []byte {
	if len(e.Raw) < 2 {
		return nil
	}
	b := e.Raw[1:]
	for i, c := range b {
		if c == ' ' || c == '>' || c == '/' || c == '\t' || c == '\n' || c == '\r' {
			return b[:i]
		}
	}
	return b
}

// Is reports whether the element's local name (prefix ignored) is local.
func (e Elem) Is(local string) bool { return localIs(e.Name(), local) }

func localIs(name []byte, local string) bool {
	if k := bytes.IndexByte(name, ':'); k >= 0 {
		name = name[k+1:]
	}
	return string(name) == local
}

// startTag returns the element's start tag.
func (e Elem) startTag() []byte {
	n, _, ok := tagEnd(e.Raw)
	if !ok {
		return e.Raw
	}
	return e.Raw[:n]
}

// Attr returns the raw (still escaped) value of the attribute name on the
// start tag, and whether it is present.
func (e Elem) Attr(name string) ([]byte, bool) {
	t := e.startTag()
	i := 1 + len(e.Name())
	for i < len(t) {
		for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r') {
			i++
		}
		if i >= len(t) || t[i] == '>' || t[i] == '/' {
			return nil, false
		}
		ns := i
		for i < len(t) && t[i] != '=' && t[i] != ' ' && t[i] != '>' {
			i++
		}
		an := t[ns:i]
		for i < len(t) && (t[i] == ' ' || t[i] == '=') {
			i++
		}
		if i >= len(t) || (t[i] != '\'' && t[i] != '"') {
			return nil, false
		}
		q := t[i]
		k := bytes.IndexByte(t[i+1:], q)
		if k < 0 {
			return nil, false
		}
		v := t[i+1 : i+1+k]
		i += k + 2
		if string(an) == name {
			return v, true
		}
	}
	return nil, false
}

// AttrString is Attr unescaped, "" when absent.
func (e Elem) AttrString(name string) string {
	v, _ := e.Attr(name)
	return unescape(v)
}

// Child returns the first descendant element with the given local name.
func (e Elem) Child(local string) (Elem, bool) {
	t := e.startTag()
	if len(t) == len(e.Raw) || (len(t) >= 2 && t[len(t)-2] == '/') {
		return Elem{}, false
	}
	b := e.Raw[len(t):]
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 || i+j+1 >= len(b) {
			return Elem{}, false
		}
		i += j
		switch b[i+1] {
		case '/', '!', '?':
			i++
			continue
		}
		c := Elem{Raw: b[i:]}
		if localIs(c.Name(), local) {
			n, err := elementEnd(b[i:])
			if err != nil {
				return Elem{}, false
			}
			return Elem{Raw: b[i : i+n]}, true
		}
		i++
	}
}

// Has reports whether a descendant with the local name exists.
func (e Elem) Has(local string) bool {
	_, ok := e.Child(local)
	return ok
}

// Text returns the raw character data of a leaf element (between its
// start and end tags), still escaped; "" for an empty element.
func (e Elem) Text() []byte {
	t := e.startTag()
	if len(t) == len(e.Raw) || (len(t) >= 2 && t[len(t)-2] == '/') {
		return nil
	}
	k := bytes.LastIndex(e.Raw, []byte("</"))
	if k < len(t) {
		return nil
	}
	return e.Raw[len(t):k]
}

// Children calls f for each direct child element.
func (e Elem) Children(f func(Elem)) {
	t := e.startTag()
	if len(t) == len(e.Raw) || (len(t) >= 2 && t[len(t)-2] == '/') {
		return
	}
	b := e.Raw[len(t):]
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 || i+j+1 >= len(b) {
			return
		}
		i += j
		switch b[i+1] {
		case '/':
			return // the parent's end tag
		case '!', '?':
			k := bytes.IndexByte(b[i:], '>')
			if k < 0 {
				return
			}
			i += k + 1
			continue
		}
		n, err := elementEnd(b[i:])
		if err != nil {
			return
		}
		f(Elem{Raw: b[i : i+n]})
		i += n
	}
}

func (e Elem) String() string { return string(e.Raw) }

var unescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&apos;", "'", "&quot;", `"`)

func unescape(b []byte) string {
	if bytes.IndexByte(b, '&') < 0 {
		return string(b)
	}
	return unescaper.Replace(string(b))
}

var escaper = strings.NewReplacer("<", "&lt;", ">", "&gt;", "&", "&amp;", "'", "&apos;", `"`, "&quot;")

func escape(s string) string { return escaper.Replace(s) }
