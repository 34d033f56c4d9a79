package storage

import (
	"errors"
	"slices"
	"testing"
)

func TestManagers(t *testing.T) {
	db, _ := openTest(t)
	ctx := t.Context()
	mustCreate(t, db, "alice", "bob", "carol")

	for _, tc := range []struct {
		name          string
		user, manager string
		want          error
	}{
		{"set", "alice", "bob", nil},
		{"replace", "alice", "carol", nil},
		{"second report", "bob", "carol", nil},
		{"self", "alice", "alice", ErrInvalid},
		{"empty user", "", "bob", ErrInvalid},
		{"empty manager", "alice", "", ErrInvalid},
		{"unknown user", "zed", "bob", ErrNoUser},
		{"unknown manager", "alice", "zed", ErrNoUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := db.SetManager(ctx, tc.user, tc.manager)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("SetManager(%q, %q) = %v, want %v", tc.user, tc.manager, err, tc.want)
			}
		})
	}
	// The failed calls changed nothing.
	if m, err := db.Manager(ctx, "alice"); err != nil || m != "carol" {
		t.Fatalf("Manager(alice) = %q, %v; want carol", m, err)
	}
	if r, err := db.Reports(ctx, "carol"); err != nil || !slices.Equal(r, []string{"alice", "bob"}) {
		t.Fatalf("Reports(carol) = %v, %v", r, err)
	}
	if m, err := db.Manager(ctx, "nobody"); err != nil || m != "" {
		t.Fatalf("Manager(nobody) = %q, %v; want none", m, err)
	}

	if err := db.ClearManager(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := db.ClearManager(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second ClearManager = %v, want ErrNotFound", err)
	}
	// Deleting the manager's account removes the relation.
	if err := db.DeleteUser(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if m, err := db.Manager(ctx, "alice"); err != nil || m != "" {
		t.Fatalf("after deleting carol, Manager(alice) = %q, %v", m, err)
	}
}
