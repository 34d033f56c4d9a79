// Package roster implements roster management (RFC 6121 §2): get with
// versioning (XEP-0237), set and remove with pushes to every interested
// resource. The presence module drives subscription states through Update.
//
// It must not import c2s, s2s, transports or other modules.
package roster

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/hook"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// Namespaces and stream features.
const (
	NS            = "jabber:iq:roster"
	NSVer         = "urn:xmpp:features:rosterver"
	NSPreApproval = "urn:xmpp:features:pre-approval"
)

// Limits on what a client may store in one item.
const (
	MaxName   = 1024
	MaxGroups = 64
	MaxGroup  = 1024
	MaxItems  = 5000
)

// Store is the roster storage this module needs.
type Store interface {
	Roster(ctx context.Context, user string) ([]storage.RosterItem, uint64, error)
	RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, bool, error)
	PutRosterItem(ctx context.Context, user string, it storage.RosterItem) (uint64, error)
	DeleteRosterItem(ctx context.Context, user, contact string) (uint64, error)
}

// Module is the roster module.
type Module struct {
	bus   *hook.Bus
	store Store
	log   logrus.FieldLogger
	ids   atomic.Uint64
	seed  maphash.Seed
	locks [64]sync.Mutex
}

// New returns the module.
func New(store Store, log logrus.FieldLogger) *Module {
	return &Module{store: store, log: log, seed: maphash.MakeSeed()}
}

// Register attaches the module to the bus.
func (m *Module) Register(bus *hook.Bus) {
	m.bus = bus
	bus.HandleIQ(hook.AddrBare, NS, "query", m.handleIQ)
	bus.AddFeature(hook.AddrHost, NS)
}

// StreamFeatures are the post-auth stream features the module offers.
func StreamFeatures() []*stanza.Element {
	return []*stanza.Element{stanza.NewElement(NSVer, "ver"), stanza.NewElement(NSPreApproval, "sub")}
}

// Lock serialises read-modify-write of one user's roster; subscription
// handling and roster sets for the same user must not interleave.
func (m *Module) Lock(user string) func() {
	mu := &m.locks[maphash.String(m.seed, user)%uint64(len(m.locks))]
	mu.Lock()
	return mu.Unlock
}

// Visible reports whether an item belongs in the roster the client sees:
// RFC 6121 §3.1.3 keeps a bare inbound request out of the roster until the
// user acts on it.
func Visible(it storage.RosterItem) bool {
	return !(it.Subscription == storage.SubNone && !it.Ask && !it.Approved && it.Name == "" && len(it.Groups) == 0)
}

func (m *Module) handleIQ(ctx context.Context, env *router.Envelope) *stanza.Stanza {
	st := env.Stanza
	if !st.From.Bare().Equal(st.To.Bare()) {
		return stanza.Bounce(st, stanza.Forbidden, "a roster belongs to its owner")
	}
	q := st.Payload()
	if st.Type == "get" {
		return m.get(ctx, st, q)
	}
	return m.set(ctx, st, q)
}

func (m *Module) get(ctx context.Context, st *stanza.Stanza, q *stanza.Element) *stanza.Stanza {
	if len(q.Elements()) > 0 {
		return stanza.Bounce(st, stanza.BadRequest, "a roster get carries no items")
	}
	user := st.From.Localpart()
	if s := m.bus.Sessions().Get(st.From); s != nil {
		s.SetInterested()
	}
	items, ver, err := m.store.Roster(ctx, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading roster")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	verStr := strconv.FormatUint(ver, 10)
	// XEP-0237 §4: same version → empty result; changes come as pushes.
	if q.Attr != nil && hasAttr(q, "ver") && q.AttrValue("ver") == verStr {
		return st.Result()
	}
	out := stanza.NewElement(NS, "query", "ver", verStr)
	for _, it := range items {
		if Visible(it) {
			out.Append(ItemElement(it))
		}
	}
	return st.Result(out)
}

func hasAttr(e *stanza.Element, local string) bool {
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return true
		}
	}
	return false
}

