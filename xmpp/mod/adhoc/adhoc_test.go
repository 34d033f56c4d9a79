package adhoc_test

import (
	"fmt"
	"slices"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/adhoc"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func server(t *testing.T) *xmpptest.TestServer {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) { c.Adhoc.Admins = []string{"root@localhost"} })
	for _, u := range []string{"root", "alice", "bob"} {
		ts.AddUser(t, u, u+" password")
	}
	return ts
}

var seq int

func iq(t *testing.T, c *xmpptest.Client, payload string) *stanza.Stanza {
	t.Helper()
	seq++
	id := fmt.Sprintf("q%d", seq)
	c.Sendf(`<iq type='%s' id='%s' to='localhost'>%s</iq>`, typeOf(payload), id, payload)
	return c.Expect(xmpptest.IsIQ(id))
}

func typeOf(payload string) string {
	if len(payload) > 8 && payload[:8] == "<command" {
		return "set"
	}
	return "get"
}

func commandNodes(t *testing.T, c *xmpptest.Client) []string {
	t.Helper()
	r := iq(t, c, `<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/>`)
	if r.Type != "result" {
		t.Fatalf("command list: %s", r)
	}
	var nodes []string
	for _, it := range r.Payload().Elements() {
		nodes = append(nodes, it.AttrValue("node"))
	}
	return nodes
}

func formValue(cmd *stanza.Element, v string) []string {
	x := cmd.Child("jabber:x:data", "x")
	if x == nil {
		return nil
	}
	for _, f := range x.Elements() {
		if f.AttrValue("var") == v {
			var out []string
			for _, val := range f.Elements() {
				out = append(out, val.Text())
			}
			return out
		}
	}
	return nil
}

// TestPingForEveryone: users see and run "ping"; the admin commands are
// neither listed for them nor runnable.
func TestPingForEveryone(t *testing.T) {
	ts := server(t)
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
	if nodes := commandNodes(t, alice); !slices.Equal(nodes, []string{adhoc.NodePing}) {
		t.Fatalf("alice sees commands %v", nodes)
	}
	info := iq(t, alice, `<query xmlns='http://jabber.org/protocol/disco#info' node='ping'/>`)
	if info.Type != "result" || info.Payload().Child("", "identity").AttrValue("type") != "command-node" {
		t.Fatalf("ping node info: %s", info)
	}
	r := iq(t, alice, `<command xmlns='http://jabber.org/protocol/commands' node='ping' action='execute'/>`)
	cmd := r.Child(adhoc.NS, "command")
	if r.Type != "result" || cmd.AttrValue("status") != "completed" || cmd.ChildText("", "note") != "Pong" {
		t.Fatalf("ping: %s", r)
	}
	r = iq(t, alice, `<command xmlns='http://jabber.org/protocol/commands' node='`+adhoc.NodeOnlineNum+`' action='execute'/>`)
	if r.ErrorCondition() != stanza.Forbidden {
		t.Fatalf("admin command by a user: %s", r)
	}
	r = iq(t, alice, `<command xmlns='http://jabber.org/protocol/commands' node='nope' action='execute'/>`)
	if r.ErrorCondition() != stanza.ItemNotFound {
		t.Fatalf("unknown command: %s", r)
	}
}

