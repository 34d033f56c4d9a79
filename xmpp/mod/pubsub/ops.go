package pubsub

import (
	"context"
	"errors"
	"strconv"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
)

// handle answers a pubsub or pubsub#owner request to svc.
func (m *Module) handle(ctx context.Context, env *router.Envelope, svc service) *stanza.Stanza {
	st := env.Stanza
	p := st.Payload()
	kids := p.Elements()
	if len(kids) == 0 {
		return pubsubError(st, stanza.BadRequest, "", "empty pubsub request")
	}
	op := kids[0]
	if p.Name.Space == NSOwner {
		return m.ownerOp(ctx, env, svc, op)
	}
	switch {
	case st.Type == "set" && op.Name.Local == "publish":
		return m.publish(ctx, env, svc, op, p.Child(NS, "publish-options"))
	case st.Type == "set" && op.Name.Local == "retract":
		return m.retract(ctx, env, svc, op)
	case st.Type == "set" && op.Name.Local == "create":
		return m.create(ctx, env, svc, op, p.Child(NS, "configure"))
	case st.Type == "set" && op.Name.Local == "subscribe":
		return m.subscribe(ctx, env, svc, op)
	case st.Type == "set" && op.Name.Local == "unsubscribe":
		return m.unsubscribe(ctx, env, svc, op)
	case st.Type == "get" && op.Name.Local == "items":
		return m.items(ctx, env, svc, op)
	case st.Type == "get" && op.Name.Local == "subscriptions":
		return m.ownSubscriptions(ctx, env, svc, op)
	case st.Type == "get" && op.Name.Local == "affiliations":
		return m.ownAffiliations(ctx, env, svc, op)
	case st.Type == "get" && op.Name.Local == "default":
		return m.defaultConfig(st, svc, NS)
	}
	return pubsubError(st, stanza.FeatureNotImplemented, "unsupported", op.Name.Local)
}

func (m *Module) ownerOp(ctx context.Context, env *router.Envelope, svc service, op *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	if st.Type == "get" && op.Name.Local == "default" {
		return m.defaultConfig(st, svc, NSOwner)
	}
	name := op.AttrValue("node")
	if name == "" {
		return pubsubError(st, stanza.BadRequest, "nodeid-required", "")
	}
	n, errReply := m.node(ctx, st, svc, name)
	if errReply != nil {
		return errReply
	}
	if !m.isOwner(ctx, n, st.From) {
		return pubsubError(st, stanza.Forbidden, "", "only the node's owner may do this")
	}
	switch {
	case op.Name.Local == "configure" && st.Type == "get":
		c := stanza.NewElement(NSOwner, "configure", "node", name).Append(n.Config.form(m.cfg.MaxItems))
		return st.Result(stanza.NewElement(NSOwner, "pubsub").Append(c))
	case op.Name.Local == "configure" && st.Type == "set":
		x := op.Child(NSData, "x")
		if x == nil {
			return pubsubError(st, stanza.BadRequest, "", "configure without a form")
		}
		if x.AttrValue("type") == "cancel" {
			return st.Result()
		}
		fields, _ := formFields(x)
		cfg := n.Config
		if err := cfg.apply(fields, m.cfg.MaxItems, true); err != nil {
			return pubsubError(st, stanza.NotAcceptable, "", err.Error())
		}
		if err := m.store.Configure(ctx, svc.key(), name, cfg); err != nil {
			return m.internal(st, err)
		}
		m.forgetAvatar(svc, name)
		return st.Result()
	case op.Name.Local == "delete" && st.Type == "set":
		subs, err := m.store.DeleteNode(ctx, svc.key(), name)
		if err != nil {
			return m.internal(st, err)
		}
		m.forgetAvatar(svc, name)
		if n.Config.NotifyDelete {
			m.notify(ctx, svc, n, stanza.NewElement(NSEvent, "delete", "node", name), subs)
		}
		return st.Result()
	case op.Name.Local == "purge" && st.Type == "set":
		if err := m.store.Purge(ctx, svc.key(), name); err != nil {
			return m.internal(st, err)
		}
		m.forgetAvatar(svc, name)
		m.notify(ctx, svc, n, stanza.NewElement(NSEvent, "purge", "node", name), nil)
		return st.Result()
	case op.Name.Local == "affiliations" && st.Type == "get":
		affs, err := m.store.Affiliations(ctx, svc.key(), name)
		if err != nil {
			return m.internal(st, err)
		}
		out := stanza.NewElement(NSOwner, "affiliations", "node", name)
		out.Append(stanza.NewElement(NSOwner, "affiliation", "jid", n.Owner, "affiliation", AffOwner))
		for j, a := range affs {
			if j != n.Owner {
				out.Append(stanza.NewElement(NSOwner, "affiliation", "jid", j, "affiliation", a))
			}
		}
		return st.Result(stanza.NewElement(NSOwner, "pubsub").Append(out))
	case op.Name.Local == "affiliations" && st.Type == "set":
		for _, a := range op.Elements() {
			j, err := jid.Parse(a.AttrValue("jid"))
			aff := a.AttrValue("affiliation")
			switch {
			case err != nil:
				return pubsubError(st, stanza.JIDMalformed, "", "")
			case aff != AffOwner && aff != AffPublisher && aff != AffMember && aff != AffNone && aff != AffOutcast:
				return pubsubError(st, stanza.BadRequest, "", "unknown affiliation "+aff)
			case j.Bare().String() == n.Owner:
				return pubsubError(st, stanza.NotAcceptable, "", "the node's creator stays its owner")
			}
			if err := m.store.SetAffiliation(ctx, svc.key(), name, j.Bare().String(), aff); err != nil {
				return m.internal(st, err)
			}
		}
		return st.Result()
	case op.Name.Local == "subscriptions" && st.Type == "get":
		subs, err := m.store.Subscribers(ctx, svc.key(), name)
		if err != nil {
			return m.internal(st, err)
		}
		out := stanza.NewElement(NSOwner, "subscriptions", "node", name)
		for _, j := range subs {
			out.Append(stanza.NewElement(NSOwner, "subscription", "jid", j, "subscription", "subscribed"))
		}
		return st.Result(stanza.NewElement(NSOwner, "pubsub").Append(out))
	}
	return pubsubError(st, stanza.FeatureNotImplemented, "unsupported", op.Name.Local)
}

