package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Sentinel errors. Every error from Load and Parse wraps one of them.
var (
	// ErrRead: the policy file could not be read.
	ErrRead = errors.New("policy: cannot read file")
	// ErrSyntax: the file is not well-formed YAML, or has more than one
	// document.
	ErrSyntax = errors.New("policy: syntax error")
	// ErrInvalid: an unknown key, a value of the wrong type or a value that
	// fails validation.
	ErrInvalid = errors.New("policy: invalid policy")
)

// MaxFileSize is the largest policy file accepted.
const MaxFileSize = 8 << 20

// Error is one problem in a policy file: where it is and what is wrong.
// Parse joins several with errors.Join; every one wraps ErrSyntax,
// ErrInvalid or ErrRead.
type Error struct {
	File string // file name
	Line int    // 1-based; 0 when unknown
	Path string // key path such as "content[1].lexicons[0]"
	Rule string // the id of the rule the problem is in, if any
	Msg  string
	Kind error
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("policy: ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		if e.Rule != "" {
			fmt.Fprintf(&b, " (rule %s)", e.Rule)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// File is a policy file as written. docs/policy.md is its reference.
type File struct {
	// Version is a label chosen by the author, e.g. "2026-11-23.1". The
	// policy version recorded with every decision is this label and a
	// hash of the file's content, so an edit without a new label is still
	// told apart.
	Version string `yaml:"version"`
	// Organization names the company in notices.
	Organization string `yaml:"organization"`
	// Compliance are the compliance officers' bare JIDs (local accounts);
	// rules notify them with "notify: [compliance]".
	Compliance []string `yaml:"compliance"`
	// DefaultAccess applies when no access rule decided: allow (default)
	// or deny.
	DefaultAccess string `yaml:"default_access"`
	// DefaultMessage is the bounce text when DefaultAccess denies.
	DefaultMessage string `yaml:"default_message"`

	Lexicons map[string]Lexicon `yaml:"lexicons"`
	Patterns map[string]string  `yaml:"patterns"`

	Access  []Rule `yaml:"access"`
	Content []Rule `yaml:"content"`
	Files   []Rule `yaml:"files"`

	Scan       Scan       `yaml:"scan"`
	Disclaimer Disclaimer `yaml:"disclaimer"`

	// Barriers are information barriers: rules for traffic between local
	// accounts, which otherwise never meets the policy. None by default.
	Barriers []Barrier `yaml:"barriers"`
}

// Barrier is an information barrier between two groups of local accounts
// (e.g. research and trading): a stanza from a member of one to a member
// of the other, in either direction, is denied (or flagged).
type Barrier struct {
	ID          string `yaml:"id"`
	Description string `yaml:"description"`
	// Between names exactly two groups.
	Between []string `yaml:"between"`
	// Kinds and Time narrow the barrier as they do for other rules.
	Kinds []string    `yaml:"kinds"`
	Time  *TimeWindow `yaml:"time"`
	// Action is deny (default) or flag.
	Action    string   `yaml:"action"`
	Condition string   `yaml:"condition"`
	Message   string   `yaml:"message"`
	Notify    []string `yaml:"notify"`
}

// Selector chooses the crossings a rule applies to. Every field that is
// set must match (AND); a list matches if any entry does (OR); an unset
// field matches everything.
type Selector struct {
	// Direction is outbound (local to outside), inbound or any (default).
	Direction string `yaml:"direction"`
	// Zones are the outside zones: remote (federation), transport.
	Zones []string `yaml:"zones"`
	// Domains are patterns for the outside domain ("*" matches any run of
	// characters): "partner.example", "*.partner.example".
	Domains []string `yaml:"domains"`
	// JIDs are patterns for the outside party's bare JID: "*@irc.example",
	// "ceo@competitor.example". A pattern without "@" is a domain pattern.
	JIDs []string `yaml:"jids"`
	// Users and Groups name the local party (the sender of an outbound
	// stanza, the recipient of an inbound one) by account name and by
	// group (gatehouse group ...).
	Users        []string `yaml:"users"`
	Groups       []string `yaml:"groups"`
	ExceptUsers  []string `yaml:"except_users"`
	ExceptGroups []string `yaml:"except_groups"`
	// Kinds are stanza kinds: message (any message but errors), chat,
	// normal, groupchat, headline, error, presence, subscription,
	// muc-join, iq, file.
	Kinds []string `yaml:"kinds"`
	// Time is a weekly time window; the rule applies inside it.
	Time *TimeWindow `yaml:"time"`
}

// TimeWindow is a weekly window such as mon-fri 09:00-18:00 Europe/Berlin.
type TimeWindow struct {
	Days     []string `yaml:"days"`     // mon..sun or ranges "mon-fri"; default every day
	From     string   `yaml:"from"`     // "09:00"; default 00:00
	To       string   `yaml:"to"`       // "18:00" (exclusive); default 24:00; To < From spans midnight
	Location string   `yaml:"location"` // IANA zone; default UTC
}

// Rule is one access, content or file rule.
type Rule struct {
	ID          string `yaml:"id"`
	Description string `yaml:"description"`
	Selector    `yaml:",inline"`

	// Content rules: the rule matches when any named lexicon or pattern
	// matches the text (message body and subject, presence status).
	Lexicons []string `yaml:"lexicons"`
	Patterns []string `yaml:"patterns"`

	// File rules: the rule matches a file offer that breaks a limit, or
	// any file offer if it sets no limit.
	MaxSize     *int64   `yaml:"max_size"`     // bytes
	Types       []string `yaml:"types"`        // allowed: "image/*", "application/pdf", ".pdf"
	BlockTypes  []string `yaml:"block_types"`  // refused
	UnknownSize string   `yaml:"unknown_size"` // allow (default) or deny an offer whose size is unknown

	// CEL is an optional CEL expression over the documented variables
	// (docs/policy.md#cel): the rule matches only where it is true too.
	CEL string `yaml:"cel"`

	// Action is allow, deny, flag or (content rules) redact.
	Action string `yaml:"action"`
	// Condition is the stanza error of a deny; default policy-violation.
	Condition string `yaml:"condition"`
	// Message is the bounce text a local sender gets; the rule id is
	// appended. RemoteMessage is what an outside sender gets (default: a
	// generic refusal that names no rule).
	Message       string `yaml:"message"`
	RemoteMessage string `yaml:"remote_message"`
	// Notify lists who is told when the rule acts: manager (the local
	// party's manager), compliance, or local bare JIDs.
	Notify []string `yaml:"notify"`
}

// Scan configures virus scanning of file content that crosses inline
// (XEP-0047 in-band bytestreams, data: URIs, XEP-0231 bits of binary)
// and, with Links, of files behind http(s) links to outside servers.
type Scan struct {
	Enabled bool   `yaml:"enabled"`
	ID      string `yaml:"id"` // rule id in decisions; default "scan"
	// Links fetches files behind http(s) links (OOB, SFS, upload URLs of
	// other servers) and scans them before the link crosses; the server
	// must provide a fetcher (policy.scan_links in its configuration).
	Links    bool `yaml:"links"`
	Selector `yaml:",inline"`
	Message  string   `yaml:"message"`
	Notify   []string `yaml:"notify"`
}

// Disclaimer configures the notice that a conversation is recorded.
type Disclaimer struct {
	Enabled  bool   `yaml:"enabled"`
	ID       string `yaml:"id"` // default "disclaimer"
	Selector `yaml:",inline"`
	// Text is sent to both sides; default "This conversation is recorded
	// by <organization>."
	Text string `yaml:"text"`
	// Period is how long one notice covers a pair of addresses; default
	// 24h.
	Period string `yaml:"period"`
}

// Load reads and compiles the policy file at path.
func Load(path string, opts Options) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Kind: ErrRead, Msg: "cannot open the policy file", Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Kind: ErrRead, Msg: "cannot read the policy file", Err: err}
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Kind: ErrRead, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return Parse(data, path, opts)
}

