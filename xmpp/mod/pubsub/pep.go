package pubsub

import (
	"bytes"
	"context"
	"encoding/xml"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// maxPresencePerOwner bounds the entities remembered as having sent
// presence to one account (its own resources and its contacts').
const maxPresencePerOwner = 2000

// presenceTable remembers, per account, the full JIDs that sent it
// available presence and the caps they announced: the recipients of the
// account's PEP notifications (XEP-0163 §4.3).
type presenceTable struct {
	mu sync.Mutex
	m  map[string]map[string]capsRef
}

func newPresenceTable() *presenceTable { return &presenceTable{m: map[string]map[string]capsRef{}} }

// set records full's presence to owner and reports whether it is new or
// its caps changed.
func (t *presenceTable) set(owner, full jid.JID, ref capsRef) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := owner.String()
	e := t.m[o]
	if e == nil {
		e = map[string]capsRef{}
		t.m[o] = e
	}
	k := full.String()
	old, ok := e[k]
	if ok && old == ref {
		return false
	}
	if !ok && len(e) >= maxPresencePerOwner {
		return false
	}
	e[k] = ref
	return true
}

func (t *presenceTable) remove(owner, full jid.JID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := owner.String()
	if e := t.m[o]; e != nil {
		delete(e, full.String())
		if len(e) == 0 {
			delete(t.m, o)
		}
	}
}

type presenceEntry struct {
	jid jid.JID
	ref capsRef
}

func (t *presenceTable) entries(owner jid.JID) []presenceEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[owner.String()]
	out := make([]presenceEntry, 0, len(e))
	for k, ref := range e {
		if j, err := jid.Parse(k); err == nil {
			out = append(out, presenceEntry{j, ref})
		}
	}
	return out
}

// inPresence observes presence reaching a local account from someone
// else's resource.
func (m *Module) inPresence(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	owner := st.To.Bare()
	from := st.From
	if from.Resourcepart() == "" || from.Bare().Equal(owner) {
		return false
	}
	switch st.Type {
	case "":
		m.seen(ctx, owner, from, parseCaps(st))
	case "unavailable", "error":
		m.pres.remove(owner, from)
	}
	return false
}

// outPresence observes an account's own broadcast presence: its resources
// get its PEP notifications too, and the avatar hash is added (XEP-0398).
func (m *Module) outPresence(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	owner := st.From.Bare()
	if st.From.Resourcepart() == "" || st.From.Localpart() == "" {
		return false
	}
	switch st.Type {
	case "":
		m.addAvatarHash(ctx, st)
		m.seen(ctx, owner, st.From, parseCaps(st))
	case "unavailable":
		m.pres.remove(owner, st.From)
	}
	return false
}

func (m *Module) sessionEnded(_ context.Context, s *sessions.Session) {
	m.pres.remove(s.JID.Bare(), s.JID)
}

// seen handles available presence from full to owner: a new entity, or
// one with new caps, gets the last items it is interested in.
func (m *Module) seen(ctx context.Context, owner, full jid.JID, ref capsRef) {
	if !m.pres.set(owner, full, ref) || ref.zero() {
		return
	}
	if feats, ok := m.caps.lookup(ref, full); ok {
		m.sendLastAll(ctx, owner, full, feats)
		return
	}
	id := "caps-" + m.id()
	if !m.caps.want(ref, full, waiter{service: owner, target: full}, id, m.now()) {
		return
	}
	q := &stanza.Stanza{Kind: stanza.KindIQ, Type: "get", ID: id, From: owner, To: full}
	q.Append(stanza.NewElement(NSDiscoInfo, "query", "node", ref.Node+"#"+ref.Ver))
	m.bus.Send(ctx, q)
}