func (m *Module) defaultConfig(st *stanza.Stanza, svc service, ns string) *stanza.Stanza {
	c := serviceDefaults()
	if svc.pep {
		c = pepDefaults()
	}
	return st.Result(stanza.NewElement(ns, "pubsub").Append(stanza.NewElement(ns, "default").Append(c.form(m.cfg.MaxItems))))
}

func (m *Module) internal(st *stanza.Stanza, err error) *stanza.Stanza {
	m.log.WithError(err).WithField("from", st.From.String()).Error("pubsub store")
	return stanza.Bounce(st, stanza.InternalServerError, "")
}

// node loads a node, or returns the error reply.
func (m *Module) node(ctx context.Context, st *stanza.Stanza, svc service, name string) (Node, *stanza.Stanza) {
	n, err := m.store.Node(ctx, svc.key(), name)
	if errors.Is(err, ErrNoNode) {
		return n, stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	if err != nil {
		return n, m.internal(st, err)
	}
	return n, nil
}

// affiliation returns from's affiliation with n.
func (m *Module) affiliation(ctx context.Context, n Node, from jid.JID) string {
	b := from.Bare().String()
	if b == n.Owner {
		return AffOwner
	}
	a, err := m.store.Affiliation(ctx, n.Service, n.Name, b)
	if err != nil {
		m.log.WithError(err).Error("reading pubsub affiliation")
		return AffOutcast
	}
	return a
}

func (m *Module) isOwner(ctx context.Context, n Node, from jid.JID) bool {
	return m.affiliation(ctx, n, from) == AffOwner
}

// access reports whether who may see n's items, and the pubsub#errors
// condition if not.
func (m *Module) access(ctx context.Context, n Node, who jid.JID) (bool, stanza.Condition, string) {
	aff := m.affiliation(ctx, n, who)
	switch {
	case aff == AffOwner || aff == AffPublisher:
		return true, "", ""
	case aff == AffOutcast:
		return false, stanza.Forbidden, ""
	}
	switch n.Config.AccessModel {
	case AccessOpen:
		return true, "", ""
	case AccessPresence:
		owner, err := jid.Parse(n.Owner)
		if err != nil || !m.bus.IsHost(owner.Domainpart()) {
			return false, stanza.NotAuthorized, "presence-subscription-required"
		}
		it, ok, err := m.db.RosterItem(ctx, owner.Localpart(), who.Bare().String())
		if err != nil {
			m.log.WithError(err).Error("reading roster for pubsub access")
			return false, stanza.NotAuthorized, "presence-subscription-required"
		}
		if ok && (it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth) {
			return true, "", ""
		}
		return false, stanza.NotAuthorized, "presence-subscription-required"
	}
	// whitelist
	if aff == AffMember {
		return true, "", ""
	}
	return false, stanza.NotAllowed, "closed-node"
}

// mayCreate reports whether from may create nodes on svc.
func (m *Module) mayCreate(env *router.Envelope, svc service) bool {
	from := env.Stanza.From
	if svc.pep {
		return env.Src.Zone == router.ZoneLocal && from.Bare().Equal(svc.addr)
	}
	return m.cfg.Create == "local" && env.Src.Zone == router.ZoneLocal && from.Localpart() != "" && m.bus.IsHost(from.Domainpart())
}

// createNode makes a node owned by from with cfg, checking the per-owner
// node limit.
func (m *Module) createNode(ctx context.Context, st *stanza.Stanza, svc service, name string, cfg Config) (Node, *stanza.Stanza) {
	owner := st.From.Bare().String()
	count, err := m.store.CountOwned(ctx, svc.key(), owner)
	if err != nil {
		return Node{}, m.internal(st, err)
	}
	if count >= m.cfg.MaxNodes {
		return Node{}, pubsubError(st, stanza.NotAllowed, "max-nodes-exceeded", "at most "+strconv.Itoa(m.cfg.MaxNodes)+" nodes")
	}
	n := Node{Service: svc.key(), Name: name, Owner: owner, Config: cfg}
	if err := m.store.CreateNode(ctx, n); errors.Is(err, ErrNodeExists) {
		return n, pubsubError(st, stanza.Conflict, "", "the node exists")
	} else if err != nil {
		return n, m.internal(st, err)
	}
	return n, nil
}

func (m *Module) create(ctx context.Context, env *router.Envelope, svc service, op, configure *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	if !m.mayCreate(env, svc) {
		return pubsubError(st, stanza.Forbidden, "", "you may not create nodes here")
	}
	name := op.AttrValue("node")
	instant := name == ""
	if instant {
		name = m.id()
	}
	cfg := serviceDefaults()
	if svc.pep {
		cfg = pepDefaults()
	}
	if configure != nil {
		if x := configure.Child(NSData, "x"); x != nil {
			fields, _ := formFields(x)
			if err := cfg.apply(fields, m.cfg.MaxItems, true); err != nil {
				return pubsubError(st, stanza.NotAcceptable, "", err.Error())
			}
		}
	}
	if _, e := m.createNode(ctx, st, svc, name, cfg); e != nil {
		return e
	}
	if instant {
		return st.Result(stanza.NewElement(NS, "pubsub").Append(stanza.NewElement(NS, "create", "node", name)))
	}
	return st.Result()
}

func (m *Module) publish(ctx context.Context, env *router.Envelope, svc service, op, options *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	name := op.AttrValue("node")
	if name == "" {
		return pubsubError(st, stanza.BadRequest, "nodeid-required", "")
	}
	var items []*stanza.Element
	for _, e := range op.Elements() {
		if e.Name.Local == "item" {
			items = append(items, e)
		}
	}
	if len(items) != 1 {
		return pubsubError(st, stanza.BadRequest, "item-required", "publish exactly one item")
	}
	item := items[0]
	payloads := item.Elements()
	if len(payloads) != 1 {
		return pubsubError(st, stanza.BadRequest, "invalid-payload", "an item carries exactly one payload element")
	}
	payload := payloads[0]
	blob := payload.AppendXML(nil, "", stanza.NSClient)
	if len(blob) > m.cfg.MaxItemBytes {
		return pubsubError(st, stanza.NotAcceptable, "payload-too-big", "items are limited to "+strconv.Itoa(m.cfg.MaxItemBytes)+" bytes")
	}
	var opts map[string][]string
	if options != nil {
		if x := options.Child(NSData, "x"); x != nil {
			opts, _ = formFields(x)
		}
	}
	n, err := m.store.Node(ctx, svc.key(), name)
	switch {
	case errors.Is(err, ErrNoNode):
		// Auto-create (XEP-0163 §3, XEP-0060 §7.1.4) with the options.
		if !m.mayCreate(env, svc) {
			return stanza.Bounce(st, stanza.ItemNotFound, "")
		}
		cfg := serviceDefaults()
		if svc.pep {
			cfg = pepDefaults()
		}
		if err := cfg.apply(opts, m.cfg.MaxItems, false); err != nil {
			return pubsubError(st, stanza.Conflict, "precondition-not-met", err.Error())
		}
		var e *stanza.Stanza
		if n, e = m.createNode(ctx, st, svc, name, cfg); e != nil {
			return e
		}
	case err != nil:
		return m.internal(st, err)
	default:
		if opts != nil {
			if err := n.Config.meets(opts, m.cfg.MaxItems); err != nil {
				return pubsubError(st, stanza.Conflict, "precondition-not-met", "the node's configuration differs from the publish options")
			}
		}
	}
	aff := m.affiliation(ctx, n, st.From)
	if aff != AffOwner && aff != AffPublisher && (n.Config.PublishModel != "open" || svc.pep || aff == AffOutcast) {
		return pubsubError(st, stanza.Forbidden, "", "you may not publish to this node")
	}
	id := item.AttrValue("id")
	if id == "" {
		id = m.id()
	}
	if n.Config.PersistItems {
		if err := m.store.Publish(ctx, svc.key(), name, Item{ID: id, Publisher: st.From.Bare().String(), XML: blob}, n.Config.MaxItems); err != nil {
			return m.internal(st, err)
		}
	}
	ev := stanza.NewElement(NSEvent, "items", "node", name)
	evItem := stanza.NewElement(NSEvent, "item", "id", id)
	if n.Config.DeliverPayloads {
		evItem.Append(payload)
	}
	ev.Append(evItem)
	m.notify(ctx, svc, n, ev, nil)
	if svc.pep {
		m.afterPublish(ctx, svc, name, id, payload)
	}
	res := stanza.NewElement(NS, "publish", "node", name).Append(stanza.NewElement(NS, "item", "id", id))
	return st.Result(stanza.NewElement(NS, "pubsub").Append(res))
}

func (m *Module) retract(ctx context.Context, env *router.Envelope, svc service, op *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	name := op.AttrValue("node")
	if name == "" {
		return pubsubError(st, stanza.BadRequest, "nodeid-required", "")
	}
	item := op.Child(NS, "item")
	if item == nil || item.AttrValue("id") == "" {
		return pubsubError(st, stanza.BadRequest, "item-required", "")
	}
	n, e := m.node(ctx, st, svc, name)
	if e != nil {
		return e
	}
	if aff := m.affiliation(ctx, n, st.From); aff != AffOwner && aff != AffPublisher {
		return pubsubError(st, stanza.Forbidden, "", "")
	}
	id := item.AttrValue("id")
	ok, err := m.store.Retract(ctx, svc.key(), name, id)
	if err != nil {
		return m.internal(st, err)
	}
	if !ok {
		return stanza.Bounce(st, stanza.ItemNotFound, "")
	}
	notify := op.AttrValue("notify")
	if notify == "1" || notify == "true" || n.Config.NotifyRetract {
		ev := stanza.NewElement(NSEvent, "items", "node", name).Append(stanza.NewElement(NSEvent, "retract", "id", id))
		m.notify(ctx, svc, n, ev, nil)
	}
	if svc.pep {
		m.afterRetract(ctx, svc, name, id)
	}
	return st.Result()
}

func (m *Module) items(ctx context.Context, env *router.Envelope, svc service, op *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	name := op.AttrValue("node")
	if name == "" {
		return pubsubError(st, stanza.BadRequest, "nodeid-required", "")
	}
	n, e := m.node(ctx, st, svc, name)
	if e != nil {
		return e
	}
	if ok, cond, app := m.access(ctx, n, st.From); !ok {
		return pubsubError(st, cond, app, "")
	}
	var ids []string
	for _, it := range op.Elements() {
		if it.Name.Local == "item" && it.AttrValue("id") != "" {
			ids = append(ids, it.AttrValue("id"))
		}
	}
	max := 0
	if s := op.AttrValue("max_items"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return pubsubError(st, stanza.BadRequest, "", "max_items must be a positive number")
		}
		max = v
	}
	items, err := m.store.Items(ctx, svc.key(), name, max, ids)
	if err != nil {
		return m.internal(st, err)
	}
	out := stanza.NewElement(NS, "items", "node", name)
	for _, it := range items {
		el, err := decode(it.XML)
		if err != nil {
			return m.internal(st, err)
		}
		out.Append(stanza.NewElement(NS, "item", "id", it.ID, "publisher", it.Publisher).Append(el))
	}
	return st.Result(stanza.NewElement(NS, "pubsub").Append(out))
}

