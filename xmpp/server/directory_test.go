package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/directory/slapdtest"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

type dirEnv struct {
	ts   *xmpptest.TestServer
	ldap *slapdtest.Server
	peer *policyPeer
}

// startDirectoryServer runs slapd with testdata/directory/example.ldif and
// a server whose users, groups and managers come from it, with the example
// policy and an outside peer (a component) connected.
func startDirectoryServer(t *testing.T, mods ...xmpptest.Option) *dirEnv {
	t.Helper()
	sl := slapdtest.Start(t)
	src, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		t.Fatal(err)
	}
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Directory = sl.Config()
		c.Policy.File = file
		c.Policy.Clamd = "unix:" + filepath.Join(t.TempDir(), "no-clamd.sock")
		c.Policy.DirectoryRefresh = 0
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: peerDomain, Secret: peerSecret, Type: "irc"}}
		c.Auth.Throttle.Free = 0 // many failures on purpose, all from 127.0.0.1
		for _, m := range mods {
			m(c)
		}
	})
	return &dirEnv{ts: ts, ldap: sl, peer: dialPolicyPeer(t, ts.ComponentAddrs()[0])}
}

func dirLogin(t *testing.T, ts *xmpptest.TestServer, user, pw, mech string) (*xmpptest.Client, error) {
	t.Helper()
	return ts.TryDial(t, user, pw, xmpptest.ClientOptions{Mechanism: mech, Resource: "desk"})
}

func authCondition(err error) string {
	var ae *xmpptest.AuthError
	if errors.As(err, &ae) {
		return ae.Condition
	}
	if err == nil {
		return "success"
	}
	return err.Error()
}

func TestDirectoryLogin(t *testing.T) {
	e := startDirectoryServer(t)
	ts := e.ts
	tests := []struct {
		user, pw, mech, want string
	}{
		{"alice", "alice-password", "SCRAM-SHA-256", "not-authorized"}, // no SCRAM keys before a first bind
		{"alice", "wrong", "PLAIN", "not-authorized"},
		{"alice", "alice-password", "PLAIN", "success"},
		{"alice", "alice-password", "SCRAM-SHA-256", "success"}, // keys cached by the bind
		{"alice", "alice-password", "SCRAM-SHA-1", "success"},
		{"alice", "wrong", "SCRAM-SHA-256", "not-authorized"},
		{"carol", "carol-password", "PLAIN", "account-disabled"},
		{"mallory", "x", "PLAIN", "not-authorized"},
	}
	for _, tc := range tests {
		c, err := dirLogin(t, ts, tc.user, tc.pw, tc.mech)
		if got := authCondition(err); got != tc.want {
			t.Errorf("%s %s with %q: %s, want %s", tc.mech, tc.user, tc.pw, got, tc.want)
		}
		if c != nil {
			c.Close()
		}
	}

	// A local account (not in the directory) keeps its own credentials.
	ts.AddUser(t, "localonly", "local-password")
	if _, err := dirLogin(t, ts, "localonly", "local-password", "SCRAM-SHA-256"); err != nil {
		t.Errorf("local account: %v", err)
	}

	// The directory going down: directory logins fail with
	// temporary-auth-failure, the server and local logins carry on.
	e.ldap.Stop()
	if _, err := dirLogin(t, ts, "bob", "bob-password", "PLAIN"); authCondition(err) != "temporary-auth-failure" {
		t.Errorf("bob with the directory down: %v", err)
	}
	if _, err := dirLogin(t, ts, "alice", "alice-password", "SCRAM-SHA-256"); authCondition(err) != "temporary-auth-failure" {
		t.Errorf("alice (cached SCRAM) with the directory down: %v", err)
	}
	if _, err := dirLogin(t, ts, "localonly", "local-password", "SCRAM-SHA-256"); err != nil {
		t.Errorf("local account with the directory down: %v", err)
	}
	cl := admin.NewClient(ts.Config.AdminSocketPath())
	var ae *admin.APIError
	if err := cl.Do(context.Background(), http.MethodPost, "/v1/directory/sync", nil, nil); !errors.As(err, &ae) || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("sync with the directory down: %v", err)
	}
	e.ldap.Restart()
	if _, err := dirLogin(t, ts, "bob", "bob-password", "PLAIN"); err != nil {
		t.Errorf("bob after the directory is back: %v", err)
	}
}

