// Package adhoc offers XEP-0050 ad-hoc commands on the server's address:
// "ping" for everyone, and for the configured administrators a subset of
// XEP-0133 service administration: online users (count and list),
// registered users count, an announcement to everyone online, and
// disabling and re-enabling accounts.
//
// Commands are listed under the disco node of XEP-0050 §2.2; as the disco
// module answers only node-less queries, this module takes those node
// queries in an In hook before it. Multi-stage commands keep a small
// bounded table of sessions. Nothing here bypasses the router: the
// announcement is sent through it like any server-generated stanza.
//
// It must not import c2s, s2s, transports or other modules.
package adhoc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Namespaces.
const (
	NS       = "http://jabber.org/protocol/commands"
	nsData   = "jabber:x:data"
	nsInfo   = "http://jabber.org/protocol/disco#info"
	nsItems  = "http://jabber.org/protocol/disco#items"
	nsAdmin  = "http://jabber.org/protocol/admin"
	formType = nsAdmin
)

// Command nodes.
const (
	NodePing        = "ping"
	NodeOnlineNum   = nsAdmin + "#get-online-users-num"
	NodeOnlineList  = nsAdmin + "#get-online-users-list"
	NodeRegistered  = nsAdmin + "#get-registered-users-num"
	NodeAnnounce    = nsAdmin + "#announce"
	NodeDisableUser = nsAdmin + "#disable-user"
	NodeEnableUser  = nsAdmin + "#reenable-user"
)

// Store is what the admin commands need of the accounts.
type Store interface {
	ListUsers(ctx context.Context) ([]string, error)
	Exists(ctx context.Context, username string) (bool, error)
	SetLocked(ctx context.Context, username string, locked bool) error
}

// maxSessions bounds the multi-stage commands waiting for their form.
const maxSessions = 1000

// sessionTTL is how long a command waits for its form.
const sessionTTL = 10 * time.Minute

type command struct {
	node, name string
	admin      bool
	// run executes the command: form is nil on the first stage.
	run func(ctx context.Context, m *Module, env *router.Envelope, form map[string][]string) (*stanza.Element, []*stanza.Element, error)
	// form, when set, is shown first (status executing).
	form func() *stanza.Element
}

type session struct {
	node    string
	owner   string // full JID of the requester
	expires time.Time
}

// Module is the ad-hoc command provider.
type Module struct {
	store  Store
	admins map[string]bool
	log    logrus.FieldLogger
	bus    *hook.Bus
	cmds   []command

	mu       sync.Mutex
	sessions map[string]session
}

// New returns the module; admins are bare JIDs.
func New(store Store, admins []string, log logrus.FieldLogger) *Module {
	m := &Module{store: store, admins: make(map[string]bool), log: log, sessions: make(map[string]session)}
	for _, a := range admins {
		if j, err := jid.Parse(a); err == nil {
			m.admins[j.Bare().String()] = true
		}
	}
	m.cmds = []command{
		{node: NodePing, name: "Ping", run: runPing},
		{node: NodeOnlineNum, name: "Get Number of Online Users", admin: true, run: runOnlineNum},
		{node: NodeOnlineList, name: "Get List of Online Users", admin: true, run: runOnlineList},
		{node: NodeRegistered, name: "Get Number of Registered Users", admin: true, run: runRegistered},
		{node: NodeAnnounce, name: "Send Announcement to Online Users", admin: true, run: runAnnounce, form: announceForm},
		{node: NodeDisableUser, name: "Disable a User", admin: true, run: runLock(true), form: usersForm("disable")},
		{node: NodeEnableUser, name: "Re-Enable a User", admin: true, run: runLock(false), form: usersForm("re-enable")},
	}
	return m
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.HandleIQ(hook.AddrHost, NS, "command", m.execute)
	bus.AddFeature(hook.AddrHost, NS)
	// Node queries reach us before the disco module's handler.
	bus.On(hook.Event{Dir: hook.In, Kind: stanza.KindIQ, Addr: hook.AddrHost}, 100, m.discoNode)
}