// inIQ sees iq stanzas to accounts before their handlers: answers to our
// caps queries, disco for PEP, and the XEP-0048/XEP-0054 requests that
// PEP mirrors.
func (m *Module) inIQ(ctx context.Context, env *router.Envelope) bool {
	st := env.Stanza
	if st.Type == "result" || st.Type == "error" {
		if !strings.HasPrefix(st.ID, "caps-") {
			return false
		}
		var q *stanza.Element
		if st.Type == "result" {
			q = st.Child(NSDiscoInfo, "query")
			if q == nil {
				q = stanza.NewElement(NSDiscoInfo, "query")
			}
		}
		waiters, feats, ok := m.caps.answer(st.ID, st.From, q)
		if !ok {
			return false
		}
		for _, w := range waiters {
			m.sendLastAll(ctx, w.service, w.target, feats)
		}
		return true
	}
	p := st.Payload()
	if p == nil || len(st.Elements()) != 1 {
		return false
	}
	switch {
	case p.Name.Space == NSDiscoInfo && p.Name.Local == "query":
		return m.accountDiscoInfo(ctx, env, p)
	case p.Name.Space == NSDiscoItems && p.Name.Local == "query" && p.AttrValue("node") != "":
		m.bus.Reply(ctx, env, m.discoNodeItems(ctx, env, service{addr: st.To.Bare(), pep: true}, p.AttrValue("node")))
		return true
	case p.Name.Space == "jabber:iq:private" && st.Type == "set":
		m.privateBookmarks(ctx, env, p)
	case p.Name.Space == "vcard-temp" && p.Name.Local == "vCard" && st.Type == "set":
		m.vcardToPEP(ctx, env, p)
	}
	return false
}

// accountDiscoInfo answers disco#info to an account: PEP nodes, and the
// account itself with the pubsub/pep identity XEP-0163 §6.1 requires
// (which clients such as Conversations check before using PEP). Who may
// ask follows the disco module (XEP-0030 §8).
func (m *Module) accountDiscoInfo(ctx context.Context, env *router.Envelope, q *stanza.Element) bool {
	st := env.Stanza
	owner := st.To.Bare()
	if st.Type != "get" {
		m.bus.Bounce(ctx, env, stanza.BadRequest, "service discovery is read-only")
		return true
	}
	node := q.AttrValue("node")
	if node != "" {
		m.bus.Reply(ctx, env, m.discoNodeInfo(ctx, env, service{addr: owner, pep: true}, node))
		return true
	}
	if !st.From.Bare().Equal(owner) {
		it, ok, err := m.db.RosterItem(ctx, owner.Localpart(), st.From.Bare().String())
		if err != nil || !ok || (it.Subscription != storage.SubFrom && it.Subscription != storage.SubBoth) {
			m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
			return true
		}
	}
	res := stanza.NewElement(NSDiscoInfo, "query")
	res.Append(stanza.NewElement(NSDiscoInfo, "identity", "category", "account", "type", "registered"))
	res.Append(stanza.NewElement(NSDiscoInfo, "identity", "category", "pubsub", "type", "pep"))
	feats := m.bus.Features(hook.AddrBare)
	for i, f := range feats {
		if i == 0 || feats[i-1] != f {
			res.Append(stanza.NewElement(NSDiscoInfo, "feature", "var", f))
		}
	}
	m.bus.Reply(ctx, env, st.Result(res))
	return true
}

// discoNodeInfo answers disco#info for a node of svc.
func (m *Module) discoNodeInfo(ctx context.Context, env *router.Envelope, svc service, node string) *stanza.Stanza {
	st := env.Stanza
	n, e := m.node(ctx, st, svc, node)
	if e != nil {
		return e
	}
	if ok, _, _ := m.access(ctx, n, st.From); !ok {
		return stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	res := stanza.NewElement(NSDiscoInfo, "query", "node", node)
	res.Append(stanza.NewElement(NSDiscoInfo, "identity", "category", "pubsub", "type", "leaf"))
	res.Append(stanza.NewElement(NSDiscoInfo, "feature", "var", NS))
	res.Append(stanza.NewElement(NSDiscoInfo, "feature", "var", NSDiscoInfo))
	meta := stanza.NewElement(NSData, "x", "type", "result")
	field := func(v, val string) {
		meta.Append(stanza.NewElement(NSData, "field", "var", v).Append(stanza.NewElement(NSData, "value").AppendText(val)))
	}
	field("FORM_TYPE", "http://jabber.org/protocol/pubsub#meta-data")
	field("pubsub#owner", n.Owner)
	field("pubsub#access_model", n.Config.AccessModel)
	if n.Config.Title != "" {
		field("pubsub#title", n.Config.Title)
	}
	res.Append(meta)
	return st.Result(res)
}

// discoNodeItems lists a node's item ids (XEP-0060 §5.5).
func (m *Module) discoNodeItems(ctx context.Context, env *router.Envelope, svc service, node string) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "service discovery is read-only")
	}
	n, e := m.node(ctx, st, svc, node)
	if e != nil {
		return e
	}
	if ok, _, _ := m.access(ctx, n, st.From); !ok {
		return stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	items, err := m.store.Items(ctx, svc.key(), node, 0, nil)
	if err != nil {
		return m.internal(st, err)
	}
	res := stanza.NewElement(NSDiscoItems, "query", "node", node)
	for _, it := range items {
		res.Append(stanza.NewElement(NSDiscoItems, "item", "jid", svc.key(), "name", it.ID))
	}
	return st.Result(res)
}