func TestDirectoryRosterGroupsVCard(t *testing.T) {
	e := startDirectoryServer(t)
	ts := e.ts
	ctx := context.Background()
	db := ts.DB()

	// Groups and managers as the policy and the CLI see them.
	members, err := db.GroupMembers(ctx, "staff")
	if err != nil || !slices.Equal(members, []string{"alice", "bob", "dave"}) {
		t.Errorf("staff = %v, %v", members, err)
	}
	if m, err := db.Manager(ctx, "dave"); err != nil || m != "alice" {
		t.Errorf("dave's manager = %q, %v", m, err)
	}
	if locked, _ := db.Locked(ctx, "carol"); !locked {
		t.Error("carol (disabled in the directory) is not locked")
	}

	alice, err := dirLogin(t, ts, "alice", "alice-password", "PLAIN")
	if err != nil {
		t.Fatal(err)
	}
	// The shared roster: staff members, nested engineering included.
	alice.Send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	r := alice.Expect(xmpptest.IsIQ("r1"))
	var got []string
	for _, it := range r.Payload().Elements() {
		if it.AttrValue("subscription") != "both" || it.ChildText("jabber:iq:roster", "group") != "staff" {
			t.Errorf("roster item %v", it)
		}
		got = append(got, it.AttrValue("jid")+"="+it.AttrValue("name"))
	}
	want := []string{"bob@localhost=Bob Boss", "dave@localhost=Dave Developer"}
	if !slices.Equal(got, want) {
		t.Fatalf("alice's roster = %v, want %v", got, want)
	}
	alice.Send(`<presence/>`)

	// Presence flows between shared-roster contacts.
	bob, err := dirLogin(t, ts, "bob", "bob-password", "PLAIN")
	if err != nil {
		t.Fatal(err)
	}
	bob.Send(`<presence/>`)
	alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Bare().String() == "bob@localhost"
	})
	bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.Bare().String() == "alice@localhost"
	})

	// The vCard comes from the directory.
	bob.Send(`<iq type='get' id='v1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>`)
	v := bob.Expect(xmpptest.IsIQ("v1")).Payload()
	photo, _ := base64.StdEncoding.DecodeString(v.Child("vcard-temp", "PHOTO").ChildText("vcard-temp", "BINVAL"))
	if v.ChildText("vcard-temp", "FN") != "Alice Liddell" || v.ChildText("vcard-temp", "TITLE") != "Engineer" || string(photo) != string(e.ldap.Photo) {
		t.Errorf("alice's vCard: %v", v)
	}

	// A manager from the directory is notified by a policy rule.
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='px'><body>Project X ships friday</body></message>`)
	alice.Expect(func(s *stanza.Stanza) bool { return s.Type == "error" && s.ID == "px" })
	bob.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && strings.Contains(s.Body(), "Rule project-x") && strings.Contains(s.Body(), "alice@localhost")
	})

	// A change in the directory is picked up by the next sync: erin joins
	// staff, dave leaves engineering; rosters are pushed to online clients.
	e.ldap.Modify(func(_ context.Context, c *ldap.Conn) error {
		m := ldap.NewModifyRequest("cn=staff,ou=groups,dc=example,dc=com", nil)
		m.Add("member", []string{"uid=erin,ou=people,dc=example,dc=com"})
		if err := c.Modify(m); err != nil {
			return err
		}
		m = ldap.NewModifyRequest("cn=engineering,ou=groups,dc=example,dc=com", nil)
		m.Replace("member", []string{"uid=bob,ou=people,dc=example,dc=com"})
		return c.Modify(m)
	})
	if err := admin.NewClient(ts.Config.AdminSocketPath()).Do(ctx, http.MethodPost, "/v1/directory/sync", nil, nil); err != nil {
		t.Fatal(err)
	}
	alice.Expect(func(s *stanza.Stanza) bool {
		it := s.Payload()
		return s.Type == "set" && it != nil && it.Name.Local == "query" && strings.Contains(it.String(), "erin@localhost")
	})
	alice.Expect(func(s *stanza.Stanza) bool {
		it := s.Payload()
		return s.Type == "set" && it != nil && strings.Contains(it.String(), "dave@localhost") && strings.Contains(it.String(), "remove")
	})
	if members, _ := db.GroupMembers(ctx, "staff"); !slices.Equal(members, []string{"alice", "bob", "erin"}) {
		t.Errorf("staff after the change = %v", members)
	}
}