func (m *Module) subscribe(ctx context.Context, env *router.Envelope, svc service, op *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	name := op.AttrValue("node")
	if name == "" {
		return pubsubError(st, stanza.BadRequest, "nodeid-required", "")
	}
	j, err := jid.Parse(op.AttrValue("jid"))
	if err != nil || !j.Bare().Equal(st.From.Bare()) {
		return pubsubError(st, stanza.BadRequest, "invalid-jid", "")
	}
	n, e := m.node(ctx, st, svc, name)
	if e != nil {
		return e
	}
	if ok, cond, app := m.access(ctx, n, st.From); !ok {
		return pubsubError(st, cond, app, "")
	}
	subid, err := m.store.Subscribe(ctx, svc.key(), name, j.String(), m.id())
	if err != nil {
		return m.internal(st, err)
	}
	res := stanza.NewElement(NS, "subscription", "node", name, "jid", j.String(), "subid", subid, "subscription", "subscribed")
	reply := st.Result(stanza.NewElement(NS, "pubsub").Append(res))
	if n.Config.SendLast != SendNever {
		// The reply goes first (XEP-0060 §6.1.7), then the last item.
		m.bus.Reply(ctx, env, reply)
		m.sendLast(ctx, svc, n, j)
		return nil
	}
	return reply
}