// Parse decodes, validates and compiles a policy. name is used in error
// messages. Nothing is half-built: either the whole policy compiles or an
// error lists every problem found.
func Parse(data []byte, name string, opts Options) (*Policy, error) {
	f, idx, err := decodeFile(data, name)
	if err != nil {
		return nil, err
	}
	c := &compiler{file: name, idx: idx, opts: opts}
	p := c.compile(f, data)
	if len(c.errs) > 0 {
		// In file order, which is how an editor walks them.
		slices.SortStableFunc(c.errs, func(a, b error) int {
			var ea, eb *Error
			errors.As(a, &ea)
			errors.As(b, &eb)
			return ea.Line - eb.Line
		})
		if len(c.errs) == 1 {
			return nil, c.errs[0]
		}
		return nil, errors.Join(c.errs...)
	}
	return p, nil
}

var reLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func splitLine(s string) (int, string) {
	if m := reLine.FindStringSubmatch(s); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return n, m[2]
		}
	}
	return 0, strings.TrimPrefix(s, "yaml: ")
}

// decodeFile decodes strictly (unknown keys are errors) and indexes the
// lines of every key for later validation messages.
func decodeFile(data []byte, name string) (*File, *lineIndex, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, &Error{File: name, Kind: ErrSyntax, Msg: "the policy file is empty"}
		}
		line, msg := splitLine(err.Error())
		return nil, nil, &Error{File: name, Line: line, Kind: ErrSyntax, Msg: msg}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		line, msg := splitLine(err.Error())
		return nil, nil, &Error{File: name, Line: line, Kind: ErrSyntax, Msg: msg}
	default:
		return nil, nil, &Error{File: name, Line: extra.Line, Kind: ErrSyntax, Msg: "more than one YAML document in the file"}
	}
	idx := newLineIndex(&doc)
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, &Error{File: name, Line: doc.Line, Kind: ErrSyntax, Msg: "the policy must be a YAML mapping (version:, access:, ...)"}
	}
	var f File
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&f)
	if err == nil {
		return &f, idx, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		line, msg := splitLine(err.Error())
		return nil, nil, &Error{File: name, Line: line, Kind: ErrSyntax, Msg: msg}
	}
	errs := make([]error, 0, len(te.Errors))
	for _, s := range te.Errors {
		line, msg := splitLine(s)
		e := &Error{File: name, Line: line, Kind: ErrInvalid, Msg: msg}
		e.Path, e.Rule = idx.at(line)
		errs = append(errs, e)
	}
	if len(errs) == 1 {
		return nil, nil, errs[0]
	}
	return nil, nil, errors.Join(errs...)
}

