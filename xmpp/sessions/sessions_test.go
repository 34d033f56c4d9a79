package sessions_test

import (
	"testing"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/sessions"
	"gatehouse/xmpp/stanza"
)

type nopSender struct{}

func (nopSender) Send(*stanza.Stanza) error { return nil }
func (nopSender) Close(string, string)      {}

func session(t *testing.T, full string, prio int, available bool) *sessions.Session {
	t.Helper()
	s := sessions.New(jid.MustParse(full), 1, nopSender{}, sessions.Info{})
	if available {
		s.SetPresence(&stanza.Stanza{Kind: stanza.KindPresence}, prio)
	}
	return s
}

func TestTable(t *testing.T) {
	tab := sessions.NewTable()
	desk := session(t, "alice@example.com/desk", 5, true)
	phone := session(t, "alice@example.com/phone", 1, true)
	away := session(t, "alice@example.com/away", -1, true)
	idle := session(t, "alice@example.com/idle", 0, false)
	for _, s := range []*sessions.Session{phone, desk, away, idle} {
		if old := tab.Add(s); old != nil {
			t.Fatalf("Add(%s) replaced %s", s.JID, old.JID)
		}
	}
	bare := jid.MustParse("alice@example.com")
	tests := []struct {
		name string
		got  []*sessions.Session
		want []*sessions.Session
	}{
		{"resources", tab.Resources(bare), []*sessions.Session{phone, desk, away, idle}},
		{"available", tab.Available(bare), []*sessions.Session{phone, desk, away}},
		{"top: non-negative, highest first", tab.Top(bare), []*sessions.Session{desk, phone}},
		{"other account", tab.Resources(jid.MustParse("bob@example.com")), nil},
	}
	for _, tc := range tests {
		if len(tc.got) != len(tc.want) {
			t.Fatalf("%s: got %d sessions, want %d", tc.name, len(tc.got), len(tc.want))
		}
		for i := range tc.got {
			if tc.got[i] != tc.want[i] {
				t.Fatalf("%s[%d] = %s, want %s", tc.name, i, tc.got[i].JID, tc.want[i].JID)
			}
		}
	}
	if tab.Get(jid.MustParse("alice@example.com/desk")) != desk || tab.Count() != 4 {
		t.Fatal("Get/Count")
	}

	// Same full JID: the new session replaces the old one.
	desk2 := session(t, "alice@example.com/desk", 0, false)
	if old := tab.Add(desk2); old != desk || tab.Count() != 4 {
		t.Fatalf("replace returned %v, count %d", old, tab.Count())
	}
	// Removing the replaced session is a no-op; removing the current one works.
	if tab.Remove(desk) || !tab.Remove(desk2) || tab.Get(desk.JID) != nil || tab.Count() != 3 {
		t.Fatal("Remove")
	}
	for _, s := range tab.All() {
		tab.Remove(s)
	}
	if tab.Count() != 0 || tab.Resources(bare) != nil {
		t.Fatal("table not empty")
	}
}

func TestDirected(t *testing.T) {
	s := session(t, "alice@example.com/desk", 0, true)
	a, b := jid.MustParse("bob@example.org/x"), jid.MustParse("carol@example.net")
	s.AddDirected(a)
	s.AddDirected(b)
	s.AddDirected(a)
	s.RemoveDirected(b)
	got := s.TakeDirected()
	if len(got) != 1 || !got[0].Equal(a) || len(s.TakeDirected()) != 0 {
		t.Fatalf("directed %v", got)
	}
}
