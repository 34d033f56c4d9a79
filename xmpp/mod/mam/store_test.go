package mam

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func openTestStore(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mam.db")
	s, err := OpenStore(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fill archives n messages for alice, alternating bob/desk, carol/phone
// and bob/phone, one a minute from t0, plus noise in dave's archive. It
// returns alice's ids in archive order.
func fill(t testing.TB, s *Store, n int) []string {
	t.Helper()
	ctx := context.Background()
	peers := []struct{ bare, res string }{{"bob@example.com", "desk"}, {"carol@example.org", "phone"}, {"bob@example.com", "phone"}}
	var ids []string
	for i := range n {
		p := peers[i%len(peers)]
		id, err := s.Append(ctx, Entry{User: "alice", Time: t0.Add(time.Duration(i) * time.Minute), Peer: p.bare, PeerRes: p.res,
			XML: fmt.Appendf(nil, "<message type='chat'><body>%d</body></message>", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if _, err := s.Append(ctx, Entry{User: "dave", Time: t0.Add(time.Duration(i) * time.Minute), Peer: p.bare,
			XML: []byte("<message><body>noise</body></message>")}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func TestStoreQuery(t *testing.T) {
	s, _ := openTestStore(t)
	ids := fill(t, s, 10)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	tests := []struct {
		name     string
		f        Filter
		p        Page
		want     []int // indexes into ids
		complete bool
		count    int
	}{
		{"everything", Filter{}, Page{Max: 50}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, true, 10},
		{"first page", Filter{}, Page{Max: 3}, []int{0, 1, 2}, false, 10},
		{"page after", Filter{}, Page{Max: 3, After: ids[2]}, []int{3, 4, 5}, false, 10},
		{"last forward page", Filter{}, Page{Max: 3, After: ids[6]}, []int{7, 8, 9}, true, 10},
		{"after the last", Filter{}, Page{Max: 3, After: ids[9]}, nil, true, 10},
		{"last page", Filter{}, Page{Max: 3, Backward: true}, []int{7, 8, 9}, false, 10},
		{"page before", Filter{}, Page{Max: 3, Before: ids[7], Backward: true}, []int{4, 5, 6}, false, 10},
		{"first backward page", Filter{}, Page{Max: 3, Before: ids[3], Backward: true}, []int{0, 1, 2}, true, 10},
		{"short first backward page", Filter{}, Page{Max: 3, Before: ids[2], Backward: true}, []int{0, 1}, true, 10},
		{"count only", Filter{}, Page{Max: 0}, nil, false, 10},
		{"with bare", Filter{With: "bob@example.com"}, Page{Max: 50}, []int{0, 2, 3, 5, 6, 8, 9}, true, 7},
		{"with full", Filter{With: "bob@example.com", WithRes: "phone"}, Page{Max: 50}, []int{2, 5, 8}, true, 3},
		{"with paged", Filter{With: "carol@example.org"}, Page{Max: 2}, []int{1, 4}, false, 3},
		{"with paged back", Filter{With: "carol@example.org"}, Page{Max: 2, Backward: true}, []int{4, 7}, false, 3},
		{"with unknown", Filter{With: "eve@example.net"}, Page{Max: 50}, nil, true, 0},
		{"start", Filter{Start: at(7)}, Page{Max: 50}, []int{7, 8, 9}, true, 3},
		{"end", Filter{End: at(1)}, Page{Max: 50}, []int{0, 1}, true, 2},
		{"start and end", Filter{Start: at(3), End: at(5)}, Page{Max: 50}, []int{3, 4, 5}, true, 3},
		{"end before start", Filter{Start: at(5), End: at(3)}, Page{Max: 50}, nil, true, 0},
		{"start and with", Filter{Start: at(3), With: "carol@example.org"}, Page{Max: 50}, []int{4, 7}, true, 2},
		{"after-id", Filter{AfterID: ids[7]}, Page{Max: 50}, []int{8, 9}, true, 2},
		{"before-id", Filter{BeforeID: ids[2]}, Page{Max: 50}, []int{0, 1}, true, 2},
		{"between ids", Filter{AfterID: ids[2], BeforeID: ids[6]}, Page{Max: 50}, []int{3, 4, 5}, true, 3},
		{"between ids paged", Filter{AfterID: ids[2], BeforeID: ids[6]}, Page{Max: 2, After: ids[3]}, []int{4, 5}, true, 3},
		{"rsm after narrows nothing before after-id", Filter{AfterID: ids[5]}, Page{Max: 50, After: ids[1]}, []int{6, 7, 8, 9}, true, 4},
		{"ids", Filter{IDs: []string{ids[8], ids[1], ids[4]}}, Page{Max: 50}, []int{1, 4, 8}, true, 3},
		{"ids twice", Filter{IDs: []string{ids[8], ids[8]}}, Page{Max: 50}, []int{8}, true, 1},
		{"ids paged", Filter{IDs: []string{ids[8], ids[1], ids[4]}}, Page{Max: 2}, []int{1, 4}, false, 3},
		{"ids and with", Filter{IDs: []string{ids[1], ids[2]}, With: "carol@example.org"}, Page{Max: 50}, []int{1}, true, 1},
		{"both rsm bounds", Filter{}, Page{Max: 50, After: ids[1], Before: ids[5], Backward: true}, []int{2, 3, 4}, true, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Query(context.Background(), "alice", tc.f, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, it := range res.Items {
				got = append(got, slices.Index(ids, it.ID))
			}
			if !slices.Equal(got, tc.want) || res.Complete != tc.complete || res.Count != tc.count {
				t.Fatalf("got %v complete=%v count=%d, want %v complete=%v count=%d",
					got, res.Complete, res.Count, tc.want, tc.complete, tc.count)
			}
			for _, it := range res.Items {
				i := slices.Index(ids, it.ID)
				if !it.Time.Equal(at(i)) || string(it.XML) != fmt.Sprintf("<message type='chat'><body>%d</body></message>", i) {
					t.Fatalf("item %d: %v %s", i, it.Time, it.XML)
				}
			}
		})
	}
}

func TestStoreUnknownIDs(t *testing.T) {
	s, _ := openTestStore(t)
	ids := fill(t, s, 3)
	dave, err := s.Query(context.Background(), "dave", Filter{}, Page{Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	daveID := dave.Items[0].ID // exists, but in someone else's archive
	for _, tc := range []struct {
		name string
		f    Filter
		p    Page
	}{
		{"rsm after", Filter{}, Page{Max: 5, After: "nope"}},
		{"rsm before", Filter{}, Page{Max: 5, Before: "nope", Backward: true}},
		{"after-id", Filter{AfterID: "nope"}, Page{Max: 5}},
		{"before-id", Filter{BeforeID: "nope"}, Page{Max: 5}},
		{"one of the ids", Filter{IDs: []string{ids[0], "nope"}}, Page{Max: 5}},
		{"another user's id", Filter{}, Page{Max: 5, After: daveID}},
		{"another user's id in ids", Filter{IDs: []string{daveID}}, Page{Max: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Query(context.Background(), "alice", tc.f, tc.p); !errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
		})
	}
}

func TestStoreSameStampKeepsArchiveOrder(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		id, err := s.Append(ctx, Entry{User: "alice", Time: t0, Peer: "bob@example.com", XML: fmt.Appendf(nil, "<message><body>%d</body></message>", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var got []string
	page := Page{Max: 2}
	for {
		res, err := s.Query(ctx, "alice", Filter{}, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range res.Items {
			got = append(got, it.ID)
		}
		if res.Complete {
			break
		}
		page.After = res.Items[len(res.Items)-1].ID
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("paged %v, archived %v", got, ids)
	}
}

func TestStorePrune(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	ids := fill(t, s, 12) // alice and dave each 12, one a minute
	n, err := s.Prune(ctx, t0.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("pruned %d, want 10 (5 each for alice and dave)", n)
	}
	res, err := s.Query(ctx, "alice", Filter{}, Page{Max: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 7 || res.Items[0].ID != ids[5] {
		t.Fatalf("after prune: count %d, first %s, want 7 from %s", res.Count, res.Items[0].ID, ids[5])
	}
	// A pruned id is unknown now.
	if _, err := s.Query(ctx, "alice", Filter{}, Page{Max: 5, After: ids[0]}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pruned id: %v", err)
	}
	first, last, ok, err := s.Bounds(ctx, "alice")
	if err != nil || !ok || first.ID != ids[5] || last.ID != ids[11] || !last.Time.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("bounds %v %v %v %v", first, last, ok, err)
	}
}

func TestStorePruneBatches(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	for i := range pruneBatch + 7 {
		if _, err := s.Append(ctx, Entry{User: "alice", Time: t0.Add(time.Duration(i) * time.Millisecond), Peer: "bob@example.com", XML: []byte("<message/>")}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Prune(ctx, t0.Add(time.Hour))
	if err != nil || n != pruneBatch+7 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if _, _, ok, err := s.Bounds(ctx, "alice"); ok || err != nil {
		t.Fatalf("archive not empty: %v %v", ok, err)
	}
}

func TestStorePrefs(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	if _, ok, err := s.Prefs(ctx, "alice"); ok || err != nil {
		t.Fatalf("prefs before any set: %v %v", ok, err)
	}
	want := Prefs{Default: DefaultRoster, Always: []string{"bob@example.com"}, Never: []string{"eve@example.net", "mallory@example.net/x"}}
	if err := s.SetPrefs(ctx, "alice", want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Prefs(ctx, "alice")
	if err != nil || !ok || got.Default != want.Default || !slices.Equal(got.Always, want.Always) || !slices.Equal(got.Never, want.Never) {
		t.Fatalf("got %+v %v %v, want %+v", got, ok, err, want)
	}
	// Replacing drops the old lists; a JID on both lists is stored as never.
	if err := s.SetPrefs(ctx, "alice", Prefs{Default: DefaultNever, Always: []string{"x@example.com"}, Never: []string{"x@example.com"}}); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.Prefs(ctx, "alice")
	if got.Default != DefaultNever || len(got.Always) != 0 || !slices.Equal(got.Never, []string{"x@example.com"}) {
		t.Fatalf("after replace: %+v", got)
	}
	if err := s.SetPrefs(ctx, "alice", Prefs{Default: "sometimes"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad default: %v", err)
	}
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Prefs(ctx, "alice"); ok {
		t.Fatal("prefs survive DeleteUser")
	}
}

func TestStoreDeleteUser(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	fill(t, s, 3)
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Query(ctx, "alice", Filter{}, Page{Max: 5}); err != nil || res.Count != 0 {
		t.Fatalf("alice after delete: %+v %v", res, err)
	}
	if res, err := s.Query(ctx, "dave", Filter{}, Page{Max: 5}); err != nil || res.Count != 3 {
		t.Fatalf("dave after alice's delete: %+v %v", res, err)
	}
}

func TestStoreAppendInvalid(t *testing.T) {
	s, _ := openTestStore(t)
	for _, e := range []Entry{
		{Peer: "bob@example.com", XML: []byte("<message/>")},
		{User: "alice", XML: []byte("<message/>")},
		{User: "alice", Peer: "bob@example.com"},
	} {
		if _, err := s.Append(context.Background(), e); !errors.Is(err, ErrInvalid) {
			t.Errorf("Append(%+v) = %v, want ErrInvalid", e, err)
		}
	}
}

// zeroReader makes every archive id the same, to exercise the collision path.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestStoreIDCollision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mam.db")
	s, err := OpenStore(context.Background(), path, zeroReader{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := Entry{User: "alice", Time: t0, Peer: "bob@example.com", XML: []byte("<message/>")}
	if _, err := s.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), e); err == nil {
		t.Fatal("a constant random source went unnoticed")
	}
	e.User = "bob" // ids are unique per archive, not across archives
	if _, err := s.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReopenAndVersion(t *testing.T) {
	s, path := openTestStore(t)
	fill(t, s, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive file mode %v, %v", fi.Mode(), err)
	}
	s2, err := OpenStore(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	last, err := s2.LastTime(context.Background())
	if err != nil || !last.Equal(t0.Add(time.Minute)) {
		t.Fatalf("LastTime = %v, %v", last, err)
	}
	if _, err := s2.w.Exec(`INSERT INTO mam_migrations (version) VALUES (?)`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := OpenStore(context.Background(), path, nil); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("newer schema: %v", err)
	}
}

// TestQueryPlans keeps the indexes honest: each query shape must search an
// index, never scan the table or sort a user's whole archive.
func TestQueryPlans(t *testing.T) {
	s, _ := openTestStore(t)
	fill(t, s, 3)
	p := &pos{1, 1}
	for _, tc := range []struct {
		c    condition
		kind string
		want string
	}{
		{condition{}, "asc", "archive_user_ts"},
		{condition{}, "desc", "archive_user_ts"},
		{condition{lower: p}, "asc", "archive_user_ts"},
		{condition{upper: p}, "desc", "archive_user_ts"},
		{condition{f: Filter{Start: t0, End: t0}}, "count", "archive_user_ts"},
		{condition{f: Filter{With: "b"}, lower: p}, "asc", "archive_user_peer_ts"},
		{condition{f: Filter{With: "b", WithRes: "r"}, upper: p}, "desc", "archive_user_peer_ts"},
		{condition{idsJSON: `["a"]`}, "asc", "archive_user_sid"},
	} {
		q := "EXPLAIN QUERY PLAN " + tc.c.sql(tc.kind)
		args := tc.c.args()
		if tc.kind != "count" {
			args = append(args, 1)
		}
		rows, err := s.r.Query(q, args...)
		if err != nil {
			t.Fatal(err)
		}
		plan := collectPlan(t, rows)
		t.Logf("%s: %s", tc.kind, plan)
		if !containsAll(plan, "SEARCH", tc.want) || containsAll(plan, "TEMP B-TREE") && tc.c.idsJSON == "" {
			t.Errorf("%s: plan %q, want a search of %s", tc.c.sql(tc.kind), plan, tc.want)
		}
	}
}

func collectPlan(t *testing.T, rows *sql.Rows) string {
	t.Helper()
	defer rows.Close()
	var out string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		out += detail + "; "
	}
	return out
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
