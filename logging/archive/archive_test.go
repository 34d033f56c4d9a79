package archive

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every record type appends, chains and verifies; seq is gap-free and
// ts_ms follows the clock.
func TestAppendEveryRecordType(t *testing.T) {
	a, clk := openTest(t)
	recs := []Record{
		msg("alice@example.com", "bob@partner.example", "hello"),
		&SessionEvent{Event: EventLogon, Account: "alice@example.com", Resource: "laptop", ConnID: 7, ClientAddr: "10.0.0.5:5555", TLSVersion: "TLS 1.3", SASLMechanism: "SCRAM-SHA-256", Started: t0},
		&SessionEvent{Event: EventLogoff, Account: "alice@example.com", Resource: "laptop", ConnID: 7, ClientAddr: "10.0.0.5:5555", TLSVersion: "TLS 1.3", SASLMechanism: "SCRAM-SHA-256", Started: t0, Duration: time.Minute},
		&LinkEvent{Event: EventUp, Zone: ZoneTransport, Network: "irc.example", ConnID: 9, PeerAddr: "127.0.0.1:4000"},
		&LinkEvent{Event: EventDown, Zone: ZoneTransport, Network: "irc.example", ConnID: 9, PeerAddr: "127.0.0.1:4000", Since: t0, Reason: "closed"},
		&FileTransfer{Direction: Out, Zone: ZoneRemote, Network: "partner.example", Account: "alice@example.com", Peer: "bob@partner.example", PeerJID: "bob@partner.example", FileName: "q3.pdf", Size: 1234, MediaType: "application/pdf", SHA256: strings.Repeat("ab", 32), URL: "https://upload.example.com/q3.pdf", ScanResult: "clean", Verdict: Allow},
		&FileTransfer{Direction: Out, Zone: ZoneRemote, Network: "partner.example", Account: "alice@example.com", Peer: "bob@partner.example", PeerJID: "bob@partner.example", FileName: "unknown.bin", Size: -1, Verdict: Deny, Rule: "files.block-executables"},
		&PolicyAction{Action: "redact", Rule: "content.iban", PolicyVersion: "v3", Account: "alice@example.com", Peer: "bob@partner.example", StanzaSeq: 1, Detail: "1 match"},
		&AdminAction{Actor: "os:root", Origin: "cli", Action: "user.add", Target: "carol@example.com"},
	}
	for i, r := range recs {
		clk.Add(time.Second)
		rc := mustAppend(t, a, r)
		if rc.Seq != int64(i+1) {
			t.Fatalf("record %d got seq %d", i, rc.Seq)
		}
		if !rc.Time.Equal(clk.Now()) {
			t.Fatalf("record %d time %v, clock %v", i, rc.Time, clk.Now())
		}
	}
	rep := mustVerify(t, a)
	if rep.Rows != int64(len(recs)) || rep.FirstSeq != 1 || rep.LastSeq != int64(len(recs)) {
		t.Fatalf("report %+v", rep)
	}
	head, err := a.Head(context.Background())
	if err != nil || head.Hash != rep.Head || head.Seq != rep.LastSeq {
		t.Fatalf("head %+v %v, report head %s", head, err, rep.Head)
	}
	// NULLs where the record had nothing to say.
	db := rawDB(t, a.Path())
	var size, dur any
	if err := db.QueryRow(`SELECT size_bytes FROM file_transfers WHERE file_name = 'unknown.bin'`).Scan(&size); err != nil || size != nil {
		t.Fatalf("unknown size stored as %v (%v), want NULL", size, err)
	}
	if err := db.QueryRow(`SELECT duration_ms FROM session_events WHERE event = 'logon'`).Scan(&dur); err != nil || dur != nil {
		t.Fatalf("logon duration stored as %v (%v), want NULL", dur, err)
	}
}