// lineIndex maps key paths to lines and lines back to rules.
type lineIndex struct {
	lines  map[string]int
	byLine map[int]string
	rules  map[string]string // "access[0]" -> id
}

func newLineIndex(doc *yaml.Node) *lineIndex {
	x := &lineIndex{lines: map[string]int{}, byLine: map[int]string{}, rules: map[string]string{}}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		x.walk(doc.Content[0], "", 0)
	}
	return x
}

func (x *lineIndex) add(path string, line int) {
	if _, ok := x.lines[path]; !ok {
		x.lines[path] = line
	}
	if _, ok := x.byLine[line]; !ok {
		x.byLine[line] = path
	}
}

func (x *lineIndex) walk(n *yaml.Node, path string, depth int) {
	if depth > 64 {
		return // deeper than any policy; aliases cannot loop here (not followed)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			x.add(p, k.Line)
			if k.Value == "id" && v.Kind == yaml.ScalarNode {
				x.rules[path] = v.Value
			}
			x.walk(v, p, depth+1)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			x.add(p, v.Line)
			x.walk(v, p, depth+1)
		}
	}
}

// lineOf returns the line of path or of its nearest enclosing key.
func (x *lineIndex) lineOf(path string) int {
	for path != "" {
		if l, ok := x.lines[path]; ok {
			return l
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			break
		}
		path = path[:cut]
	}
	return 0
}

// at returns the key path on line and the id of the rule it is in.
func (x *lineIndex) at(line int) (path, rule string) {
	path = x.byLine[line]
	return path, x.ruleOf(path)
}

// ruleOf returns the id of the rule that path is inside ("content[1]...").
func (x *lineIndex) ruleOf(path string) string {
	for _, stage := range []string{"access[", "content[", "files[", "barriers["} {
		if strings.HasPrefix(path, stage) {
			end := strings.IndexByte(path, ']')
			if end > 0 {
				return x.rules[path[:end+1]]
			}
		}
	}
	return ""
}