// IsAdmin reports whether j may run the admin commands: a configured
// administrator, logged in to this server.
func (m *Module) IsAdmin(env *router.Envelope) bool {
	f := env.Stanza.From
	return env.Src.Zone == router.ZoneLocal && m.admins[f.Bare().String()] && m.bus.IsHost(f.Domainpart())
}

func (m *Module) visible(env *router.Envelope) []command {
	admin := m.IsAdmin(env)
	var out []command
	for _, c := range m.cmds {
		if !c.admin || admin {
			out = append(out, c)
		}
	}
	return out
}

// discoNode answers disco#items for the commands node and disco#info for
// a command's node (XEP-0050 §2.2, §2.3).
func (m *Module) discoNode(_ context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if st.Type != "get" {
		return false
	}
	p := st.Payload()
	if p == nil || p.Name.Local != "query" || p.AttrValue("node") == "" {
		return false
	}
	node := p.AttrValue("node")
	switch p.Name.Space {
	case nsItems:
		if node != NS {
			return false
		}
		q := stanza.NewElement(nsItems, "query", "node", NS)
		for _, c := range m.visible(env) {
			q.Append(stanza.NewElement(nsItems, "item", "jid", st.To.String(), "node", c.node, "name", c.name))
		}
		m.bus.Reply(context.Background(), env, st.Result(q))
		return true
	case nsInfo:
		for _, c := range m.visible(env) {
			if c.node == node {
				q := stanza.NewElement(nsInfo, "query", "node", node).Append(
					stanza.NewElement(nsInfo, "identity", "category", "automation", "type", "command-node", "name", c.name),
					stanza.NewElement(nsInfo, "feature", "var", NS),
					stanza.NewElement(nsInfo, "feature", "var", nsData))
				m.bus.Reply(context.Background(), env, st.Result(q))
				return true
			}
		}
		if node == NS {
			q := stanza.NewElement(nsInfo, "query", "node", node).Append(
				stanza.NewElement(nsInfo, "identity", "category", "automation", "type", "command-list", "name", "Commands"))
			m.bus.Reply(context.Background(), env, st.Result(q))
			return true
		}
	}
	return false
}

// execute runs a command stage (XEP-0050 §3).
func (m *Module) execute(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "set" {
		return stanza.Bounce(st, stanza.BadRequest, "commands are executed with an iq set")
	}
	req := st.Payload()
	node := req.AttrValue("node")
	var cmd *command
	for i := range m.cmds {
		if m.cmds[i].node == node {
			cmd = &m.cmds[i]
		}
	}
	if cmd == nil {
		return stanza.Bounce(st, stanza.ItemNotFound, "no such command")
	}
	if cmd.admin && !m.IsAdmin(env) {
		m.log.WithFields(logrus.Fields{"from": st.From.String(), "node": node}).Warn("admin command refused")
		return stanza.Bounce(st, stanza.Forbidden, "this command is for administrators")
	}
	action := req.AttrValue("action")
	sid := req.AttrValue("sessionid")
	if action == "cancel" {
		m.take(sid, st.From.String(), node)
		return st.Result(stanza.NewElement(NS, "command", "node", node, "sessionid", sid, "status", "canceled"))
	}
	var form map[string][]string
	if x := req.Child(nsData, "x"); x != nil && x.AttrValue("type") == "submit" {
		form = fields(x)
	}
	if cmd.form != nil && form == nil {
		if sid != "" {
			return badSession(st)
		}
		sid = m.open(node, st.From.String())
		if sid == "" {
			return stanza.Bounce(st, stanza.ResourceConstraint, "too many commands in progress")
		}
		out := stanza.NewElement(NS, "command", "node", node, "sessionid", sid, "status", "executing")
		out.Append(stanza.NewElement(NS, "actions", "execute", "complete").Append(stanza.NewElement(NS, "complete")))
		out.Append(cmd.form())
		return st.Result(out)
	}
	if cmd.form != nil && sid != "" && !m.take(sid, st.From.String(), node) {
		return badSession(st)
	}
	note, extra, err := cmd.run(ctx, m, env, form)
	if err != nil {
		var ce *cmdError
		if e, ok := err.(*cmdError); ok {
			ce = e
		} else {
			m.log.WithError(err).WithField("node", node).Error("command failed")
			ce = &cmdError{stanza.InternalServerError, ""}
		}
		return stanza.Bounce(st, ce.cond, ce.text)
	}
	if sid == "" {
		sid = newID()
	}
	out := stanza.NewElement(NS, "command", "node", node, "sessionid", sid, "status", "completed")
	out.Append(extra...)
	if note != nil {
		out.Append(note)
	}
	return st.Result(out)
}

