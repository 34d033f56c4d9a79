package pubsub

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Namespaces of the payloads PEP converts.
const (
	NSAvatarData     = "urn:xmpp:avatar:data"
	NSAvatarMetadata = "urn:xmpp:avatar:metadata"
	NSVCard          = "vcard-temp"
	NSVCardUpdate    = "vcard-temp:x:update"
	NSLegacyBookmark = "storage:bookmarks"
)

// privateBookmarksKey is the XEP-0049 storage key of XEP-0048 bookmarks
// (xmpp/mod/private: "namespace localname").
const privateBookmarksKey = NSLegacyBookmark + " storage"

type mirrorKey struct{}

// noMirror marks a publication made while converting, so that it is not
// converted back.
func noMirror(ctx context.Context) context.Context { return context.WithValue(ctx, mirrorKey{}, true) }

func mirroring(ctx context.Context) bool { return ctx.Value(mirrorKey{}) != nil }

// afterPublish keeps the legacy forms in step with what was published.
func (m *Module) afterPublish(ctx context.Context, svc service, node, id string, payload *stanza.Element) {
	if mirroring(ctx) {
		return
	}
	switch node {
	case NSAvatarMetadata:
		m.avatarToVCard(ctx, svc.addr, payload)
	case NSBookmarks:
		m.bookmarksToPrivate(ctx, svc.addr)
	}
}

func (m *Module) afterRetract(ctx context.Context, svc service, node, id string) {
	if mirroring(ctx) {
		return
	}
	if node == NSBookmarks {
		m.bookmarksToPrivate(ctx, svc.addr)
	}
}

func (m *Module) forgetAvatar(svc service, node string) {
	if svc.pep && (node == NSAvatarMetadata || node == NSAvatarData) {
		m.avMu.Lock()
		delete(m.avatars, svc.addr.Localpart())
		m.avMu.Unlock()
	}
}

// publishInternal publishes on the account's behalf (conversions),
// creating the node with cfg if needed.
func (m *Module) publishInternal(ctx context.Context, owner jid.JID, node, id string, payload *stanza.Element, cfg Config) error {
	svc := service{addr: owner, pep: true}
	n, err := m.store.Node(ctx, svc.key(), node)
	if err != nil {
		n = Node{Service: svc.key(), Name: node, Owner: owner.String(), Config: cfg}
		if err := m.store.CreateNode(ctx, n); err != nil {
			if n, err = m.store.Node(ctx, svc.key(), node); err != nil {
				return err
			}
		}
	}
	blob := payload.AppendXML(nil, "", stanza.NSClient)
	if err := m.store.Publish(ctx, svc.key(), node, Item{ID: id, Publisher: owner.String(), XML: blob}, n.Config.MaxItems); err != nil {
		return err
	}
	m.forgetAvatar(svc, node)
	ev := stanza.NewElement(NSEvent, "items", "node", node).Append(stanza.NewElement(NSEvent, "item", "id", id).Append(payload))
	m.notify(ctx, svc, n, ev, nil)
	return nil
}

// avatarHash returns the id of the account's current PEP avatar ("" for
// none), cached.
func (m *Module) avatarHash(ctx context.Context, user string, owner jid.JID) string {
	m.avMu.Lock()
	h, ok := m.avatars[user]
	m.avMu.Unlock()
	if ok {
		return h
	}
	h = ""
	items, err := m.store.Items(ctx, owner.String(), NSAvatarMetadata, 1, nil)
	if err == nil && len(items) == 1 {
		if el, err := decode(items[0].XML); err == nil {
			if info := el.Child(NSAvatarMetadata, "info"); info != nil {
				h = info.AttrValue("id")
			}
		}
	}
	m.avMu.Lock()
	m.avatars[user] = h
	m.avMu.Unlock()
	return h
}

// addAvatarHash adds the XEP-0153 photo hash of the PEP avatar to an
// account's presence that carries none (XEP-0398 §4), so contacts whose
// clients only know vCard avatars see it change.
func (m *Module) addAvatarHash(ctx context.Context, p *stanza.Stanza) {
	if p.Child(NSVCardUpdate, "x") != nil {
		return
	}
	owner := p.From.Bare()
	if h := m.avatarHash(ctx, owner.Localpart(), owner); h != "" {
		p.Append(stanza.NewElement(NSVCardUpdate, "x").Append(stanza.NewElement(NSVCardUpdate, "photo").AppendText(h)))
	}
}

