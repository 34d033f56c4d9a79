package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem found in a configuration. It wraps Kind (one of
// ErrSyntax, ErrUnknownKey, ErrType, ErrInvalid, ErrRead) and, for read
// errors, the underlying error. Load and Parse may return several of them
// joined with errors.Join; errors.As finds the first.
type Error struct {
	File string // file name given to Load or Parse; "" from Validate
	Line int    // 1-based line in File; 0 when not known
	Path string // key path such as "c2s.listen[0]"; "" when not known
	Kind error  // the sentinel
	Msg  string // what is wrong
	Err  error  // underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes Kind and Err to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

var (
	reLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	reNotFound = regexp.MustCompile(`^field (.*) not found in type \S+$`)
)

// splitLine takes "yaml: line 3: msg" or "line 3: msg" apart.
func splitLine(s string) (int, string) {
	if m := reLine.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err == nil {
			return n, m[2]
		}
	}
	return 0, strings.TrimPrefix(s, "yaml: ")
}

// decode strictly decodes data over c and returns the document's node tree
// (nil for an empty document) for locating later validation errors.
func decode(data []byte, name string, c *Config) (*keyIndex, error) {
	// First pass: syntax, number of documents, and the node tree.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty or comments only: all defaults
		}
		line, msg := splitLine(err.Error())
		return nil, &Error{File: name, Line: line, Kind: ErrSyntax, Msg: msg}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		line, msg := splitLine(err.Error())
		return nil, &Error{File: name, Line: line, Kind: ErrSyntax, Msg: msg}
	default:
		return nil, &Error{File: name, Line: extra.Line, Kind: ErrSyntax,
			Msg: "more than one YAML document in the file"}
	}
	idx := newKeyIndex(&doc)

	// Second pass: strict decode into the configuration.
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if err == nil {
		return idx, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		line, msg := splitLine(err.Error())
		return nil, &Error{File: name, Line: line, Kind: ErrSyntax, Msg: msg}
	}
	errs := make([]error, 0, len(te.Errors))
	for _, s := range te.Errors {
		line, msg := splitLine(s)
		e := &Error{File: name, Line: line, Kind: ErrType, Msg: msg}
		if m := reNotFound.FindStringSubmatch(msg); m != nil {
			e.Kind = ErrUnknownKey
			e.Msg = fmt.Sprintf("unknown key %q", m[1])
			e.Path = idx.keyAt(line, m[1])
		} else {
			e.Path = idx.valueAt(line)
		}
		errs = append(errs, e)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, errors.Join(errs...)
}

// locate fills in file and line for validation errors.
func locate(errs []*Error, name string, idx *keyIndex) error {
	out := make([]error, len(errs))
	for i, e := range errs {
		e.File = name
		e.Line = idx.lineOf(e.Path)
		out[i] = e
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

// keyPos is one mapping key or sequence item of the document.
type keyPos struct {
	path    string
	key     string // last mapping key ("" for sequence items)
	keyLine int
	valLine int
	leaf    bool // the value is a scalar
}

// keyIndex lists every key path of a document with its lines.
type keyIndex struct {
	keys   []keyPos
	byPath map[string]int
}

func newKeyIndex(doc *yaml.Node) *keyIndex {
	idx := &keyIndex{byPath: make(map[string]int)}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		idx.walk(doc.Content[0], "")
	}
	return idx
}

func (x *keyIndex) add(p keyPos) {
	if _, dup := x.byPath[p.path]; !dup {
		x.byPath[p.path] = len(x.keys)
	}
	x.keys = append(x.keys, p)
}

func (x *keyIndex) walk(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			x.add(keyPos{path: p, key: k.Value, keyLine: k.Line, valLine: v.Line, leaf: v.Kind == yaml.ScalarNode})
			x.walk(v, p)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			x.add(keyPos{path: p, keyLine: v.Line, valLine: v.Line, leaf: v.Kind == yaml.ScalarNode})
			x.walk(v, p)
		}
	}
	// Aliases are not followed: an anchor's keys were indexed where defined.
}

// keyAt returns the path of the mapping key named key on line.
func (x *keyIndex) keyAt(line int, key string) string {
	if x == nil {
		return ""
	}
	for _, k := range x.keys {
		if k.keyLine == line && k.key == key {
			return k.path
		}
	}
	return ""
}

// valueAt returns the path of the scalar value on line.
func (x *keyIndex) valueAt(line int) string {
	if x == nil {
		return ""
	}
	for _, k := range x.keys {
		if k.valLine == line && k.leaf {
			return k.path
		}
	}
	return ""
}

// lineOf returns the line of path or, when the document does not contain
// it (a default value), of its nearest enclosing key; 0 if none.
func (x *keyIndex) lineOf(path string) int {
	if x == nil {
		return 0
	}
	for path != "" {
		if i, ok := x.byPath[path]; ok {
			return x.keys[i].keyLine
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			break
		}
		path = path[:cut]
	}
	return 0
}
