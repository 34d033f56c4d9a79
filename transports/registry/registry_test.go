package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"gatehouse/xmpp/config"
)

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tg := config.Component{Domain: "tg.example.com", Secret: "0123456789abcdef0", Type: "telegram",
		Privileges: config.Privileges{Roster: "both", Message: "outgoing", Version: 2}}
	if err := r.Add(ctx, tg, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    config.Component
	}{
		{"duplicate", tg},
		{"short secret", config.Component{Domain: "x.example.com", Secret: "short"}},
		{"bad privilege", config.Component{Domain: "x.example.com", Secret: "0123456789abcdef0", Privileges: config.Privileges{Roster: "all"}}},
		{"builtin", config.Component{Domain: "x.example.com", Builtin: "irc"}},
	} {
		if err := r.Add(ctx, tc.c, now); err == nil {
			t.Errorf("%s: added", tc.name)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	list, err := r.List(ctx)
	if err != nil || len(list) != 1 || list[0].Component.Domain != tg.Domain || list[0].Privileges != tg.Privileges || !list[0].Added.Equal(now) {
		t.Fatalf("list %+v %v", list, err)
	}
	merged := Merge([]config.Component{{Domain: "tg.example.com", Secret: "from-the-config-file"}, {Domain: "irc.example.com"}}, list)
	if len(merged) != 2 || merged[0].Secret != "from-the-config-file" {
		t.Errorf("the configuration must win: %+v", merged)
	}
	if got := Merge(nil, list); len(got) != 1 || got[0].Secret != tg.Secret {
		t.Errorf("merge %+v", got)
	}
	if err := r.Remove(ctx, "tg.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(ctx, "tg.example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
}