func (m *Module) unsubscribe(ctx context.Context, env *router.Envelope, svc service, op *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	name := op.AttrValue("node")
	if name == "" {
		return pubsubError(st, stanza.BadRequest, "nodeid-required", "")
	}
	j, err := jid.Parse(op.AttrValue("jid"))
	if err != nil || !j.Bare().Equal(st.From.Bare()) {
		return pubsubError(st, stanza.BadRequest, "invalid-jid", "")
	}
	if _, e := m.node(ctx, st, svc, name); e != nil {
		return e
	}
	ok, err := m.store.Unsubscribe(ctx, svc.key(), name, j.String())
	if err != nil {
		return m.internal(st, err)
	}
	if !ok {
		return pubsubError(st, stanza.UnexpectedRequest, "not-subscribed", "")
	}
	return st.Result()
}

func (m *Module) ownSubscriptions(ctx context.Context, env *router.Envelope, svc service, op *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	subs, err := m.store.SubscriptionsOf(ctx, svc.key(), st.From.Bare().String())
	if err != nil {
		return m.internal(st, err)
	}
	node := op.AttrValue("node")
	out := stanza.NewElement(NS, "subscriptions")
	for _, s := range subs {
		if node == "" || s.Node == node {
			out.Append(stanza.NewElement(NS, "subscription", "node", s.Node, "jid", s.JID, "subid", s.SubID, "subscription", "subscribed"))
		}
	}
	return st.Result(stanza.NewElement(NS, "pubsub").Append(out))
}

func (m *Module) ownAffiliations(ctx context.Context, env *router.Envelope, svc service, op *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	nodes, err := m.store.Nodes(ctx, svc.key())
	if err != nil {
		return m.internal(st, err)
	}
	want := op.AttrValue("node")
	out := stanza.NewElement(NS, "affiliations")
	for _, n := range nodes {
		if want != "" && n.Name != want {
			continue
		}
		if a := m.affiliation(ctx, n, st.From); a != AffNone {
			out.Append(stanza.NewElement(NS, "affiliation", "node", n.Name, "affiliation", a))
		}
	}
	return st.Result(stanza.NewElement(NS, "pubsub").Append(out))
}
