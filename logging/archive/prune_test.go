package archive

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// day fills one day per account pair: alice↔bob@partner, carol↔dave@other,
// plus a link event, starting at t0 + d days.
func fillDays(t *testing.T, a *Archive, clk *clock, days int) {
	t.Helper()
	for d := range days {
		clk.Set(t0.Add(time.Duration(d) * 24 * time.Hour))
		mustAppend(t, a, msg("alice@example.com", "bob@partner.example", fmt.Sprintf("day %d a", d)))
		clk.Add(time.Minute)
		mustAppend(t, a, msg("carol@example.com", "dave@other.example", fmt.Sprintf("day %d c", d)))
		clk.Add(time.Minute)
		mustAppend(t, a, &LinkEvent{Event: EventUp, Zone: ZoneRemote, Network: "partner.example", ConnID: uint64(d + 1), PeerAddr: "192.0.2.1:5269"})
	}
}

func countRows(t *testing.T, a *Archive, q string) int {
	t.Helper()
	var n int
	if err := rawDB(t, a.Path()).QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestPruneRespectsHoldsAndKeepsTheChain(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		holds     []Hold
		chunk     int
		removed   int64
		held      int64
		keptAlice int
		keptCarol int
	}{
		{name: "no holds", chunk: 1000, removed: 15, held: 0, keptAlice: 5, keptCarol: 5},
		{name: "hold on an account", holds: []Hold{{Case: "case-1", Account: "alice@example.com"}}, chunk: 1000, removed: 10, held: 5, keptAlice: 10, keptCarol: 5},
		{name: "hold on a peer, bounded", holds: []Hold{{Case: "case-2", Peer: "dave@other.example", From: t0.Add(24 * time.Hour), To: t0.Add(3*24*time.Hour - time.Second)}}, chunk: 1000, removed: 13, held: 2, keptAlice: 5, keptCarol: 7},
		{name: "hold on a pair", holds: []Hold{{Case: "case-3", Account: "alice@example.com", Peer: "bob@partner.example"}}, chunk: 1000, removed: 10, held: 5, keptAlice: 10, keptCarol: 5},
		{name: "hold on a pair that never talked", holds: []Hold{{Case: "case-4", Account: "alice@example.com", Peer: "dave@other.example"}}, chunk: 1000, removed: 15, keptAlice: 5, keptCarol: 5},
		{name: "case-wide hold on a period", holds: []Hold{{Case: "case-5", From: t0.Add(2 * 24 * time.Hour), To: t0.Add(3*24*time.Hour - time.Second)}}, chunk: 1000, removed: 12, held: 3, keptAlice: 6, keptCarol: 6},
		{name: "small chunks", holds: []Hold{{Case: "case-1", Account: "alice@example.com"}}, chunk: 3, removed: 10, held: 5, keptAlice: 10, keptCarol: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clk := openTest(t)
			fillDays(t, a, clk, 10)
			for _, h := range tc.holds {
				if _, err := a.AddHold(ctx, h, admin); err != nil {
					t.Fatal(err)
				}
			}
			clk.Set(t0.Add(30 * 24 * time.Hour))
			if err := a.AnchorNow(ctx); err != nil {
				t.Fatal(err)
			}
			before := t0.Add(5 * 24 * time.Hour) // days 0-4
			dry, err := a.Prune(ctx, PruneOptions{Before: before, By: admin, DryRun: true})
			if err != nil || dry.Removed != tc.removed || dry.Held != tc.held || len(dry.Checkpoints) != 0 {
				t.Fatalf("dry run: %+v %v", dry, err)
			}
			res, err := a.Prune(ctx, PruneOptions{Before: before, By: admin, Reason: "retention", ChunkRows: tc.chunk})
			if err != nil {
				t.Fatal(err)
			}
			if res.Removed != tc.removed || res.Held != tc.held {
				t.Fatalf("prune: %+v, want removed %d held %d", res, tc.removed, tc.held)
			}
			if n := countRows(t, a, `SELECT count(*) FROM stanzas WHERE account = 'alice@example.com'`); n != tc.keptAlice {
				t.Errorf("alice rows left %d, want %d", n, tc.keptAlice)
			}
			if n := countRows(t, a, `SELECT count(*) FROM stanzas WHERE account = 'carol@example.com'`); n != tc.keptCarol {
				t.Errorf("carol rows left %d, want %d", n, tc.keptCarol)
			}
			if n := countRows(t, a, `SELECT count(*) FROM admin_actions WHERE action = 'archive.prune'`); n != len(res.Checkpoints) || n == 0 {
				t.Errorf("%d archive.prune admin rows for %d checkpoints", n, len(res.Checkpoints))
			}
			rep := mustVerify(t, a)
			if rep.PrunedRows != tc.removed {
				t.Errorf("verify counts %d pruned rows, want %d", rep.PrunedRows, tc.removed)
			}
			if rep.AnchorsHit == 0 {
				t.Errorf("the anchor was not checked: %+v", rep)
			}
			// Pruning again removes nothing more and still verifies.
			again, err := a.Prune(ctx, PruneOptions{Before: before, By: admin})
			if err != nil || again.Removed != 0 {
				t.Fatalf("second prune: %+v %v", again, err)
			}
			// Once the holds are released, the held rows go too.
			hs, err := a.Holds(ctx, false)
			if err != nil || len(hs) != len(tc.holds) {
				t.Fatalf("holds %v %v", hs, err)
			}
			for _, h := range hs {
				if err := a.ReleaseHold(ctx, h.ID, "case closed", admin); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.ReleaseHold(ctx, 999, "", admin); !errors.Is(err, ErrNoHold) {
				t.Fatalf("release of an unknown hold: %v", err)
			}
			last, err := a.Prune(ctx, PruneOptions{Before: before, By: admin})
			if err != nil || last.Removed != tc.held {
				t.Fatalf("prune after release: %+v %v", last, err)
			}
			rep = mustVerify(t, a)
			if rep.PrunedRows != 15 {
				t.Errorf("pruned rows %d, want 15", rep.PrunedRows)
			}
			all, err := a.Holds(ctx, true)
			if err != nil || len(all) != len(tc.holds) {
				t.Fatalf("all holds %v %v", all, err)
			}
			for _, h := range all {
				if h.Active() || h.ReleasedBy != admin.Name || h.CreatedSeq == 0 {
					t.Errorf("released hold %+v", h)
				}
			}
		})
	}
}