func (m *Module) set(ctx context.Context, st *stanza.Stanza, q *stanza.Element) *stanza.Stanza {
	items := q.Elements()
	if len(items) != 1 || items[0].Name.Local != "item" || items[0].Name.Space != NS {
		return stanza.Bounce(st, stanza.BadRequest, "a roster set carries exactly one item")
	}
	el := items[0]
	contact, err := jid.Parse(el.AttrValue("jid"))
	if err != nil || el.AttrValue("jid") == "" {
		return stanza.Bounce(st, stanza.JIDMalformed, "the item's jid is not valid")
	}
	contact = contact.Bare()
	user := st.From.Localpart()
	owner := st.From.Bare()
	// Never route while holding the lock (see presence): removal's
	// presence goes out after unlocking.
	var cancel []*stanza.Stanza
	defer func() {
		for _, p := range cancel {
			m.bus.Send(ctx, p)
		}
	}()
	unlock := m.Lock(user)
	defer unlock()
	cur, exists, err := m.store.RosterItem(ctx, user, contact.String())
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading roster item")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	if el.AttrValue("subscription") == "remove" {
		if !exists {
			return stanza.Bounce(st, stanza.ItemNotFound, "")
		}
		// RFC 6121 §2.5.2: cancel both directions before the item goes.
		if cur.Subscription == storage.SubTo || cur.Subscription == storage.SubBoth || cur.Ask {
			cancel = append(cancel, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribe", From: owner, To: contact})
		}
		if cur.Subscription == storage.SubFrom || cur.Subscription == storage.SubBoth || cur.PendingIn {
			cancel = append(cancel, &stanza.Stanza{Kind: stanza.KindPresence, Type: "unsubscribed", From: owner, To: contact})
		}
		ver, err := m.store.DeleteRosterItem(ctx, user, contact.String())
		if err != nil {
			cancel = nil
			m.log.WithError(err).WithField("user", user).Error("removing roster item")
			return stanza.Bounce(st, stanza.InternalServerError, "")
		}
		m.push(ctx, owner, storage.RosterItem{JID: contact.String(), Subscription: "remove"}, ver)
		return st.Result()
	}
	name := el.AttrValue("name")
	if utf8.RuneCountInString(name) > MaxName {
		return stanza.Bounce(st, stanza.NotAcceptable, "the item name is too long")
	}
	var groups []string
	seen := map[string]bool{}
	for _, g := range el.Elements() {
		if g.Name.Local != "group" || g.Name.Space != NS {
			continue
		}
		name := g.Text()
		switch {
		case name == "":
			return stanza.Bounce(st, stanza.NotAcceptable, "empty group name")
		case utf8.RuneCountInString(name) > MaxGroup:
			return stanza.Bounce(st, stanza.NotAcceptable, "group name too long")
		case seen[name]:
			return stanza.Bounce(st, stanza.BadRequest, "duplicate group "+name)
		}
		seen[name] = true
		groups = append(groups, name)
	}
	if len(groups) > MaxGroups {
		return stanza.Bounce(st, stanza.NotAcceptable, "too many groups")
	}
	if !exists {
		all, _, err := m.store.Roster(ctx, user)
		if err == nil && len(all) >= MaxItems {
			return stanza.Bounce(st, stanza.NotAllowed, fmt.Sprintf("the roster is full (%d items)", MaxItems))
		}
		cur = storage.RosterItem{JID: contact.String(), Subscription: storage.SubNone}
	}
	// The subscription and ask attributes of a client set are ignored
	// (RFC 6121 §2.1.2.5): only presence changes them.
	cur.Name, cur.Groups = name, groups
	ver, err := m.store.PutRosterItem(ctx, user, cur)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("storing roster item")
		return stanza.Bounce(st, stanza.InternalServerError, "")
	}
	m.push(ctx, owner, cur, ver)
	return st.Result()
}

// Update stores it and pushes it; callers hold Lock(user).
func (m *Module) Update(ctx context.Context, owner jid.JID, it storage.RosterItem) error {
	ver, err := m.store.PutRosterItem(ctx, owner.Localpart(), it)
	if err != nil {
		return fmt.Errorf("roster: update %s: %w", it.JID, err)
	}
	if Visible(it) {
		m.push(ctx, owner, it, ver)
	}
	return nil
}

// Remove deletes the owner's item for contact and pushes the removal. Unlike
// a client's removal it sends no unsubscribe/unsubscribed: a privileged
// entity (XEP-0356) that removes a contact manages the subscription itself.
// It returns storage.ErrNotFound (wrapped) when there is no such item.
func (m *Module) Remove(ctx context.Context, owner, contact jid.JID) error {
	unlock := m.Lock(owner.Localpart())
	defer unlock()
	c := contact.Bare().String()
	ver, err := m.store.DeleteRosterItem(ctx, owner.Localpart(), c)
	if err != nil {
		return fmt.Errorf("roster: remove %s: %w", c, err)
	}
	m.push(ctx, owner, storage.RosterItem{JID: c, Subscription: "remove"}, ver)
	return nil
}

// Item returns the owner's item for contact (bare), if any.
func (m *Module) Item(ctx context.Context, owner jid.JID, contact jid.JID) (storage.RosterItem, bool, error) {
	return m.store.RosterItem(ctx, owner.Localpart(), contact.Bare().String())
}

// Items returns the owner's roster.
func (m *Module) Items(ctx context.Context, owner jid.JID) ([]storage.RosterItem, error) {
	items, _, err := m.store.Roster(ctx, owner.Localpart())
	return items, err
}

// push sends a roster push to every resource that requested the roster
// (RFC 6121 §2.1.6).
func (m *Module) push(ctx context.Context, owner jid.JID, it storage.RosterItem, ver uint64) {
	for _, s := range m.bus.Sessions().Resources(owner) {
		if !s.Interested() {
			continue
		}
		q := stanza.NewElement(NS, "query", "ver", strconv.FormatUint(ver, 10))
		q.Append(ItemElement(it))
		_ = s.Send(&stanza.Stanza{
			Kind: stanza.KindIQ, Type: "set", ID: "push" + strconv.FormatUint(m.ids.Add(1), 10),
			From: owner, To: s.JID, Children: []stanza.Node{{El: q}},
		})
	}
}

// ItemElement renders one roster item.
func ItemElement(it storage.RosterItem) *stanza.Element {
	sub := string(it.Subscription)
	if sub == "" {
		sub = string(storage.SubNone)
	}
	el := stanza.NewElement(NS, "item", "jid", it.JID, "subscription", sub)
	if it.Name != "" {
		el.SetAttr("name", it.Name)
	}
	if it.Ask && sub != "remove" {
		el.SetAttr("ask", "subscribe")
	}
	if it.Approved && sub != "remove" {
		el.SetAttr("approved", "true")
	}
	for _, g := range it.Groups {
		el.Append(stanza.NewElement(NS, "group").AppendText(g))
	}
	return el
}
