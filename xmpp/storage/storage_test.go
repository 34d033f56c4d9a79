package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/xmpp/auth"
)

func openTest(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db, path
}

func key(seed byte, iter int) auth.SCRAMKey {
	return auth.SCRAMKey{
		Salt:      bytes.Repeat([]byte{seed}, 16),
		Iter:      iter,
		StoredKey: bytes.Repeat([]byte{seed + 1}, 32),
		ServerKey: bytes.Repeat([]byte{seed + 2}, 32),
	}
}

func creds(seed byte) auth.Credentials {
	return auth.Credentials{SHA1: key(seed, 4096), SHA256: key(seed+10, 4096), SHA512: key(seed+20, 10000)}
}

func mustCreate(t testing.TB, db *DB, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := db.CreateUser(context.Background(), n, creds(1)); err != nil {
			t.Fatalf("CreateUser(%q): %v", n, err)
		}
	}
}

// countRows counts a user's rows in table, straight from SQL.
func countRows(t *testing.T, db *DB, table, user string) int {
	t.Helper()
	var n int
	if err := db.r.QueryRow(`SELECT count(*) FROM `+table+` WHERE username = ?`, user).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestOpenFileMode(t *testing.T) {
	db, path := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")
	if err := db.StoreOffline(ctx, "alice", time.Now(), []byte("<message/>"), 10); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), got)
		}
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // umask may have narrowed it
		t.Fatal(err)
	}
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode %o, want 600", got)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	if _, err := Open(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(\"\"): %v, want ErrInvalid", err)
	}
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "missing-dir", "x.db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
	// A path with URI-special characters must name exactly that file.
	dir := t.TempDir()
	odd := filepath.Join(dir, "odd?name#with%25.db")
	db, err := Open(ctx, odd)
	if err != nil {
		t.Fatalf("Open(%q): %v", odd, err)
	}
	mustCreate(t, db, "alice")
	db.Close()
	if fi, err := os.Stat(odd); err != nil || fi.Size() == 0 {
		t.Errorf("database not written to %q: %v", odd, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), filepath.Base(odd)) {
			t.Errorf("stray file %q next to %q", e.Name(), filepath.Base(odd))
		}
	}
}