// TestAdminCommands: the configured admin counts and lists online users,
// counts accounts, makes an announcement (a two-stage command) that
// reaches every session, and disables then re-enables an account.
func TestAdminCommands(t *testing.T) {
	ts := server(t)
	root := ts.Dial(t, "root", "root password", xmpptest.ClientOptions{})
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{Resource: "b1"})
	if nodes := commandNodes(t, root); len(nodes) != 7 {
		t.Fatalf("root sees %d commands: %v", len(nodes), nodes)
	}
	run := func(node string) *stanza.Element {
		r := iq(t, root, `<command xmlns='http://jabber.org/protocol/commands' node='`+node+`' action='execute'/>`)
		if r.Type != "result" {
			t.Fatalf("%s: %s", node, r)
		}
		return r.Child(adhoc.NS, "command")
	}
	if got := formValue(run(adhoc.NodeOnlineNum), "onlineusersnum"); !slices.Equal(got, []string{"3"}) {
		t.Fatalf("online users: %v", got)
	}
	if got := formValue(run(adhoc.NodeOnlineList), "onlineuserjids"); !slices.Equal(got, []string{"alice@localhost", "bob@localhost", "root@localhost"}) {
		t.Fatalf("online list: %v", got)
	}
	if got := formValue(run(adhoc.NodeRegistered), "registeredusersnum"); !slices.Equal(got, []string{"3"}) {
		t.Fatalf("registered users: %v", got)
	}

	// Announcement: the form first, then the submission.
	stage := run(adhoc.NodeAnnounce)
	sid := stage.AttrValue("sessionid")
	if stage.AttrValue("status") != "executing" || sid == "" || stage.Child("jabber:x:data", "x") == nil {
		t.Fatalf("announce first stage: %s", stage)
	}
	submit := func(node, sid, fields string) *stanza.Stanza {
		return iq(t, root, `<command xmlns='http://jabber.org/protocol/commands' node='`+node+`' sessionid='`+sid+`' action='complete'>`+
			`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/admin</value></field>`+fields+`</x></command>`)
	}
	// Another user cannot complete the admin's session.
	r := iq(t, alice, `<command xmlns='http://jabber.org/protocol/commands' node='`+adhoc.NodeAnnounce+`' sessionid='`+sid+`' action='complete'/>`)
	if r.ErrorCondition() != stanza.Forbidden {
		t.Fatalf("alice completing root's session: %s", r)
	}
	r = submit(adhoc.NodeAnnounce, sid, `<field var='subject'><value>Maintenance</value></field><field var='announcement'><value>Down at 6pm</value></field>`)
	if c := r.Child(adhoc.NS, "command"); r.Type != "result" || c.AttrValue("status") != "completed" {
		t.Fatalf("announce: %s", r)
	}
	for _, c := range []*xmpptest.Client{alice, bob, root} {
		m := c.Expect(xmpptest.IsMessage("Down at 6pm"))
		if m.Type != "headline" || m.From.String() != "localhost" || m.Child("", "subject").Text() != "Maintenance" {
			t.Fatalf("announcement: %s", m)
		}
	}
	if r := submit(adhoc.NodeAnnounce, sid, `<field var='announcement'><value>again</value></field>`); r.Type != "error" {
		t.Fatalf("a used session was accepted again: %s", r)
	}

	// Disable bob: his session ends and he cannot log in; re-enable.
	sid = run(adhoc.NodeDisableUser).AttrValue("sessionid")
	if r := submit(adhoc.NodeDisableUser, sid, `<field var='accountjids'><value>bob@localhost</value></field>`); r.Type != "result" {
		t.Fatalf("disable: %s", r)
	}
	if cond := bob.WaitClosed(); cond != "not-authorized" {
		t.Fatalf("bob's stream ended with %q", cond)
	}
	if _, err := ts.TryDial(t, "bob", "bob password", xmpptest.ClientOptions{}); err == nil {
		t.Fatal("a disabled account logged in")
	}
	sid = run(adhoc.NodeEnableUser).AttrValue("sessionid")
	if r := submit(adhoc.NodeEnableUser, sid, `<field var='accountjids'><value>bob@localhost</value></field>`); r.Type != "result" {
		t.Fatalf("re-enable: %s", r)
	}
	ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{}).Ping()
	sid = run(adhoc.NodeDisableUser).AttrValue("sessionid")
	if r := submit(adhoc.NodeDisableUser, sid, `<field var='accountjids'><value>nobody@localhost</value></field>`); r.ErrorCondition() != stanza.ItemNotFound {
		t.Fatalf("disable a missing account: %s", r)
	}
}
