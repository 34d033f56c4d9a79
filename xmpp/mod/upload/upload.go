// Package upload implements HTTP File Upload (XEP-0363): the service at
// upload.<domain> hands out slots over XMPP, and its HTTP handler (served
// over HTTPS by the composition root) takes the PUT of each slot and then
// serves the file with GET at the same unguessable URL.
//
// Limits come from config: a file larger than upload.max_file_size is
// refused with the limit in the error (XEP-0363 §5 file-too-large), and so
// is a slot that would take an account past upload.quota (what is stored
// plus what pending slots reserved). A slot not used within
// upload.slot_lifetime expires.
//
// Files live in <data_dir>/<upload.dir>/<token>/<name> with a meta.json
// next to each (owner, size, type). The policy engine plugs in through
// Checker: it sees every slot request and every complete file before the
// file can be downloaded.
//
// It must not import c2s, s2s, transports or other modules.
package upload

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// NS is the XEP-0363 namespace (version 1.0+).
const NS = "urn:xmpp:http:upload:0"

// Service discovery namespaces.
const (
	nsDiscoInfo  = "http://jabber.org/protocol/disco#info"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
	nsData       = "jabber:x:data"
)

// Bounds on pending slots, so slot requests cannot pin memory.
const (
	maxPendingPerUser = 100
	maxPending        = 10000
)

// metaFile is the name of the metadata file in each token directory.
const metaFile = "meta.json"

// Slot describes an upload being requested or completed; the policy
// engine's Checker sees it.
type Slot struct {
	Owner       jid.JID // the account that asked for the slot (bare)
	Filename    string  // sanitized file name (the last URL segment)
	Size        int64
	ContentType string // as the client declared it; may be empty
	URL         string // the GET URL
}

// Refusal is a Checker's reason to refuse; its text is shown to the user.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

// Checker is the hook the policy engine implements (file rules and
// virus scanning, policy/). CheckSlot runs before a slot is handed out;
// CheckFile runs once all bytes arrived, before the file can be fetched,
// with the path of the complete file (read it, do not move it). An error
// refuses: a *Refusal with its reason, any other error as a failure of the
// check (the upload is refused too: fail closed).
type Checker interface {
	CheckSlot(ctx context.Context, s Slot) error
	CheckFile(ctx context.Context, s Slot, path string) error
}

// Options configure the module.
type Options struct {
	Config  config.Upload
	Hosts   []string
	DataDir string // Config.Dir is relative to it
	Log     logrus.FieldLogger
	Now     func() time.Time // nil: time.Now
	Rand    io.Reader        // tokens; nil: crypto/rand
}

// Module is the upload service and its HTTP handler.
type Module struct {
	cfg    config.Upload
	domain string
	dir    string
	log    logrus.FieldLogger
	now    func() time.Time
	rand   io.Reader
	bus    *hook.Bus

	mu      sync.Mutex
	base    string           // URL prefix, without trailing slash
	pending map[string]*slot // token → slot not yet uploaded
	usage   map[string]int64 // bare JID → bytes stored
	checker Checker
}

type slot struct {
	Slot
	token     string
	expires   time.Time
	uploading bool
}