func TestReopenAndMigrations(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	stamp := time.UnixMilli(1700000000123).UTC()
	for round := range 3 {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		var versions []int
		rows, err := db.r.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			versions = append(versions, v)
		}
		rows.Close()
		want := make([]int, SchemaVersion)
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(versions, want) {
			t.Errorf("round %d: schema_migrations %v, want %v", round, versions, want)
		}
		if round == 0 {
			mustCreate(t, db, "alice")
			if _, err := db.PutRosterItem(ctx, "alice", RosterItem{JID: "bob@example.org", Groups: []string{"G"}}); err != nil {
				t.Fatal(err)
			}
			if err := db.StoreOffline(ctx, "alice", stamp, []byte("<message/>"), 10); err != nil {
				t.Fatal(err)
			}
		} else {
			if ok, _ := db.Exists(ctx, "alice"); !ok {
				t.Errorf("round %d: alice lost after reopen", round)
			}
			c, err := db.Credentials(ctx, "alice")
			if err != nil || !reflect.DeepEqual(c, creds(1)) {
				t.Errorf("round %d: credentials %+v, %v", round, c, err)
			}
			items, ver, err := db.Roster(ctx, "alice")
			if err != nil || ver != 1 || len(items) != 1 || items[0].Groups[0] != "G" {
				t.Errorf("round %d: roster %+v ver %d err %v", round, items, ver, err)
			}
			if n, _ := db.OfflineCount(ctx, "alice"); n != 1 {
				t.Errorf("round %d: offline count %d, want 1", round, n)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	db, path := openTest(t)
	if _, err := db.w.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("Open of newer schema: %v, want ErrSchemaVersion", err)
	}
}

func TestPragmas(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	for _, h := range []struct {
		name string
		q    string
		want string
	}{
		{"writer journal", "PRAGMA journal_mode", "wal"},
		{"writer fk", "PRAGMA foreign_keys", "1"},
		{"writer sync", "PRAGMA synchronous", "1"},
		{"writer busy", "PRAGMA busy_timeout", "5000"},
	} {
		var got string
		if err := db.w.QueryRowContext(ctx, h.q).Scan(&got); err != nil || got != h.want {
			t.Errorf("%s: %q, %v; want %q", h.name, got, err, h.want)
		}
	}
	var fk, qo string
	if err := db.r.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != "1" {
		t.Errorf("reader foreign_keys %q, %v", fk, err)
	}
	if err := db.r.QueryRowContext(ctx, "PRAGMA query_only").Scan(&qo); err != nil || qo != "1" {
		t.Errorf("reader query_only %q, %v", qo, err)
	}
}

func TestAccounts(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	partial := auth.Credentials{SHA256: key(50, 8192)}

	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"create alice", func() error { return db.CreateUser(ctx, "alice", creds(1)) }, nil},
		{"create alice again", func() error { return db.CreateUser(ctx, "alice", creds(2)) }, ErrUserExists},
		{"create empty", func() error { return db.CreateUser(ctx, "", creds(2)) }, ErrInvalid},
		{"create bob partial", func() error { return db.CreateUser(ctx, "bob", partial) }, nil},
		{"create carol none", func() error { return db.CreateUser(ctx, "carol", auth.Credentials{}) }, nil},
		{"set creds carol", func() error { return db.SetCredentials(ctx, "carol", creds(7)) }, nil},
		{"set creds alice partial", func() error { return db.SetCredentials(ctx, "alice", partial) }, nil},
		{"set creds nobody", func() error { return db.SetCredentials(ctx, "nobody", creds(1)) }, ErrNoUser},
		{"lock bob", func() error { return db.SetLocked(ctx, "bob", true) }, nil},
		{"lock bob twice", func() error { return db.SetLocked(ctx, "bob", true) }, nil},
		{"lock nobody", func() error { return db.SetLocked(ctx, "nobody", true) }, ErrNoUser},
		{"delete nobody", func() error { return db.DeleteUser(ctx, "nobody") }, ErrNoUser},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.want) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
	}

	credCases := []struct {
		user string
		want auth.Credentials
		err  error
	}{
		{"alice", partial, nil},
		{"bob", partial, nil},
		{"carol", creds(7), nil},
		{"nobody", auth.Credentials{}, ErrNoUser},
	}
	for _, c := range credCases {
		got, err := db.Credentials(ctx, c.user)
		if !errors.Is(err, c.err) || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Credentials(%q) = %+v, %v; want %+v, %v", c.user, got, err, c.want, c.err)
		}
	}

	lockCases := []struct {
		user string
		want bool
		err  error
	}{{"alice", false, nil}, {"bob", true, nil}, {"nobody", false, ErrNoUser}}
	for _, c := range lockCases {
		got, err := db.Locked(ctx, c.user)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("Locked(%q) = %v, %v; want %v, %v", c.user, got, err, c.want, c.err)
		}
	}
	if err := db.SetLocked(ctx, "bob", false); err != nil {
		t.Fatal(err)
	}
	if l, _ := db.Locked(ctx, "bob"); l {
		t.Error("bob still locked")
	}

	users, err := db.ListUsers(ctx)
	if err != nil || !slices.Equal(users, []string{"alice", "bob", "carol"}) {
		t.Errorf("ListUsers = %v, %v", users, err)
	}
}

func TestCredentialErrorsDoNotLeakSecrets(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	c := creds(1)
	err := db.SetCredentials(ctx, "nobody", c)
	if err == nil {
		t.Fatal("expected error")
	}
	for _, secret := range [][]byte{c.SHA1.StoredKey, c.SHA1.ServerKey, c.SHA1.Salt} {
		if bytes.Contains([]byte(err.Error()), secret) || bytes.Contains([]byte(err.Error()), []byte(fmt.Sprintf("%x", secret))) {
			t.Errorf("error %q contains key material", err)
		}
	}
}

func TestExistsCache(t *testing.T) {
	db, path := openTest(t)
	ctx := t.Context()
	check := func(step string) {
		t.Helper()
		list, err := db.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"alice", "bob", "carol", "dave", ""} {
			got, err := db.Exists(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if want := slices.Contains(list, n); got != want {
				t.Errorf("%s: Exists(%q) = %v, table says %v", step, n, got, want)
			}
		}
	}
	check("empty")
	mustCreate(t, db, "alice", "bob", "carol")
	check("after create")
	if err := db.CreateUser(ctx, "alice", creds(2)); !errors.Is(err, ErrUserExists) {
		t.Fatal(err)
	}
	check("after duplicate create")
	if err := db.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	check("after delete")
	if err := db.DeleteUser(ctx, "bob"); !errors.Is(err, ErrNoUser) {
		t.Fatal(err)
	}
	check("after failed delete")

	db2, err := Open(ctx, path+"2")
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()
	// A second handle on the same file loads the set from the table.
	db3, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db3.Close()
	for n, want := range map[string]bool{"alice": true, "bob": false, "carol": true} {
		if got, _ := db3.Exists(ctx, n); got != want {
			t.Errorf("reopened Exists(%q) = %v, want %v", n, got, want)
		}
	}
}