// Records the schema would refuse are rejected before they reach a batch
// (one bad record must not fail other crossings' commits).
func TestInvalidRecords(t *testing.T) {
	a, _ := openTest(t)
	good := msg("a@x", "b@y", "hi")
	for _, tc := range []struct {
		name string
		rec  Record
	}{
		{"direction", func() Record { r := *good; r.Direction = "sideways"; return &r }()},
		{"zone", func() Record { r := *good; r.Zone = "moon"; return &r }()},
		{"kind", func() Record { r := *good; r.Kind = "nonza"; return &r }()},
		{"verdict", func() Record { r := *good; r.Verdict = ""; return &r }()},
		{"raw", func() Record { r := *good; r.Raw = ""; return &r }()},
		{"session event", &SessionEvent{Event: "hello"}},
		{"link zone", &LinkEvent{Event: EventUp, Zone: ZoneLocal}},
		{"admin actor", &AdminAction{Origin: "cli", Action: "x"}},
		{"policy action", &PolicyAction{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.Append(context.Background(), tc.rec); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

// Concurrent appenders share batches (group commit); every record gets a
// distinct seq and the chain verifies.
func TestGroupCommitConcurrent(t *testing.T) {
	a, _ := openTest(t, func(o *Options) { o.MaxBatch = 64 })
	const workers, each = 8, 250
	var wg sync.WaitGroup
	seqs := make(chan int64, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rc, err := a.Append(context.Background(), msg(fmt.Sprintf("u%d@example.com", w), "p@partner.example", fmt.Sprintf("m%d", i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- rc.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := make(map[int64]bool)
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d handed out twice", s)
		}
		seen[s] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d receipts, want %d", len(seen), workers*each)
	}
	rep := mustVerify(t, a)
	if rep.Rows != workers*each {
		t.Fatalf("rows %d", rep.Rows)
	}
}

// Close commits what is queued; Append afterwards fails with ErrClosed;
// a reopened archive continues the chain.
func TestCloseAndReopen(t *testing.T) {
	dir := t.TempDir()
	o := Options{Path: filepath.Join(dir, "archive.db"), AnchorPath: filepath.Join(dir, "anchor")}
	a, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, a, msg("a@x.example", "b@y.example", "one"))
	id := a.ID()
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(context.Background(), msg("a@x.example", "b@y.example", "late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	anchors, torn, err := ReadAnchors(o.AnchorPath)
	if err != nil || torn || len(anchors) != 1 || anchors[0].Seq != 1 || anchors[0].ArchiveID != id {
		t.Fatalf("anchors after close: %+v torn=%v err=%v", anchors, torn, err)
	}
	b, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if b.ID() != id {
		t.Fatalf("archive id changed: %s -> %s", id, b.ID())
	}
	if rc := mustAppend(t, b, msg("a@x.example", "b@y.example", "two")); rc.Seq != 2 {
		t.Fatalf("seq after reopen %d", rc.Seq)
	}
	mustVerify(t, b)
}

// Two archives (server and CLI) append to the same file: each reads the
// head inside its write transaction, so the chain stays linear.
func TestTwoWritersShareTheChain(t *testing.T) {
	a, _ := openTest(t)
	b, err := Open(context.Background(), Options{Path: a.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	var wg sync.WaitGroup
	for _, ar := range []*Archive{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if _, err := ar.Append(context.Background(), msg("a@x.example", "b@y.example", fmt.Sprint(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if rep := mustVerify(t, a); rep.Rows != 200 {
		t.Fatalf("rows %d", rep.Rows)
	}
}

// A reviewer who forgot -readonly cannot change or delete archived rows:
// triggers refuse.
func TestRowsAreAppendOnly(t *testing.T) {
	a, _ := openTest(t)
	mustAppend(t, a, msg("a@x.example", "b@y.example", "keep me"))
	db := rawDB(t, a.Path())
	for _, q := range []string{
		`UPDATE stanzas SET body = 'changed'`,
		`DELETE FROM stanzas`,
		`UPDATE records SET hash = 'x'`,
		`DELETE FROM records`,
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "archive") {
			t.Errorf("%s: got %v, want the trigger's refusal", q, err)
		}
	}
	mustVerify(t, a)
}

// Verify finds each kind of tampering and names the first row affected.
func TestVerifyDetectsTampering(t *testing.T) {
	unguard := []string{
		`DROP TRIGGER stanzas_no_update`, `DROP TRIGGER stanzas_no_delete`,
		`DROP TRIGGER records_no_update`, `DROP TRIGGER records_no_delete`,
	}
	for _, tc := range []struct {
		name string
		sql  []string
		seq  int64
		kind ProblemKind
	}{
		{name: "modified body", sql: []string{`UPDATE stanzas SET body = 'nothing to see' WHERE seq = 5`}, seq: 5, kind: Altered},
		{name: "modified timestamp", sql: []string{`UPDATE records SET ts_ms = ts_ms + 1 WHERE seq = 3`}, seq: 3, kind: Altered},
		{name: "modified type of value", sql: []string{`UPDATE stanzas SET conn_id = '7' WHERE seq = 4`}, seq: 4, kind: Altered},
		{name: "deleted row", sql: []string{`DELETE FROM stanzas WHERE seq = 6`, `DELETE FROM records WHERE seq = 6`}, seq: 6, kind: Missing},
		{name: "deleted detail only", sql: []string{`DELETE FROM stanzas WHERE seq = 2`}, seq: 2, kind: Missing},
		{name: "deleted first rows", sql: []string{`DELETE FROM stanzas WHERE seq <= 2`, `DELETE FROM records WHERE seq <= 2`}, seq: 1, kind: Missing},
		{name: "inserted detail row", sql: []string{`INSERT INTO stanzas SELECT 100, ts_ms, ts_utc, direction, zone, network, account, local_jid, peer, peer_jid, legacy_id, kind, type, stanza_id, origin_id, thread, subject, 'forged', verdict, rule, policy_version, deny_condition, deny_text, conn_id, route_seq, raw, raw_delivered FROM stanzas WHERE seq = 1`}, seq: 100, kind: Inserted},
		// Someone replaced row 4 and recomputed its own hash: the next
		// row no longer links to it.
		{name: "replaced row", sql: []string{`UPDATE stanzas SET body = 'replaced' WHERE seq = 4`}, seq: 5, kind: BrokenLink},
		{name: "truncated tail", sql: []string{`DELETE FROM stanzas WHERE seq > 7`, `DELETE FROM records WHERE seq > 7`}, seq: 10, kind: Truncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clk := openTest(t)
			for i := range 10 {
				clk.Add(time.Minute)
				mustAppend(t, a, msg("alice@example.com", "bob@partner.example", fmt.Sprintf("message %d", i)))
			}
			if err := a.AnchorNow(context.Background()); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, a)
			db := rawDB(t, a.Path())
			exec(t, db, unguard...)
			exec(t, db, tc.sql...)
			if tc.name == "replaced row" {
				rehash(t, db, 4, 4)
			}
			rep := verify(t, a)
			if rep.OK() {
				t.Fatal("verify passed a tampered archive")
			}
			first := rep.Problems[0]
			if first.Seq != tc.seq || first.Kind != tc.kind {
				t.Fatalf("first problem %v, want row %d %s (all: %v)", first, tc.seq, tc.kind, rep.Problems)
			}
		})
	}
}

// Rewriting the whole chain (every hash recomputed) passes the hash and
// link checks but not the anchor.
func TestVerifyDetectsRewrittenChain(t *testing.T) {
	a, clk := openTest(t)
	for i := range 5 {
		clk.Add(time.Minute)
		mustAppend(t, a, msg("alice@example.com", "bob@partner.example", fmt.Sprintf("message %d", i)))
	}
	if err := a.AnchorNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, a.Path())
	exec(t, db, `DROP TRIGGER stanzas_no_update`, `DROP TRIGGER records_no_update`,
		`UPDATE stanzas SET body = 'rewritten' WHERE seq = 2`)
	rehash(t, db, 1, 1<<40)
	rep := verify(t, a)
	if rep.OK() {
		t.Fatal("verify passed a rewritten chain")
	}
	if p := rep.Problems[0]; p.Kind != AnchorMismatch || p.Seq != 5 {
		t.Fatalf("problems %v, want an anchor mismatch at row 5", rep.Problems)
	}
	// Without the anchor file nothing shows: that is what the anchor is for.
	rep, err := a.Verify(context.Background(), VerifyOptions{AnchorPath: filepath.Join(t.TempDir(), "none")})
	if err != nil || !rep.OK() || !rep.NoAnchorFile {
		t.Fatalf("without anchors: %+v %v", rep, err)
	}
}