// avatarToVCard copies a newly published avatar into the account's
// vCard PHOTO (XEP-0398 §3); an empty metadata (avatar disabled) removes
// the PHOTO.
func (m *Module) avatarToVCard(ctx context.Context, owner jid.JID, meta *stanza.Element) {
	user := owner.Localpart()
	var info *stanza.Element
	for _, e := range meta.Elements() {
		if e.Name.Local == "info" && e.AttrValue("url") == "" {
			info = e
			break
		}
	}
	var photo *stanza.Element
	if info != nil {
		items, err := m.store.Items(ctx, owner.String(), NSAvatarData, 0, []string{info.AttrValue("id")})
		if err != nil || len(items) != 1 {
			// The data is not (yet) in PEP: nothing to convert.
			return
		}
		data, err := decode(items[0].XML)
		if err != nil {
			return
		}
		photo = stanza.NewElement(NSVCard, "PHOTO")
		if t := info.AttrValue("type"); t != "" {
			photo.Append(stanza.NewElement(NSVCard, "TYPE").AppendText(t))
		}
		photo.Append(stanza.NewElement(NSVCard, "BINVAL").AppendText(strings.TrimSpace(data.Text())))
	}
	b, err := m.db.VCard(ctx, user)
	if err != nil {
		m.log.WithError(err).WithField("user", user).Error("reading vCard for avatar conversion")
		return
	}
	v := stanza.NewElement(NSVCard, "vCard")
	if len(b) > 0 {
		if v, err = decode(b); err != nil {
			m.log.WithError(err).WithField("user", user).Error("stored vCard is not XML")
			return
		}
	}
	v.RemoveChildren(NSVCard, "PHOTO")
	if photo != nil {
		v.Append(photo)
	}
	var out []byte
	if len(v.Elements()) > 0 {
		out = v.AppendXML(nil, "", stanza.NSClient)
	}
	if err := m.db.SetVCard(ctx, user, out); err != nil {
		m.log.WithError(err).WithField("user", user).Error("storing vCard for avatar conversion")
	}
}

// vcardToPEP publishes the PHOTO of a vCard the account sets as its PEP
// avatar (XEP-0398 §3, the other direction). The vCard itself is stored
// by the vcard module afterwards.
func (m *Module) vcardToPEP(ctx context.Context, env *router.Envelope, v *stanza.Element) {
	st := env.Stanza
	owner := st.To.Bare()
	if env.Src.Zone != router.ZoneLocal || !st.From.Bare().Equal(owner) {
		return
	}
	ctx = noMirror(ctx)
	photo := v.Child(NSVCard, "PHOTO")
	current := m.avatarHash(ctx, owner.Localpart(), owner)
	if photo == nil || photo.Child(NSVCard, "BINVAL") == nil {
		if current != "" {
			if err := m.publishInternal(ctx, owner, NSAvatarMetadata, "current", stanza.NewElement(NSAvatarMetadata, "metadata"), pepDefaults()); err != nil {
				m.log.WithError(err).Error("clearing PEP avatar")
			}
		}
		return
	}
	b64 := strings.Join(strings.Fields(photo.ChildText(NSVCard, "BINVAL")), "")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) == 0 {
		return
	}
	if len(b64) > m.cfg.MaxItemBytes {
		return
	}
	sum := sha1.Sum(raw)
	id := hex.EncodeToString(sum[:])
	if id == current {
		return
	}
	typ := photo.ChildText(NSVCard, "TYPE")
	if typ == "" {
		typ = "image/png"
	}
	cfg := pepDefaults()
	if err := m.publishInternal(ctx, owner, NSAvatarData, id, stanza.NewElement(NSAvatarData, "data").AppendText(b64), cfg); err != nil {
		m.log.WithError(err).Error("publishing vCard avatar to PEP")
		return
	}
	meta := stanza.NewElement(NSAvatarMetadata, "metadata").Append(
		stanza.NewElement(NSAvatarMetadata, "info", "id", id, "bytes", strconv.Itoa(len(raw)), "type", typ))
	if err := m.publishInternal(ctx, owner, NSAvatarMetadata, id, meta, cfg); err != nil {
		m.log.WithError(err).Error("publishing vCard avatar metadata to PEP")
	}
}

