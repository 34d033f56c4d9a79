package directory_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/directory"
	"gatehouse/xmpp/directory/slapdtest"
)

func open(t *testing.T, cfg config.Directory) *directory.Directory {
	t.Helper()
	d, err := directory.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestAuthenticate(t *testing.T) {
	s := slapdtest.Start(t)
	ctx := context.Background()
	starttls := s.Config()
	ldaps := s.Config()
	ldaps.URL, ldaps.StartTLS = s.LDAPSURL, false
	for name, cfg := range map[string]config.Directory{"starttls": starttls, "ldaps": ldaps} {
		t.Run(name, func(t *testing.T) {
			d := open(t, cfg)
			tests := []struct {
				user, pw string
				want     error
			}{
				{"alice", "alice-password", nil},
				{"Alice", "alice-password", nil}, // user names are case-insensitive
				{"alice", "wrong", directory.ErrInvalidCredentials},
				{"alice", "", directory.ErrInvalidCredentials}, // no unauthenticated bind
				{"carol", "carol-password", directory.ErrDisabled},
				{"mallory", "x", directory.ErrNoUser},
				{"*", "x", directory.ErrNoUser}, // filter injection is escaped
				{"alice)(uid=*", "alice-password", directory.ErrNoUser},
			}
			for _, tc := range tests {
				err := d.Authenticate(ctx, tc.user, tc.pw)
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("Authenticate(%q, %q) = %v, want %v", tc.user, tc.pw, err, tc.want)
				}
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	s := slapdtest.Start(t)
	d := open(t, s.Config())
	snap, err := d.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]directory.User{}
	for _, u := range snap.Users {
		users[u.Name] = u
	}
	if len(users) != 5 {
		t.Fatalf("users = %v", users)
	}
	a := users["alice"]
	if a.Manager != "bob" || a.VCard.FullName != "Alice Liddell" || a.VCard.Title != "Engineer" || a.VCard.Department != "Engineering" ||
		a.VCard.Phone != "+1 555 0100" || a.VCard.Email != "alice@example.com" || !bytes.Equal(a.VCard.Photo, s.Photo) {
		t.Errorf("alice = %+v", a)
	}
	if !users["carol"].Disabled || users["alice"].Disabled {
		t.Error("disabled state wrong")
	}
	if users["dave"].Manager != "alice" || users["bob"].Manager != "" {
		t.Errorf("managers: dave %q bob %q", users["dave"].Manager, users["bob"].Manager)
	}
	groups := map[string][]string{}
	for _, g := range snap.Groups {
		groups[g.Name] = g.Members
	}
	want := map[string][]string{
		"staff":       {"alice", "bob", "dave"}, // dave through the nested engineering group
		"engineering": {"dave"},
		"sales":       {"erin"}, // groupOfUniqueNames
		"loop-a":      {"bob", "erin"},
		"loop-b":      {"bob", "erin"}, // a cycle resolves and ends
	}
	for g, m := range want {
		if !slices.Equal(groups[g], m) {
			t.Errorf("group %s = %v, want %v", g, groups[g], m)
		}
	}
	u, err := d.User(context.Background(), "dave")
	if err != nil || !slices.Equal(u.Groups, []string{"engineering", "staff"}) {
		t.Errorf("User(dave) = %+v, %v", u, err)
	}
}

// A change in the directory shows in the next snapshot.
func TestChangesPickedUp(t *testing.T) {
	s := slapdtest.Start(t)
	d := open(t, s.Config())
	s.Modify(func(_ context.Context, c *ldap.Conn) error {
		m := ldap.NewModifyRequest("cn=sales,ou=groups,dc=example,dc=com", nil)
		m.Add("uniqueMember", []string{"uid=alice,ou=people,dc=example,dc=com"})
		if err := c.Modify(m); err != nil {
			return err
		}
		m = ldap.NewModifyRequest("uid=carol,ou=people,dc=example,dc=com", nil)
		m.Delete("employeeType", nil)
		return c.Modify(m)
	})
	snap, err := d.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range snap.Groups {
		if g.Name == "sales" && !slices.Equal(g.Members, []string{"alice", "erin"}) {
			t.Errorf("sales after the change = %v", g.Members)
		}
	}
	if err := d.Authenticate(context.Background(), "carol", "carol-password"); err != nil {
		t.Errorf("carol re-enabled: %v", err)
	}
}

// With slapd down every call fails with ErrUnavailable, quickly, and
// works again once it is back.
func TestUnavailable(t *testing.T) {
	s := slapdtest.Start(t)
	cfg := s.Config()
	cfg.Timeout = config.Duration(2 * time.Second)
	d := open(t, cfg)
	if err := d.Authenticate(context.Background(), "alice", "alice-password"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	start := time.Now()
	if err := d.Authenticate(context.Background(), "alice", "alice-password"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("slapd down: %v, want ErrUnavailable", err)
	}
	if _, err := d.Snapshot(context.Background()); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("snapshot with slapd down: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("failing took %v", time.Since(start))
	}
	s.Restart()
	if err := d.Authenticate(context.Background(), "alice", "alice-password"); err != nil {
		t.Errorf("after restart: %v", err)
	}
	// A wrong service password is a clear configuration error.
	bad := s.Config()
	bad.BindDN = "cn=nobody,ou=services,dc=example,dc=com"
	if err := open(t, bad).Check(context.Background(), "alice"); !errors.Is(err, directory.ErrUnavailable) || !bytes.Contains([]byte(err.Error()), []byte("bind_dn")) {
		t.Errorf("bad service account: %v", err)
	}
	// Without the CA, the certificate does not verify.
	untrusted := s.Config()
	untrusted.CAFile = ""
	if err := open(t, untrusted).Check(context.Background(), "alice"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("untrusted certificate: %v", err)
	}
}
