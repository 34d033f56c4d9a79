package disco_test

import (
	"context"
	"testing"

	"gatehouse/xmpp/mod/disco"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/storage"
	"gatehouse/xmpp/xmpptest"
)

// nowhere is a component deliverer that drops everything: the tests only
// need the component domain to exist.
type nowhere struct{}

func (nowhere) Deliver(context.Context, *router.Envelope) error { return nil }

func setup(t *testing.T) (*xmpptest.TestServer, *xmpptest.Client, *xmpptest.Client, *xmpptest.Client) {
	t.Helper()
	ts := xmpptest.RunServer(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, u+" pw")
	}
	// bob may see alice's presence, carol may not.
	ctx := context.Background()
	if _, err := ts.DB().PutRosterItem(ctx, "alice", storage.RosterItem{JID: "bob@localhost", Subscription: storage.SubFrom}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.DB().PutRosterItem(ctx, "alice", storage.RosterItem{JID: "carol@localhost", Subscription: storage.SubTo}); err != nil {
		t.Fatal(err)
	}
	ts.Bus().AddComponent("conference.localhost", nowhere{})
	alice := ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{Resource: "desk"})
	bob := ts.Dial(t, "bob", "bob pw", xmpptest.ClientOptions{})
	carol := ts.Dial(t, "carol", "carol pw", xmpptest.ClientOptions{})
	return ts, alice, bob, carol
}

type reply struct {
	typ  string
	cond stanza.Condition
}

func query(t *testing.T, c *xmpptest.Client, typ, to, ns, node string) *stanza.Stanza {
	t.Helper()
	attrs := ""
	if to != "" {
		attrs = " to='" + to + "'"
	}
	n := ""
	if node != "" {
		n = " node='" + node + "'"
	}
	c.Sendf(`<iq type='%s' id='q'%s><query xmlns='%s'%s/></iq>`, typ, attrs, ns, n)
	return c.Expect(xmpptest.IsIQ("q"))
}

func check(t *testing.T, r *stanza.Stanza, want reply) {
	t.Helper()
	if r.Type != want.typ || r.ErrorCondition() != want.cond {
		t.Fatalf("got %s, want %s %s", r, want.typ, want.cond)
	}
}

func features(q *stanza.Element) map[string]int {
	out := map[string]int{}
	for _, f := range q.Elements() {
		if f.Name.Local == "feature" {
			out[f.AttrValue("var")]++
		}
	}
	return out
}

func identities(q *stanza.Element) []string {
	var out []string
	for _, e := range q.Elements() {
		if e.Name.Local == "identity" {
			out = append(out, e.AttrValue("category")+"/"+e.AttrValue("type")+"/"+e.AttrValue("name"))
		}
	}
	return out
}

func TestServerInfo(t *testing.T) {
	_, alice, _, _ := setup(t)
	r := query(t, alice, "get", "localhost", disco.NSInfo, "")
	check(t, r, reply{typ: "result"})
	q := r.Child(disco.NSInfo, "query")
	if ids := identities(q); len(ids) != 1 || ids[0] != "server/im/Gatehouse" {
		t.Errorf("identities %v", ids)
	}
	fs := features(q)
	for _, f := range []string{disco.NSInfo, disco.NSItems, "urn:xmpp:ping", "jabber:iq:version",
		"urn:xmpp:time", "vcard-temp", "urn:xmpp:blocking", "jabber:iq:private", "jabber:iq:roster"} {
		if fs[f] != 1 {
			t.Errorf("feature %s advertised %d times", f, fs[f])
		}
	}
}

func TestErrors(t *testing.T) {
	_, alice, _, _ := setup(t)
	tests := []struct {
		name, typ, to, ns, node string
		want                    reply
	}{
		{"info set", "set", "localhost", disco.NSInfo, "", reply{"error", stanza.BadRequest}},
		{"items set", "set", "localhost", disco.NSItems, "", reply{"error", stanza.BadRequest}},
		{"info unknown node", "get", "localhost", disco.NSInfo, "x", reply{"error", stanza.ItemNotFound}},
		{"items unknown node", "get", "localhost", disco.NSItems, "x", reply{"error", stanza.ItemNotFound}},
		{"account unknown node", "get", "", disco.NSInfo, "x", reply{"error", stanza.ItemNotFound}},
		{"account items unknown node", "get", "", disco.NSItems, "x", reply{"error", stanza.ItemNotFound}},
		{"account set", "set", "", disco.NSInfo, "", reply{"error", stanza.BadRequest}},
		{"missing account", "get", "nobody@localhost", disco.NSInfo, "", reply{"error", stanza.ServiceUnavailable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check(t, query(t, alice, tc.typ, tc.to, tc.ns, tc.node), tc.want)
		})
	}
}

func TestServerItems(t *testing.T) {
	_, alice, _, _ := setup(t)
	r := query(t, alice, "get", "localhost", disco.NSItems, "")
	check(t, r, reply{typ: "result"})
	items := r.Child(disco.NSItems, "query").Elements()
	// The internal services, sorted: group chat, pubsub (PEP's service,
	// xmpp/mod/pubsub) and file upload (on by default).
	if len(items) != 3 || items[0].AttrValue("jid") != "conference.localhost" || items[1].AttrValue("jid") != "pubsub.localhost" ||
		items[2].AttrValue("jid") != "upload.localhost" {
		t.Fatalf("items %s", r)
	}
}

// TestAccountInfo checks who may disco an account (XEP-0030 §8).
func TestAccountInfo(t *testing.T) {
	_, alice, bob, carol := setup(t)
	tests := []struct {
		name string
		c    *xmpptest.Client
		to   string
		want reply
	}{
		{"owner without to", alice, "", reply{typ: "result"}},
		{"owner by bare JID", alice, "alice@localhost", reply{typ: "result"}},
		{"subscribed contact", bob, "alice@localhost", reply{typ: "result"}},
		{"contact without from subscription", carol, "alice@localhost", reply{"error", stanza.ServiceUnavailable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, tc.c, "get", tc.to, disco.NSInfo, "")
			check(t, r, tc.want)
			if r.Type != "result" {
				return
			}
			q := r.Child(disco.NSInfo, "query")
			// pubsub/pep comes from PEP (xmpp/mod/pubsub, XEP-0163 §6.1).
			if ids := identities(q); len(ids) != 2 || ids[0] != "account/registered/" || ids[1] != "pubsub/pep/" {
				t.Errorf("identities %v", ids)
			}
			fs := features(q)
			if fs[disco.NSInfo] != 1 || fs["urn:xmpp:ping"] != 0 {
				t.Errorf("account features %v", fs)
			}
		})
	}
}

func TestAccountItems(t *testing.T) {
	_, alice, bob, _ := setup(t)
	tests := []struct {
		name  string
		c     *xmpptest.Client
		want  []string
		owner bool
	}{
		{"owner sees resources", alice, []string{"alice@localhost/desk"}, true},
		{"others get an empty set", bob, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, tc.c, "get", "alice@localhost", disco.NSItems, "")
			check(t, r, reply{typ: "result"})
			var got []string
			for _, it := range r.Child(disco.NSItems, "query").Elements() {
				got = append(got, it.AttrValue("jid"))
			}
			if len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
				t.Fatalf("items %v, want %v", got, tc.want)
			}
		})
	}
}
