package archive

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)

// openTest opens an archive in a temp dir with a test clock; it is closed
// when the test ends.
func openTest(t testing.TB, mod ...func(*Options)) (*Archive, *clock) {
	t.Helper()
	dir := t.TempDir()
	clk := newClock(t0)
	o := Options{Path: filepath.Join(dir, "archive.db"), AnchorPath: filepath.Join(dir, "archive.anchor"), Now: clk.Now}
	for _, m := range mod {
		m(&o)
	}
	a, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a, clk
}

// msg returns an outbound chat message record.
func msg(account, peer, body string) *Stanza {
	return &Stanza{
		Direction: Out, Zone: ZoneRemote, Network: domainOf(peer),
		Account: account, LocalJID: account + "/laptop", Peer: peer, PeerJID: peer,
		Kind: "message", Type: "chat", StanzaID: "id-" + body, Body: body, Verdict: Allow,
		Raw: fmt.Sprintf(`<message to="%s" from="%s/laptop" type="chat"><body>%s</body></message>`, peer, account, body),
	}
}

func domainOf(j string) string {
	for i := len(j) - 1; i >= 0; i-- {
		if j[i] == '@' {
			return j[i+1:]
		}
	}
	return j
}

func mustAppend(t testing.TB, a *Archive, r Record) Receipt {
	t.Helper()
	rc, err := a.Append(context.Background(), r)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return rc
}

// rawDB opens the archive file with a plain connection, as someone with
// file access (a reviewer, an attacker) would.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db := sql.OpenDB(connector{dsn: "file:" + path + "?_busy_timeout=5000"})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t testing.TB, db *sql.DB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func verify(t testing.TB, a *Archive) *Report {
	t.Helper()
	rep, err := a.Verify(context.Background(), VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func mustVerify(t testing.TB, a *Archive) *Report {
	t.Helper()
	rep := verify(t, a)
	if !rep.OK() {
		t.Fatalf("verify failed: %v", rep.Problems)
	}
	return rep
}

var admin = Actor{Name: "os:tester", Origin: "cli"}

// rehash recomputes the hashes of rows first..last as an attacker with the
// documented algorithm would: each row's prev_hash is set to the hash of
// the row before it (from first+1 on) and its hash recomputed.
func rehash(t testing.TB, db *sql.DB, first, last int64) {
	t.Helper()
	ctx := context.Background()
	hs := newHasher()
	rows, err := db.Query(`SELECT seq, record_type, ts_ms, prev_hash FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq`, first, last)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		seq, ts int64
		typ     RecordType
		prev    string
	}
	var list []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.seq, &r.typ, &r.ts, &r.prev); err != nil {
			t.Fatal(err)
		}
		list = append(list, r)
	}
	rows.Close()
	prev := ""
	for _, r := range list {
		if prev == "" {
			prev = r.prev
		}
		d := tableOf(r.typ)
		st, err := db.Prepare(d.selectSQL("seq = ?"))
		if err != nil {
			t.Fatal(err)
		}
		vals, err := scanDetail(ctx, st, r.seq, nil, len(d.cols))
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		h, err := hs.rowHash(prev, r.seq, r.typ, r.ts, vals)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db, fmt.Sprintf(`UPDATE records SET prev_hash = '%s', hash = '%s' WHERE seq = %d`, prev, h, r.seq))
		prev = h
	}
}