func badSession(st *stanza.Stanza) *stanza.Stanza {
	e := stanza.Bounce(st, stanza.BadRequest, "unknown or expired command session")
	e.Children[len(e.Children)-1].El.Append(stanza.NewElement(NS, "bad-sessionid"))
	return e
}

type cmdError struct {
	cond stanza.Condition
	text string
}

func (e *cmdError) Error() string { return string(e.cond) + ": " + e.text }

func (m *Module) open(node, owner string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for id, s := range m.sessions {
		if now.After(s.expires) {
			delete(m.sessions, id)
		}
	}
	if len(m.sessions) >= maxSessions {
		return ""
	}
	id := newID()
	m.sessions[id] = session{node: node, owner: owner, expires: now.Add(sessionTTL)}
	return id
}

// take ends a session: it must be the requester's, for this node.
func (m *Module) take(id, owner, node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok || s.owner != owner || s.node != node || time.Now().After(s.expires) {
		return false
	}
	delete(m.sessions, id)
	return true
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func fields(x *stanza.Element) map[string][]string {
	out := make(map[string][]string)
	for _, f := range x.Elements() {
		if f.Name.Local != "field" {
			continue
		}
		v := f.AttrValue("var")
		for _, val := range f.Elements() {
			if val.Name.Local == "value" {
				out[v] = append(out[v], val.Text())
			}
		}
		if _, ok := out[v]; !ok {
			out[v] = nil
		}
	}
	return out
}

func note(typ, text string) *stanza.Element {
	return stanza.NewElement(NS, "note", "type", typ).AppendText(text)
}

func field(v, typ, label string, values ...string) *stanza.Element {
	f := stanza.NewElement(nsData, "field", "var", v)
	if typ != "" {
		f.SetAttr("type", typ)
	}
	if label != "" {
		f.SetAttr("label", label)
	}
	for _, val := range values {
		f.Append(stanza.NewElement(nsData, "value").AppendText(val))
	}
	return f
}

func resultForm(fs ...*stanza.Element) *stanza.Element {
	x := stanza.NewElement(nsData, "x", "type", "result")
	x.Append(field("FORM_TYPE", "hidden", "", formType))
	return x.Append(fs...)
}

func runPing(context.Context, *Module, *router.Envelope, map[string][]string) (*stanza.Element, []*stanza.Element, error) {
	return note("info", "Pong"), nil, nil
}

func (m *Module) host(env *router.Envelope) string { return env.Stanza.To.Domainpart() }

func runOnlineNum(_ context.Context, m *Module, env *router.Envelope, _ map[string][]string) (*stanza.Element, []*stanza.Element, error) {
	users := m.online(m.host(env))
	return nil, []*stanza.Element{resultForm(field("onlineusersnum", "", "Number of online users", strconv.Itoa(len(users))))}, nil
}

func runOnlineList(_ context.Context, m *Module, env *router.Envelope, _ map[string][]string) (*stanza.Element, []*stanza.Element, error) {
	users := m.online(m.host(env))
	return nil, []*stanza.Element{resultForm(field("onlineuserjids", "jid-multi", "The list of all online users", users...))}, nil
}

// online lists the bare JIDs with a session on host, sorted.
func (m *Module) online(host string) []string {
	seen := map[string]bool{}
	for _, s := range m.bus.Sessions().All() {
		if s.JID.Domainpart() == host {
			seen[s.JID.Bare().String()] = true
		}
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

func runRegistered(ctx context.Context, m *Module, _ *router.Envelope, _ map[string][]string) (*stanza.Element, []*stanza.Element, error) {
	users, err := m.store.ListUsers(ctx)
	if err != nil {
		return nil, nil, err
	}
	return nil, []*stanza.Element{resultForm(field("registeredusersnum", "", "Number of registered users", strconv.Itoa(len(users))))}, nil
}

func announceForm() *stanza.Element {
	x := stanza.NewElement(nsData, "x", "type", "form")
	x.Append(stanza.NewElement(nsData, "title").AppendText("Making an announcement"))
	x.Append(field("FORM_TYPE", "hidden", "", formType))
	x.Append(field("subject", "text-single", "Subject"))
	body := field("announcement", "text-multi", "Announcement")
	body.Append(stanza.NewElement(nsData, "required"))
	return x.Append(body)
}

// runAnnounce sends a headline to every session on the host, through the
// router (so policy and the archive see it like any server message).
func runAnnounce(ctx context.Context, m *Module, env *router.Envelope, form map[string][]string) (*stanza.Element, []*stanza.Element, error) {
	text := strings.Join(form["announcement"], "\n")
	if strings.TrimSpace(text) == "" {
		return nil, nil, &cmdError{stanza.NotAcceptable, "the announcement is empty"}
	}
	subject := strings.Join(form["subject"], " ")
	host := m.host(env)
	from, _ := jid.New("", host, "")
	n := 0
	for _, s := range m.bus.Sessions().All() {
		if s.JID.Domainpart() != host {
			continue
		}
		msg := &stanza.Stanza{Kind: stanza.KindMessage, Type: "headline", From: from, To: s.JID, ID: newID()}
		if subject != "" {
			msg.Append(stanza.NewElement("", "subject").AppendText(subject))
		}
		msg.Append(stanza.NewElement("", "body").AppendText(text))
		m.bus.Send(ctx, msg)
		n++
	}
	m.log.WithFields(logrus.Fields{"by": env.Stanza.From.Bare().String(), "sessions": n}).Info("announcement sent")
	return note("info", "Announcement sent to "+strconv.Itoa(n)+" sessions"), nil, nil
}

func usersForm(verb string) func() *stanza.Element {
	return func() *stanza.Element {
		x := stanza.NewElement(nsData, "x", "type", "form")
		x.Append(stanza.NewElement(nsData, "title").AppendText("Accounts to " + verb))
		x.Append(field("FORM_TYPE", "hidden", "", formType))
		f := field("accountjids", "jid-multi", "The Jabber ID(s) to "+verb)
		f.Append(stanza.NewElement(nsData, "required"))
		return x.Append(f)
	}
}

// runLock disables (locks) or re-enables accounts; disabling also ends
// their sessions. Accounts must be on the host the command was sent to.
func runLock(lock bool) func(ctx context.Context, m *Module, env *router.Envelope, form map[string][]string) (*stanza.Element, []*stanza.Element, error) {
	return func(ctx context.Context, m *Module, env *router.Envelope, form map[string][]string) (*stanza.Element, []*stanza.Element, error) {
		host := m.host(env)
		var users []string
		for _, v := range form["accountjids"] {
			j, err := jid.Parse(strings.TrimSpace(v))
			if err != nil || j.Localpart() == "" || j.Domainpart() != host {
				return nil, nil, &cmdError{stanza.NotAcceptable, "not an account of " + host + ": " + v}
			}
			ok, err := m.store.Exists(ctx, j.Localpart())
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				return nil, nil, &cmdError{stanza.ItemNotFound, "no such account: " + j.Bare().String()}
			}
			users = append(users, j.Localpart())
		}
		if len(users) == 0 {
			return nil, nil, &cmdError{stanza.NotAcceptable, "name at least one account"}
		}
		for _, u := range users {
			if err := m.store.SetLocked(ctx, u, lock); err != nil {
				return nil, nil, err
			}
			if lock {
				bare, _ := jid.New(u, host, "")
				for _, s := range m.bus.Sessions().Resources(bare) {
					s.Close("not-authorized", "this account has been disabled")
				}
			}
		}
		verb := "re-enabled"
		if lock {
			verb = "disabled"
		}
		m.log.WithFields(logrus.Fields{"by": env.Stanza.From.Bare().String(), "accounts": users}).Info("accounts " + verb)
		return note("info", strconv.Itoa(len(users))+" account(s) "+verb), nil, nil
	}
}