func TestExistsConcurrentCreateDelete(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				name := fmt.Sprintf("u%d", i%5) // goroutines fight over the same names
				if g%2 == 0 {
					_ = db.CreateUser(ctx, name, creds(1))
				} else {
					_ = db.DeleteUser(ctx, name)
				}
				_, _ = db.Exists(ctx, name)
			}
		})
	}
	wg.Wait()
	list, err := db.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		name := fmt.Sprintf("u%d", i)
		got, _ := db.Exists(ctx, name)
		if want := slices.Contains(list, name); got != want {
			t.Errorf("Exists(%q) = %v, table says %v", name, got, want)
		}
	}
}

func TestDeleteUserCascade(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice", "bob")
	fill := func(u string) {
		if _, err := db.PutRosterItem(ctx, u, RosterItem{JID: "x@example.org", Subscription: SubBoth, Groups: []string{"A", "B"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.StoreOffline(ctx, u, time.Now(), []byte("<message/>"), 10); err != nil {
			t.Fatal(err)
		}
		if err := db.SetVCard(ctx, u, []byte("<vCard/>")); err != nil {
			t.Fatal(err)
		}
		if err := db.SetPrivate(ctx, u, "storage:bookmarks storage", []byte("<storage/>")); err != nil {
			t.Fatal(err)
		}
		if err := db.Block(ctx, u, "spam.example"); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateGroup(ctx, "staff-"+u); err != nil {
			t.Fatal(err)
		}
		if err := db.AddToGroup(ctx, "staff-"+u, u); err != nil {
			t.Fatal(err)
		}
	}
	fill("alice")
	fill("bob")
	if _, err := db.BlockedSet(ctx, "alice"); err != nil { // warm the cache
		t.Fatal(err)
	}
	tables := []string{"scram_keys", "roster", "roster_groups", "offline", "vcards", "private_xml", "blocklist", "user_group_members"}
	for _, tb := range tables {
		if countRows(t, db, tb, "alice") == 0 {
			t.Fatalf("setup: no %s rows for alice", tb)
		}
	}
	if err := db.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if n := countRows(t, db, tb, "alice"); n != 0 {
			t.Errorf("%s: %d rows left for deleted alice", tb, n)
		}
		if n := countRows(t, db, tb, "bob"); n == 0 {
			t.Errorf("%s: bob's rows deleted with alice", tb)
		}
	}
	if set, err := db.BlockedSet(ctx, "alice"); err != nil || len(set) != 0 {
		t.Errorf("BlockedSet of deleted user = %v, %v", set, err)
	}
	// Recreating the name starts from nothing.
	mustCreate(t, db, "alice")
	items, ver, err := db.Roster(ctx, "alice")
	if err != nil || len(items) != 0 || ver != 0 {
		t.Errorf("recreated roster = %v ver %d, %v", items, ver, err)
	}
	if g, _ := db.UserGroups(ctx, "alice"); len(g) != 0 {
		t.Errorf("recreated user groups = %v", g)
	}
}

func TestRoster(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")

	if ver, err := db.RosterVersion(ctx, "alice"); err != nil || ver != 0 {
		t.Fatalf("initial version %d, %v", ver, err)
	}
	steps := []struct {
		name    string
		put     *RosterItem
		del     string
		user    string
		wantVer uint64
		wantErr error
	}{
		{name: "add bob", put: &RosterItem{JID: "bob@example.org", Name: "Bob", Subscription: SubTo, Groups: []string{"Friends", "Work", "Friends", ""}}, wantVer: 1},
		{name: "add carol pending in only", put: &RosterItem{JID: "carol@example.net", PendingIn: true}, wantVer: 2},
		{name: "add dave ask approved", put: &RosterItem{JID: "dave@example.com", Subscription: SubFrom, Ask: true, Approved: true}, wantVer: 3},
		{name: "replace bob", put: &RosterItem{JID: "bob@example.org", Name: "Robert", Subscription: SubBoth, Groups: []string{"Work"}}, wantVer: 4},
		{name: "bad subscription", put: &RosterItem{JID: "eve@example.org", Subscription: "maybe"}, wantErr: ErrInvalid},
		{name: "empty jid", put: &RosterItem{}, wantErr: ErrInvalid},
		{name: "unknown user", put: &RosterItem{JID: "bob@example.org"}, user: "nobody", wantErr: ErrNoUser},
		{name: "delete dave", del: "dave@example.com", wantVer: 5},
		{name: "delete dave again", del: "dave@example.com", wantErr: ErrNotFound},
		{name: "delete for unknown user", del: "bob@example.org", user: "nobody", wantErr: ErrNotFound},
		{name: "add dave back", put: &RosterItem{JID: "dave@example.com", Subscription: SubNone}, wantVer: 6},
	}
	for _, s := range steps {
		user := s.user
		if user == "" {
			user = "alice"
		}
		var (
			ver uint64
			err error
		)
		if s.put != nil {
			ver, err = db.PutRosterItem(ctx, user, *s.put)
		} else {
			ver, err = db.DeleteRosterItem(ctx, user, s.del)
		}
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.wantErr)
		}
		if err == nil && ver != s.wantVer {
			t.Fatalf("%s: version %d, want %d", s.name, ver, s.wantVer)
		}
	}

	want := []RosterItem{
		{JID: "bob@example.org", Name: "Robert", Subscription: SubBoth, Groups: []string{"Work"}},
		{JID: "carol@example.net", Subscription: SubNone, PendingIn: true},
		{JID: "dave@example.com", Subscription: SubNone},
	}
	items, ver, err := db.Roster(ctx, "alice")
	if err != nil || ver != 6 {
		t.Fatalf("Roster: ver %d, %v", ver, err)
	}
	if !reflect.DeepEqual(items, want) {
		t.Errorf("Roster =\n%+v\nwant\n%+v", items, want)
	}
	for _, w := range want {
		got, ok, err := db.RosterItem(ctx, "alice", w.JID)
		if err != nil || !ok || !reflect.DeepEqual(got, w) {
			t.Errorf("RosterItem(%q) = %+v, %v, %v", w.JID, got, ok, err)
		}
	}
	if _, ok, err := db.RosterItem(ctx, "alice", "zed@example.org"); ok || err != nil {
		t.Errorf("RosterItem(missing) ok=%v err=%v", ok, err)
	}
	if _, ok, err := db.RosterItem(ctx, "nobody", "bob@example.org"); ok || err != nil {
		t.Errorf("RosterItem(unknown user) ok=%v err=%v", ok, err)
	}
	if _, _, err := db.Roster(ctx, "nobody"); !errors.Is(err, ErrNoUser) {
		t.Errorf("Roster(nobody): %v", err)
	}
	if _, err := db.RosterVersion(ctx, "nobody"); !errors.Is(err, ErrNoUser) {
		t.Errorf("RosterVersion(nobody): %v", err)
	}
	if v, _ := db.RosterVersion(ctx, "alice"); v != 6 {
		t.Errorf("RosterVersion = %d, want 6", v)
	}
	// The groups of a deleted item go with it.
	if _, err := db.DeleteRosterItem(ctx, "alice", "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "roster_groups", "alice"); n != 0 {
		t.Errorf("%d group rows left after deleting the item", n)
	}
}