// Everything old, the head included, can go: the checkpoint links to the
// last pruned row.
func TestPruneEverything(t *testing.T) {
	a, clk := openTest(t)
	fillDays(t, a, clk, 3)
	clk.Set(t0.Add(10 * 24 * time.Hour))
	res, err := a.Prune(context.Background(), PruneOptions{Before: clk.Now(), By: admin})
	if err != nil || res.Removed != 9 {
		t.Fatalf("%+v %v", res, err)
	}
	rep := mustVerify(t, a)
	if rep.Rows != 2 || rep.PrunedRows != 9 { // the checkpoint and the admin row
		t.Fatalf("report %+v", rep)
	}
	mustAppend(t, a, msg("alice@example.com", "bob@partner.example", "after"))
	mustVerify(t, a)
}

// Prune refuses to remove an altered row (it would launder the change),
// and refuses a chain with a broken link in the part it walks.
func TestPruneRefusesTamperedChain(t *testing.T) {
	for _, tc := range []struct {
		name string
		sql  []string
	}{
		{"altered row", []string{`DROP TRIGGER stanzas_no_update`, `UPDATE stanzas SET body = 'x' WHERE seq = 2`}},
		{"deleted row", []string{`DROP TRIGGER stanzas_no_delete`, `DROP TRIGGER records_no_delete`, `DELETE FROM stanzas WHERE seq = 4`, `DELETE FROM records WHERE seq = 4`}},
		{"forged pruned range", []string{`INSERT INTO pruned_ranges VALUES (100, 100, 1, '` + ZeroHash + `', '` + ZeroHash + `', 3)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clk := openTest(t)
			fillDays(t, a, clk, 3)
			exec(t, rawDB(t, a.Path()), tc.sql...)
			clk.Set(t0.Add(10 * 24 * time.Hour))
			_, err := a.Prune(context.Background(), PruneOptions{Before: clk.Now(), By: admin})
			if tc.name == "forged pruned range" {
				// The walk never reaches seq 100, but verify reports it.
				if err != nil {
					t.Fatal(err)
				}
				if rep := verify(t, a); rep.OK() {
					t.Fatal("verify accepted a pruned range no checkpoint attests")
				}
				return
			}
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("prune of a tampered chain: %v", err)
			}
			if n := countRows(t, a, `SELECT count(*) FROM checkpoints`); n != 0 {
				t.Fatalf("%d checkpoints written", n)
			}
		})
	}
}

func TestHoldCovers(t *testing.T) {
	day := func(d int) int64 { return t0.Add(time.Duration(d) * 24 * time.Hour).UnixMilli() }
	for _, tc := range []struct {
		name          string
		h             Hold
		ts            int64
		account, peer string
		want          bool
	}{
		{"case-wide", Hold{Case: "c"}, day(1), "", "", true},
		{"account as account", Hold{Case: "c", Account: "a@x"}, day(1), "a@x", "b@y", true},
		{"account as peer (internal traffic)", Hold{Case: "c", Account: "a@x"}, day(1), "z@x", "a@x", true},
		{"other account", Hold{Case: "c", Account: "a@x"}, day(1), "z@x", "b@y", false},
		{"no parties", Hold{Case: "c", Account: "a@x"}, day(1), "", "", false},
		{"pair", Hold{Case: "c", Account: "a@x", Peer: "b@y"}, day(1), "a@x", "b@y", true},
		{"half a pair", Hold{Case: "c", Account: "a@x", Peer: "b@y"}, day(1), "a@x", "c@y", false},
		{"before the range", Hold{Case: "c", From: t0.Add(48 * time.Hour)}, day(1), "", "", false},
		{"after the range", Hold{Case: "c", To: t0.Add(12 * time.Hour)}, day(1), "", "", false},
		{"inside the range", Hold{Case: "c", From: t0, To: t0.Add(48 * time.Hour)}, day(1), "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.covers(tc.ts, tc.account, tc.peer); got != tc.want {
				t.Fatalf("covers = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHoldValidation(t *testing.T) {
	a, _ := openTest(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		h    Hold
		by   Actor
	}{
		{"no case", Hold{Account: "a@x"}, admin},
		{"reversed range", Hold{Case: "c", From: t0, To: t0.Add(-time.Hour)}, admin},
		{"no actor", Hold{Case: "c"}, Actor{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.AddHold(ctx, tc.h, tc.by); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}
