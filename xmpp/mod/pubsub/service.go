package pubsub

import (
	"context"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

// Deliver implements router.Deliverer for the pubsub service's domain:
// the composition root hosts it there (xmpp/server/services.go).
func (m *Module) Deliver(ctx context.Context, env *router.Envelope) error {
	st := env.Stanza
	if st.Kind != stanza.KindIQ {
		// Presence and messages to the service carry nothing for it.
		if st.Kind == stanza.KindMessage && st.Type != "error" && st.Type != "headline" && st.Type != "groupchat" {
			m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
		}
		return nil
	}
	if !st.IsRequest() {
		return nil
	}
	if st.To.Localpart() != "" || st.To.Resourcepart() != "" {
		m.bus.Bounce(ctx, env, stanza.ServiceUnavailable, "")
		return nil
	}
	p := st.Payload()
	if p == nil || len(st.Elements()) != 1 {
		m.bus.Bounce(ctx, env, stanza.BadRequest, "an iq request carries exactly one payload")
		return nil
	}
	svc := service{addr: st.To}
	var reply *stanza.Stanza
	switch {
	case p.Name.Local == "pubsub" && (p.Name.Space == NS || p.Name.Space == NSOwner):
		reply = m.handle(ctx, env, svc)
	case p.Name.Space == NSDiscoInfo && p.Name.Local == "query":
		reply = m.serviceInfo(ctx, env, svc, p)
	case p.Name.Space == NSDiscoItems && p.Name.Local == "query":
		reply = m.serviceItems(ctx, env, svc, p)
	default:
		reply = stanza.Bounce(st, stanza.ServiceUnavailable, "")
	}
	if reply != nil {
		m.bus.Reply(ctx, env, reply)
	}
	return nil
}

func (m *Module) serviceInfo(ctx context.Context, env *router.Envelope, svc service, q *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "service discovery is read-only")
	}
	if node := q.AttrValue("node"); node != "" {
		return m.discoNodeInfo(ctx, env, svc, node)
	}
	res := stanza.NewElement(NSDiscoInfo, "query")
	res.Append(stanza.NewElement(NSDiscoInfo, "identity", "category", "pubsub", "type", "service", "name", "Publish-Subscribe"))
	for _, f := range append([]string{NSDiscoInfo, NSDiscoItems}, pepFeatures...) {
		if f == NS+"#auto-subscribe" || f == NS+"#filtered-notifications" {
			continue // PEP only
		}
		res.Append(stanza.NewElement(NSDiscoInfo, "feature", "var", f))
	}
	return st.Result(res)
}

// serviceItems lists the nodes a requester may see, or a node's items.
func (m *Module) serviceItems(ctx context.Context, env *router.Envelope, svc service, q *stanza.Element) *stanza.Stanza {
	st := env.Stanza
	if node := q.AttrValue("node"); node != "" {
		return m.discoNodeItems(ctx, env, svc, node)
	}
	if st.Type != "get" {
		return stanza.Bounce(st, stanza.BadRequest, "service discovery is read-only")
	}
	nodes, err := m.store.Nodes(ctx, svc.key())
	if err != nil {
		return m.internal(st, err)
	}
	res := stanza.NewElement(NSDiscoItems, "query")
	for _, n := range nodes {
		if ok, _, _ := m.access(ctx, n, st.From); !ok {
			continue
		}
		it := stanza.NewElement(NSDiscoItems, "item", "jid", svc.key(), "node", n.Name)
		if n.Config.Title != "" {
			it.SetAttr("name", n.Config.Title)
		}
		res.Append(it)
	}
	return st.Result(res)
}