func TestRosterVersionConcurrent(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")
	const workers, each = 8, 10
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[uint64]bool{}
	)
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				ver, err := db.PutRosterItem(ctx, "alice", RosterItem{JID: fmt.Sprintf("c%d-%d@example.org", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[ver] {
					t.Errorf("version %d returned twice", ver)
				}
				seen[ver] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	items, ver, err := db.Roster(ctx, "alice")
	if err != nil || len(items) != workers*each || ver != workers*each {
		t.Errorf("Roster: %d items, ver %d, %v", len(items), ver, err)
	}
}

func TestOffline(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice", "bob")
	base := time.Date(2025, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("X", 3600))

	const max = 3
	steps := []struct {
		user string
		xml  string
		max  int
		want error
	}{
		{"alice", "<message id='1'/>", max, nil},
		{"alice", "<message id='2'/>", max, nil},
		{"bob", "<message id='b1'/>", max, nil},
		{"alice", "<message id='3'/>", max, nil},
		{"alice", "<message id='4'/>", max, ErrOfflineFull},
		{"alice", "<message id='5'/>", max + 10, nil}, // a larger cap admits more
		{"alice", "<message id='6'/>", 2, ErrOfflineFull},
		{"bob", "<message id='b2'/>", 0, ErrOfflineFull},
		{"bob", "", max, ErrInvalid},
		{"nobody", "<message/>", max, ErrNoUser},
	}
	for i, s := range steps {
		err := db.StoreOffline(ctx, s.user, base.Add(time.Duration(i)*time.Second), []byte(s.xml), s.max)
		if !errors.Is(err, s.want) {
			t.Fatalf("step %d (%s %s): %v, want %v", i, s.user, s.xml, err, s.want)
		}
	}
	for u, want := range map[string]int{"alice": 4, "bob": 1, "nobody": 0} {
		if n, err := db.OfflineCount(ctx, u); n != want || err != nil {
			t.Errorf("OfflineCount(%q) = %d, %v; want %d", u, n, err, want)
		}
	}

	msgs, err := db.TakeOffline(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	wantXML := []string{"<message id='1'/>", "<message id='2'/>", "<message id='3'/>", "<message id='5'/>"}
	wantStep := []int{0, 1, 3, 5}
	if len(msgs) != len(wantXML) {
		t.Fatalf("TakeOffline returned %d messages, want %d", len(msgs), len(wantXML))
	}
	for i, m := range msgs {
		if string(m.XML) != wantXML[i] {
			t.Errorf("msg %d: %s, want %s", i, m.XML, wantXML[i])
		}
		wantStamp := base.Add(time.Duration(wantStep[i]) * time.Second).Truncate(time.Millisecond).UTC()
		if !m.Stamp.Equal(wantStamp) || m.Stamp.Location() != time.UTC {
			t.Errorf("msg %d: stamp %v, want %v UTC", i, m.Stamp, wantStamp)
		}
		if i > 0 && m.ID <= msgs[i-1].ID {
			t.Errorf("msg %d: id %d not after %d", i, m.ID, msgs[i-1].ID)
		}
	}
	if n, _ := db.OfflineCount(ctx, "alice"); n != 0 {
		t.Errorf("count after take = %d", n)
	}
	if again, err := db.TakeOffline(ctx, "alice"); err != nil || len(again) != 0 {
		t.Errorf("second TakeOffline = %v, %v", again, err)
	}
	if n, _ := db.OfflineCount(ctx, "bob"); n != 1 {
		t.Errorf("bob's queue touched: %d", n)
	}
	// After taking, the cap counts from zero again.
	if err := db.StoreOffline(ctx, "alice", base, []byte("<message id='7'/>"), 1); err != nil {
		t.Errorf("store after take: %v", err)
	}
	if msgs, err := db.TakeOffline(ctx, "nobody"); err != nil || msgs != nil {
		t.Errorf("TakeOffline(nobody) = %v, %v", msgs, err)
	}
}

func TestOfflineConcurrentWriters(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice", "bob")
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			user := "alice"
			if g%2 == 1 {
				user = "bob"
			}
			for i := range each {
				xml := fmt.Appendf(nil, "<message id='%d-%d'/>", g, i)
				if err := db.StoreOffline(ctx, user, time.Now(), xml, 1<<20); err != nil {
					t.Errorf("worker %d: %v", g, err)
					return
				}
				if _, err := db.OfflineCount(ctx, user); err != nil { // readers alongside
					t.Errorf("worker %d count: %v", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, u := range []string{"alice", "bob"} {
		msgs, err := db.TakeOffline(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != workers/2*each {
			t.Errorf("%s: %d messages, want %d", u, len(msgs), workers/2*each)
		}
		for _, m := range msgs {
			seen[string(m.XML)] = true
		}
	}
	for g := range workers {
		for i := range each {
			if id := fmt.Sprintf("<message id='%d-%d'/>", g, i); !seen[id] {
				t.Errorf("missing %s", id)
			}
		}
	}
}

func TestOfflineCapUnderConcurrency(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")
	const max = 25
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		stored, denied int
	)
	for range 8 {
		wg.Go(func() {
			for range 10 {
				err := db.StoreOffline(ctx, "alice", time.Now(), []byte("<message/>"), max)
				mu.Lock()
				switch {
				case err == nil:
					stored++
				case errors.Is(err, ErrOfflineFull):
					denied++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if stored != max || denied != 80-max {
		t.Errorf("stored %d denied %d, want %d and %d", stored, denied, max, 80-max)
	}
	if n, _ := db.OfflineCount(ctx, "alice"); n != max {
		t.Errorf("count %d, want %d", n, max)
	}
}

func TestVCardAndPrivate(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")
	const bm = "storage:bookmarks storage"
	const rosternotes = "storage:rosternotes storage"

	type op struct {
		name    string
		do      func() error
		get     func() ([]byte, error)
		want    string // "" means nil
		wantErr error
	}
	vcard := func() ([]byte, error) { return db.VCard(ctx, "alice") }
	priv := func(k string) func() ([]byte, error) {
		return func() ([]byte, error) { return db.Private(ctx, "alice", k) }
	}
	ops := []op{
		{name: "no vcard", get: vcard},
		{name: "set vcard", do: func() error { return db.SetVCard(ctx, "alice", []byte("<vCard><FN>A</FN></vCard>")) }, get: vcard, want: "<vCard><FN>A</FN></vCard>"},
		{name: "replace vcard", do: func() error { return db.SetVCard(ctx, "alice", []byte("<vCard/>")) }, get: vcard, want: "<vCard/>"},
		{name: "clear vcard", do: func() error { return db.SetVCard(ctx, "alice", nil) }, get: vcard},
		{name: "vcard unknown user", do: func() error { return db.SetVCard(ctx, "nobody", []byte("<vCard/>")) }, wantErr: ErrNoUser},
		{name: "no private", get: priv(bm)},
		{name: "set bookmarks", do: func() error { return db.SetPrivate(ctx, "alice", bm, []byte("<storage xmlns='storage:bookmarks'/>")) }, get: priv(bm), want: "<storage xmlns='storage:bookmarks'/>"},
		{name: "other key untouched", get: priv(rosternotes)},
		{name: "set notes", do: func() error { return db.SetPrivate(ctx, "alice", rosternotes, []byte("<storage/>")) }, get: priv(rosternotes), want: "<storage/>"},
		{name: "bookmarks still there", get: priv(bm), want: "<storage xmlns='storage:bookmarks'/>"},
		{name: "clear bookmarks", do: func() error { return db.SetPrivate(ctx, "alice", bm, []byte{}) }, get: priv(bm)},
		{name: "private empty key", do: func() error { return db.SetPrivate(ctx, "alice", "", []byte("<x/>")) }, wantErr: ErrInvalid},
		{name: "private unknown user", do: func() error { return db.SetPrivate(ctx, "nobody", bm, []byte("<x/>")) }, wantErr: ErrNoUser},
		{name: "unknown user reads nil", get: func() ([]byte, error) { return db.Private(ctx, "nobody", bm) }},
	}
	for _, o := range ops {
		if o.do != nil {
			if err := o.do(); !errors.Is(err, o.wantErr) {
				t.Fatalf("%s: %v, want %v", o.name, err, o.wantErr)
			}
		}
		if o.get == nil {
			continue
		}
		got, err := o.get()
		if err != nil {
			t.Fatalf("%s: get: %v", o.name, err)
		}
		if o.want == "" {
			if got != nil {
				t.Errorf("%s: got %q, want nil", o.name, got)
			}
		} else if string(got) != o.want {
			t.Errorf("%s: got %q, want %q", o.name, got, o.want)
		}
	}
}

func mapPtr(m map[string]struct{}) uintptr { return reflect.ValueOf(m).Pointer() }

func TestBlocking(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice", "bob")

	steps := []struct {
		name  string
		do    func() error
		err   error
		wantL []string
	}{
		{"empty", nil, nil, nil},
		{"block two", func() error { return db.Block(ctx, "alice", "spam.example", "eve@example.org") }, nil, []string{"eve@example.org", "spam.example"}},
		{"block dup and full", func() error { return db.Block(ctx, "alice", "eve@example.org", "mallory@example.org/phone") }, nil,
			[]string{"eve@example.org", "mallory@example.org/phone", "spam.example"}},
		{"block nothing", func() error { return db.Block(ctx, "alice") }, nil, []string{"eve@example.org", "mallory@example.org/phone", "spam.example"}},
		{"block empty jid", func() error { return db.Block(ctx, "alice", "") }, ErrInvalid, []string{"eve@example.org", "mallory@example.org/phone", "spam.example"}},
		{"unblock one and absent", func() error { return db.Unblock(ctx, "alice", "eve@example.org", "zed@example.org") }, nil,
			[]string{"mallory@example.org/phone", "spam.example"}},
		{"unblock all", func() error { return db.Unblock(ctx, "alice") }, nil, nil},
		{"block unknown user", func() error { return db.Block(ctx, "nobody", "x.example") }, ErrNoUser, nil},
	}
	for _, s := range steps {
		if s.do != nil {
			if err := s.do(); !errors.Is(err, s.err) {
				t.Fatalf("%s: %v, want %v", s.name, err, s.err)
			}
		}
		l, err := db.Blocklist(ctx, "alice")
		if err != nil || !slices.Equal(l, s.wantL) {
			t.Errorf("%s: Blocklist = %v, %v; want %v", s.name, l, err, s.wantL)
		}
		set, err := db.BlockedSet(ctx, "alice")
		if err != nil || len(set) != len(s.wantL) {
			t.Errorf("%s: BlockedSet = %v, %v; want %v", s.name, set, err, s.wantL)
		}
		for _, j := range s.wantL {
			if _, ok := set[j]; !ok {
				t.Errorf("%s: BlockedSet lacks %q", s.name, j)
			}
		}
	}
	if l, _ := db.Blocklist(ctx, "bob"); len(l) != 0 {
		t.Errorf("bob's blocklist = %v", l)
	}
}

func TestBlockedSetCache(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")
	if err := db.Block(ctx, "alice", "a.example"); err != nil {
		t.Fatal(err)
	}
	s1, _ := db.BlockedSet(ctx, "alice")
	s2, _ := db.BlockedSet(ctx, "alice")
	if mapPtr(s1) != mapPtr(s2) {
		t.Error("second BlockedSet was not served from the cache")
	}
	// Changes made behind the cache's back are not seen: proof it is cached.
	if _, err := db.w.ExecContext(ctx, `INSERT INTO blocklist (username, jid) VALUES ('alice', 'sneaky.example')`); err != nil {
		t.Fatal(err)
	}
	if s, _ := db.BlockedSet(ctx, "alice"); len(s) != 1 {
		t.Errorf("cached set changed without invalidation: %v", s)
	}

	for _, inv := range []struct {
		name string
		do   func() error
		want []string
	}{
		{"block", func() error { return db.Block(ctx, "alice", "b.example") }, []string{"a.example", "b.example", "sneaky.example"}},
		{"unblock", func() error { return db.Unblock(ctx, "alice", "a.example") }, []string{"b.example", "sneaky.example"}},
		{"unblock all", func() error { return db.Unblock(ctx, "alice") }, nil},
		{"failed block", func() error { return db.Block(ctx, "alice", "c.example", "") }, nil},
	} {
		before, _ := db.BlockedSet(ctx, "alice")
		_ = inv.do()
		after, err := db.BlockedSet(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(inv.want) {
			t.Errorf("%s: set %v, want %v", inv.name, after, inv.want)
		}
		for _, j := range inv.want {
			if _, ok := after[j]; !ok {
				t.Errorf("%s: set lacks %q", inv.name, j)
			}
		}
		if inv.name != "failed block" && len(before) > 0 && mapPtr(before) == mapPtr(after) {
			t.Errorf("%s: cache not invalidated", inv.name)
		}
	}

	// Unknown users get an empty set and are not cached.
	s, err := db.BlockedSet(ctx, "nobody")
	if err != nil || len(s) != 0 {
		t.Errorf("BlockedSet(nobody) = %v, %v", s, err)
	}
	db.blockMu.Lock()
	_, cached := db.blockCache["nobody"]
	db.blockMu.Unlock()
	if cached {
		t.Error("unknown user's set was cached")
	}
}

func TestBlockedSetConcurrent(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				j := fmt.Sprintf("j%d-%d.example", g, i)
				if err := db.Block(ctx, "alice", j); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if err := db.Unblock(ctx, "alice", j); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if _, err := db.BlockedSet(ctx, "alice"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	l, err := db.Blocklist(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	set, err := db.BlockedSet(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(set) != len(l) {
		t.Fatalf("cached set has %d entries, table %d", len(set), len(l))
	}
	for _, j := range l {
		if _, ok := set[j]; !ok {
			t.Errorf("cached set lacks %q", j)
		}
	}
}

func TestGroups(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice", "bob", "carol")

	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"create staff", func() error { return db.CreateGroup(ctx, "staff") }, nil},
		{"create admins", func() error { return db.CreateGroup(ctx, "admins") }, nil},
		{"create empty-members", func() error { return db.CreateGroup(ctx, "empty") }, nil},
		{"create staff again", func() error { return db.CreateGroup(ctx, "staff") }, ErrGroupExists},
		{"create empty name", func() error { return db.CreateGroup(ctx, "") }, ErrInvalid},
		{"add bob staff", func() error { return db.AddToGroup(ctx, "staff", "bob") }, nil},
		{"add alice staff", func() error { return db.AddToGroup(ctx, "staff", "alice") }, nil},
		{"add alice staff again", func() error { return db.AddToGroup(ctx, "staff", "alice") }, nil},
		{"add alice admins", func() error { return db.AddToGroup(ctx, "admins", "alice") }, nil},
		{"add carol admins", func() error { return db.AddToGroup(ctx, "admins", "carol") }, nil},
		{"add to missing group", func() error { return db.AddToGroup(ctx, "nope", "alice") }, ErrNotFound},
		{"add missing user", func() error { return db.AddToGroup(ctx, "staff", "nobody") }, ErrNoUser},
		{"remove carol admins", func() error { return db.RemoveFromGroup(ctx, "admins", "carol") }, nil},
		{"remove carol admins again", func() error { return db.RemoveFromGroup(ctx, "admins", "carol") }, ErrNotFound},
		{"delete missing group", func() error { return db.DeleteGroup(ctx, "nope") }, ErrNotFound},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.want) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
	}
	if g, err := db.Groups(ctx); err != nil || !slices.Equal(g, []string{"admins", "empty", "staff"}) {
		t.Errorf("Groups = %v, %v", g, err)
	}
	members := []struct {
		group string
		want  []string
		err   error
	}{
		{"staff", []string{"alice", "bob"}, nil},
		{"admins", []string{"alice"}, nil},
		{"empty", nil, nil},
		{"nope", nil, ErrNotFound},
	}
	for _, m := range members {
		got, err := db.GroupMembers(ctx, m.group)
		if !errors.Is(err, m.err) || !slices.Equal(got, m.want) {
			t.Errorf("GroupMembers(%q) = %v, %v; want %v, %v", m.group, got, err, m.want, m.err)
		}
	}
	userGroups := map[string][]string{"alice": {"admins", "staff"}, "bob": {"staff"}, "carol": nil, "nobody": nil}
	for u, want := range userGroups {
		if got, err := db.UserGroups(ctx, u); err != nil || !slices.Equal(got, want) {
			t.Errorf("UserGroups(%q) = %v, %v; want %v", u, got, err, want)
		}
	}
	if err := db.DeleteGroup(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.UserGroups(ctx, "bob"); len(got) != 0 {
		t.Errorf("bob still in %v after group deletion", got)
	}
	if _, err := db.GroupMembers(ctx, "staff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GroupMembers(deleted) = %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	db, _ := openTest(t)
	mustCreate(t, db, "alice")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := db.StoreOffline(ctx, "alice", time.Now(), []byte("<message/>"), 10); !errors.Is(err, context.Canceled) {
		t.Errorf("StoreOffline with canceled ctx: %v", err)
	}
	if _, _, err := db.Roster(ctx, "alice"); !errors.Is(err, context.Canceled) {
		t.Errorf("Roster with canceled ctx: %v", err)
	}
	if n, err := db.OfflineCount(t.Context(), "alice"); err != nil || n != 0 {
		t.Errorf("count %d, %v", n, err)
	}
}

func BenchmarkExists(b *testing.B) {
	db, _ := openTest(b)
	ctx := context.Background()
	for i := range 1000 {
		if err := db.CreateUser(ctx, fmt.Sprintf("user%d", i), auth.Credentials{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _ := db.Exists(ctx, "user500"); !ok {
				b.Error("missing")
				return
			}
		}
	})
}

func BenchmarkStoreOffline(b *testing.B) {
	db, _ := openTest(b)
	ctx := context.Background()
	mustCreate(b, db, "alice")
	msg := []byte(`<message from='bob@example.org/phone' to='alice@example.org' type='chat' id='x1'><body>hello there</body></message>`)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%1000 == 999 {
			b.StopTimer()
			if _, err := db.TakeOffline(ctx, "alice"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if err := db.StoreOffline(ctx, "alice", now, msg, 1000); err != nil {
			b.Fatal(err)
		}
	}
}