// meta is what meta.json holds.
type meta struct {
	Owner       string    `json:"owner"`
	Filename    string    `json:"filename"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	Created     time.Time `json:"created"`
}

// Errors.
var (
	ErrDisabled = errors.New("upload: disabled")
)

// Open prepares the file directory and counts what each account stored.
func Open(ctx context.Context, o Options) (*Module, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	dir := o.Config.Dir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(o.DataDir, dir)
	}
	m := &Module{cfg: o.Config, domain: o.Config.ServiceDomain(o.Hosts), dir: dir, log: o.Log, now: o.Now, rand: o.Rand,
		pending: map[string]*slot{}, usage: map[string]int64{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: file directory: %w", err)
	}
	if err := m.scan(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// scan sums the stored files per owner and removes uploads that never
// completed (a crash mid-PUT).
func (m *Module) scan(ctx context.Context) error {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("upload: scan: %w", err)
	}
	for _, e := range ents {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !e.IsDir() {
			continue
		}
		md, err := readMeta(filepath.Join(m.dir, e.Name()))
		if err != nil {
			_ = os.RemoveAll(filepath.Join(m.dir, e.Name()))
			continue
		}
		m.usage[md.Owner] += md.Size
	}
	return nil
}

func readMeta(dir string) (meta, error) {
	var md meta
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return md, err
	}
	err = json.Unmarshal(b, &md)
	return md, err
}

// Domain is the service's domain.
func (m *Module) Domain() string { return m.domain }

// SetBaseURL sets the prefix of handed-out URLs (the composition root
// knows the bound port).
func (m *Module) SetBaseURL(u string) {
	m.mu.Lock()
	m.base = strings.TrimSuffix(u, "/")
	m.mu.Unlock()
}

// SetChecker installs the policy hook (nil: none).
func (m *Module) SetChecker(c Checker) {
	m.mu.Lock()
	m.checker = c
	m.mu.Unlock()
}

// Usage returns the bytes an account (bare JID) has stored.
func (m *Module) Usage(owner string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usage[owner]
}

// Register remembers the bus (for replies). Clients find the service
// through the server's disco#items, which lists every hosted service.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
}

// Deliver implements router.Deliverer for the service's domain.
func (m *Module) Deliver(ctx context.Context, env *router.Envelope) error {
	st := env.Stanza
	if st.Kind != stanza.KindIQ {
		if st.Kind == stanza.KindMessage && st.Type != "error" && st.Type != "headline" && st.Type != "groupchat" {
			m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
		}
		return nil
	}
	if !st.IsRequest() {
		return nil
	}
	p := st.Payload()
	var reply *stanza.Stanza
	switch {
	case p == nil || len(st.Elements()) != 1:
		reply = stanza.Bounce(st, stanza.BadRequest, "an iq request carries exactly one payload")
	case st.To.Localpart() != "" || st.To.Resourcepart() != "":
		reply = stanza.Bounce(st, stanza.ServiceUnavailable, "")
	case p.Name.Space == NS && p.Name.Local == "request" && st.Type == "get":
		reply = m.request(ctx, env, p)
	case p.Name.Space == nsDiscoInfo && p.Name.Local == "query" && st.Type == "get":
		if p.AttrValue("node") != "" {
			reply = stanza.Bounce(st, stanza.ItemNotFound, "")
		} else {
			reply = st.Result(m.info())
		}
	case p.Name.Space == nsDiscoItems && p.Name.Local == "query" && st.Type == "get":
		reply = st.Result(stanza.NewElement(nsDiscoItems, "query"))
	default:
		reply = stanza.Bounce(st, stanza.ServiceUnavailable, "")
	}
	m.bus.Reply(ctx, env, reply)
	return nil
}

// info is the service's disco#info (XEP-0363 §3 with the max-file-size
// form).
func (m *Module) info() *stanza.Element {
	q := stanza.NewElement(nsDiscoInfo, "query")
	q.Append(stanza.NewElement(nsDiscoInfo, "identity", "category", "store", "type", "file", "name", "HTTP File Upload"))
	q.Append(stanza.NewElement(nsDiscoInfo, "feature", "var", NS))
	q.Append(stanza.NewElement(nsDiscoInfo, "feature", "var", nsDiscoInfo))
	x := stanza.NewElement(nsData, "x", "type", "result")
	field := func(v, val string, hidden bool) {
		f := stanza.NewElement(nsData, "field", "var", v)
		if hidden {
			f.SetAttr("type", "hidden")
		}
		x.Append(f.Append(stanza.NewElement(nsData, "value").AppendText(val)))
	}
	field("FORM_TYPE", NS, true)
	field("max-file-size", strconv.FormatInt(m.cfg.MaxFileSize, 10), false)
	return q.Append(x)
}

// tooLarge is the XEP-0363 §5 error for a file over the limit.
func (m *Module) tooLarge(st *stanza.Stanza) *stanza.Stanza {
	r := stanza.ErrorReply(st, stanza.Modify, stanza.NotAcceptable,
		fmt.Sprintf("the file is too large: at most %d bytes are allowed", m.cfg.MaxFileSize))
	if e := r.Child("", "error"); e != nil {
		e.Append(stanza.NewElement(NS, "file-too-large").Append(
			stanza.NewElement(NS, "max-file-size").AppendText(strconv.FormatInt(m.cfg.MaxFileSize, 10))))
	}
	return r
}

func (m *Module) request(ctx context.Context, env *router.Envelope, req *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	if env.Src.Zone != router.ZoneLocal || st.From.Localpart() == "" || !m.bus.IsHost(st.From.Domainpart()) {
		return stanza.Bounce(st, stanza.Forbidden, "only accounts of this server may upload")
	}
	name := sanitize(req.AttrValue("filename"))
	size, err := strconv.ParseInt(req.AttrValue("size"), 10, 64)
	if err != nil || size < 0 {
		return stanza.Bounce(st, stanza.BadRequest, "the size attribute must be a number of bytes")
	}
	if req.AttrValue("filename") == "" {
		return stanza.Bounce(st, stanza.BadRequest, "the filename attribute is required")
	}
	if size > m.cfg.MaxFileSize {
		return m.tooLarge(st)
	}
	ctype := req.AttrValue("content-type")
	if len(ctype) > 255 || strings.ContainsAny(ctype, "\r\n") {
		ctype = ""
	}
	s, err := m.reserve(ctx, st.From.Bare(), name, size, ctype)
	var ref *Refusal
	var quota *quotaError
	switch {
	case errors.As(err, &quota):
		return stanza.ErrorReply(st, stanza.Wait, stanza.ResourceConstraint, quota.Error())
	case errors.Is(err, errTooMany):
		return stanza.ErrorReply(st, stanza.Wait, stanza.ResourceConstraint, "too many uploads waiting; finish or wait for them to expire")
	case errors.Is(err, errNotListening):
		return stanza.Bounce(st, stanza.ServiceUnavailable, "the upload server is not listening")
	case errors.As(err, &ref):
		return stanza.Bounce(st, stanza.PolicyViolation, ref.Reason)
	case err != nil:
		m.log.WithError(err).Error("upload slot")
		return stanza.Bounce(st, stanza.ServiceUnavailable, "the upload could not be prepared; try again later")
	}
	res := stanza.NewElement(NS, "slot")
	res.Append(stanza.NewElement(NS, "put", "url", s.URL))
	res.Append(stanza.NewElement(NS, "get", "url", s.URL))
	return st.Result(res)
}

// Slot reservation errors.
var (
	errTooMany      = errors.New("upload: too many pending slots")
	errNotListening = errors.New("upload: no base URL")
)

// quotaError says how far over the quota a slot would go.
type quotaError struct{ used, quota, size int64 }

func (e *quotaError) Error() string {
	return fmt.Sprintf("upload quota exceeded: %d of %d bytes are used or reserved; this file needs %d more", e.used, e.quota, e.size)
}

// reserve checks the quota and the policy hook and makes a pending slot.
// The size limit is checked by the caller.
func (m *Module) reserve(ctx context.Context, owner jid.JID, name string, size int64, ctype string) (*slot, error) {
	token, err := m.token()
	if err != nil {
		return nil, fmt.Errorf("upload: token: %w", err)
	}
	m.mu.Lock()
	base := m.base
	checker := m.checker
	now := m.now()
	m.expire(now)
	reserved, count := int64(0), 0
	for _, s := range m.pending {
		if s.Owner.Equal(owner) {
			reserved += s.Size
			count++
		}
	}
	used := m.usage[owner.String()]
	switch {
	case m.cfg.Quota > 0 && used+reserved+size > m.cfg.Quota:
		m.mu.Unlock()
		return nil, &quotaError{used: used + reserved, quota: m.cfg.Quota, size: size}
	case count >= maxPendingPerUser || len(m.pending) >= maxPending:
		m.mu.Unlock()
		return nil, errTooMany
	case base == "":
		m.mu.Unlock()
		return nil, errNotListening
	}
	s := &slot{Slot: Slot{Owner: owner, Filename: name, Size: size, ContentType: ctype, URL: base + "/" + token + "/" + escape(name)},
		token: token, expires: now.Add(m.cfg.SlotLifetime.D())}
	m.pending[token] = s
	m.mu.Unlock()
	if checker != nil {
		if err := checker.CheckSlot(ctx, s.Slot); err != nil {
			m.mu.Lock()
			delete(m.pending, token)
			m.mu.Unlock()
			return nil, err
		}
	}
	return s, nil
}

// expire drops slots whose time is up; m.mu is held.
func (m *Module) expire(now time.Time) {
	for t, s := range m.pending {
		if !s.uploading && now.After(s.expires) {
			delete(m.pending, t)
		}
	}
}

// token returns 32 random bytes, base64url: the unguessable part of the
// URL.
func (m *Module) token() (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(m.rand, b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// sanitize makes a client's file name safe as one path segment: its last
// element, no control characters or separators, valid UTF-8, at most 200
// bytes.
func sanitize(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		if r == utf8.RuneError || unicode.IsControl(r) || r == ':' && b.Len() == 0 {
			r = '_'
		}
		if b.Len()+utf8.RuneLen(r) > 200 {
			break
		}
		b.WriteRune(r)
	}
	name = strings.TrimSpace(b.String())
	if name == "" || name == "." || name == ".." || name == metaFile || strings.HasPrefix(name, ".") {
		name = "file" + strings.TrimLeft(name, ".")
	}
	return name
}

// errNotFound and friends map to HTTP statuses in the handler.
var (
	errNotFound = errors.New("upload: no such file")
	errExpired  = errors.New("upload: slot expired")
	errBusy     = errors.New("upload: upload in progress")
	errSize     = errors.New("upload: size differs from the slot")
)

// claim marks the slot of token/name as being uploaded.
func (m *Module) claim(token, name string) (*slot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.pending[token]
	switch {
	case s == nil || s.Filename != name:
		return nil, errNotFound
	case s.uploading:
		return nil, errBusy
	case m.now().After(s.expires):
		delete(m.pending, token)
		return nil, errExpired
	}
	s.uploading = true
	return s, nil
}

// release ends an upload attempt: done removes the slot and counts the
// file, otherwise the slot may be tried again until it expires.
func (m *Module) release(s *slot, done bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.uploading = false
	if done {
		delete(m.pending, s.token)
		m.usage[s.Owner.String()] += s.Size
	}
}

// store writes the body of a PUT for s: into a temporary file, checked
// for size and by the policy hook, then moved into place.
func (m *Module) store(ctx context.Context, s *slot, body io.Reader) error {
	dir := filepath.Join(m.dir, s.token)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	tmp := filepath.Join(dir, ".part")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(body, s.Size+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("upload: writing: %w", err)
	}
	if n != s.Size {
		return errSize
	}
	m.mu.Lock()
	checker := m.checker
	m.mu.Unlock()
	if checker != nil {
		if err := checker.CheckFile(ctx, s.Slot, tmp); err != nil {
			return err
		}
	}
	md := meta{Owner: s.Owner.String(), Filename: s.Filename, Size: s.Size, ContentType: s.ContentType, Created: m.now().UTC()}
	b, err := json.Marshal(md)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, s.Filename)); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	// meta.json last: a directory without it is an unfinished upload
	// that the next start removes.
	if err := writeFileSync(filepath.Join(dir, metaFile), b); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	ok = true
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// open returns the stored file token/name and its metadata.
func (m *Module) open(token, name string) (*os.File, meta, error) {
	if !validToken(token) {
		return nil, meta{}, errNotFound
	}
	dir := filepath.Join(m.dir, token)
	md, err := readMeta(dir)
	if err != nil || md.Filename != name {
		return nil, md, errNotFound
	}
	f, err := os.Open(filepath.Join(dir, md.Filename))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, md, errNotFound
	}
	return f, md, err
}

func validToken(t string) bool {
	if len(t) != 43 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