// notify sends an event to everyone who should get it: explicit
// subscribers (and extra, e.g. the subscribers of a node just deleted)
// and, for PEP, the entities that sent the account presence with
// <node>+notify in their caps. Everyone must pass the access model.
func (m *Module) notify(ctx context.Context, svc service, n Node, ev *stanza.Element, extra []string) {
	subs, err := m.store.Subscribers(ctx, svc.key(), n.Name)
	if err != nil {
		m.log.WithError(err).Error("reading pubsub subscribers")
	}
	subs = append(subs, extra...)
	sent := map[string]bool{}
	allowed := map[string]bool{} // bare JID → passed the access check
	mayGet := func(j jid.JID) bool {
		b := j.Bare().String()
		ok, seen := allowed[b]
		if !seen {
			ok, _, _ = m.access(ctx, n, j)
			allowed[b] = ok
		}
		return ok
	}
	send := func(to jid.JID) {
		if sent[to.String()] || sent[to.Bare().String()] || !mayGet(to) {
			return
		}
		sent[to.String()] = true
		msg := &stanza.Stanza{Kind: stanza.KindMessage, Type: "headline", ID: m.id(), From: svc.addr, To: to}
		msg.Append(stanza.NewElement(NSEvent, "event").Append(ev.Copy()))
		m.bus.Send(ctx, msg)
	}
	for _, s := range subs {
		if j, err := jid.Parse(s); err == nil {
			send(j)
		}
	}
	if !svc.pep {
		return
	}
	want := n.Name + "+notify"
	for _, e := range m.pres.entries(svc.addr) {
		if e.ref.zero() {
			continue
		}
		if feats, ok := m.caps.lookup(e.ref, e.jid); ok && feats[want] {
			send(e.jid)
		}
	}
}

// sendLastAll sends target the last item of every node of the account
// owner that target wants (+notify) and may see.
func (m *Module) sendLastAll(ctx context.Context, owner, target jid.JID, feats map[string]bool) {
	svc := service{addr: owner, pep: true}
	nodes, err := m.store.Nodes(ctx, svc.key())
	if err != nil {
		m.log.WithError(err).Error("reading PEP nodes")
		return
	}
	for _, n := range nodes {
		if n.Config.SendLast != SendOnSubAndPre || !feats[n.Name+"+notify"] {
			continue
		}
		if ok, _, _ := m.access(ctx, n, target); ok {
			m.sendLast(ctx, svc, n, target)
		}
	}
}

// sendLast sends target the newest item of n, if any.
func (m *Module) sendLast(ctx context.Context, svc service, n Node, target jid.JID) {
	items, err := m.store.Items(ctx, svc.key(), n.Name, 1, nil)
	if err != nil || len(items) == 0 {
		if err != nil {
			m.log.WithError(err).Error("reading last pubsub item")
		}
		return
	}
	el, err := decode(items[0].XML)
	if err != nil {
		m.log.WithError(err).Error("stored pubsub item is not XML")
		return
	}
	item := stanza.NewElement(NSEvent, "item", "id", items[0].ID)
	if n.Config.DeliverPayloads {
		item.Append(el)
	}
	msg := &stanza.Stanza{Kind: stanza.KindMessage, Type: "headline", ID: m.id(), From: svc.addr, To: target}
	msg.Append(stanza.NewElement(NSEvent, "event").Append(stanza.NewElement(NSEvent, "items", "node", n.Name).Append(item)))
	m.bus.Send(ctx, msg)
}

// decode parses a stored element.
func decode(b []byte) (*stanza.Element, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return stanza.ReadElement(d, se.Copy())
		}
	}
}