// bookmarksConfig is how XEP-0402 §3 wants the bookmarks node set up.
func (m *Module) bookmarksConfig() Config {
	c := pepDefaults()
	c.AccessModel = AccessWhitelist
	c.MaxItems = m.cfg.MaxItems
	c.SendLast = SendNever
	return c
}

// bookmarksToPrivate writes the account's XEP-0402 bookmarks to private
// XML storage as XEP-0048 bookmarks (XEP-0402 §5.2), for old clients.
func (m *Module) bookmarksToPrivate(ctx context.Context, owner jid.JID) {
	items, err := m.store.Items(ctx, owner.String(), NSBookmarks, 0, nil)
	if err != nil {
		m.log.WithError(err).Error("reading bookmarks")
		return
	}
	out := stanza.NewElement(NSLegacyBookmark, "storage")
	for _, it := range items {
		c, err := decode(it.XML)
		if err != nil || c.Name.Local != "conference" {
			continue
		}
		if _, err := jid.Parse(it.ID); err != nil {
			continue
		}
		lc := stanza.NewElement(NSLegacyBookmark, "conference", "jid", it.ID)
		if n := c.AttrValue("name"); n != "" {
			lc.SetAttr("name", n)
		}
		if a := c.AttrValue("autojoin"); a == "true" || a == "1" {
			lc.SetAttr("autojoin", "true")
		}
		if n := c.ChildText(NSBookmarks, "nick"); n != "" {
			lc.Append(stanza.NewElement(NSLegacyBookmark, "nick").AppendText(n))
		}
		if p := c.ChildText(NSBookmarks, "password"); p != "" {
			lc.Append(stanza.NewElement(NSLegacyBookmark, "password").AppendText(p))
		}
		out.Append(lc)
	}
	if err := m.db.SetPrivate(ctx, owner.Localpart(), privateBookmarksKey, out.AppendXML(nil, "", stanza.NSClient)); err != nil {
		m.log.WithError(err).Error("storing XEP-0048 bookmarks")
	}
}

// privateBookmarks mirrors XEP-0048 bookmarks an old client stores in
// private XML into XEP-0402 items (one per room), so new clients see
// them; rooms no longer listed are retracted. The private module stores
// the element itself afterwards.
func (m *Module) privateBookmarks(ctx context.Context, env *router.Envelope, q *stanza.Element) {
	st := env.Stanza
	owner := st.To.Bare()
	storage := q.Child(NSLegacyBookmark, "storage")
	if storage == nil || env.Src.Zone != router.ZoneLocal || !st.From.Bare().Equal(owner) {
		return
	}
	ctx = noMirror(ctx)
	keep := map[string]bool{}
	for _, c := range storage.Elements() {
		if c.Name.Local != "conference" {
			continue
		}
		room, err := jid.Parse(c.AttrValue("jid"))
		if err != nil || room.Localpart() == "" {
			continue
		}
		id := room.Bare().String()
		keep[id] = true
		conf := stanza.NewElement(NSBookmarks, "conference")
		if n := c.AttrValue("name"); n != "" {
			conf.SetAttr("name", n)
		}
		if a := c.AttrValue("autojoin"); a == "true" || a == "1" {
			conf.SetAttr("autojoin", "true")
		}
		if n := c.ChildText("", "nick"); n != "" {
			conf.Append(stanza.NewElement(NSBookmarks, "nick").AppendText(n))
		}
		if p := c.ChildText("", "password"); p != "" {
			conf.Append(stanza.NewElement(NSBookmarks, "password").AppendText(p))
		}
		if err := m.publishInternal(ctx, owner, NSBookmarks, id, conf, m.bookmarksConfig()); err != nil {
			m.log.WithError(err).Error("converting XEP-0048 bookmarks")
			return
		}
	}
	svc := service{addr: owner, pep: true}
	items, err := m.store.Items(ctx, svc.key(), NSBookmarks, 0, nil)
	if err != nil {
		return
	}
	n, err := m.store.Node(ctx, svc.key(), NSBookmarks)
	if err != nil {
		return
	}
	for _, it := range items {
		if keep[it.ID] {
			continue
		}
		if ok, err := m.store.Retract(ctx, svc.key(), NSBookmarks, it.ID); err == nil && ok {
			ev := stanza.NewElement(NSEvent, "items", "node", NSBookmarks).Append(stanza.NewElement(NSEvent, "retract", "id", it.ID))
			m.notify(ctx, svc, n, ev, nil)
		}
	}
}
