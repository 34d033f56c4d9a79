package irc

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in   string
		want target
		err  bool
	}{
		{"irc.example", target{}, false},
		{"irc.example/res", target{resource: "res"}, false},
		{"bob%libera@irc.example", target{network: "libera", name: "bob"}, false},
		{`a\5cb%libera@irc.example`, target{network: "libera", name: `a\b`}, false},
		{"#ops%libera@irc.example/alice", target{network: "libera", name: "#ops", channel: true, resource: "alice"}, false},
		{"100%25%libera@irc.example", target{network: "libera", name: "100%25"}, false},
		{"bob@irc.example", target{}, true},
		{"%libera@irc.example", target{}, true},
		{"bob%@irc.example", target{}, true},
	}
	for _, tc := range cases {
		got, err := parseTarget(jid.MustParse(tc.in))
		if (err != nil) != tc.err || (err == nil && got != tc.want) {
			t.Errorf("parseTarget(%s) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzAddressRoundTrip(f *testing.F) {
	for _, s := range []string{"bob", `a\b`, "[x]^", "#ops", "nick|away"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, nick string) {
		if !validNick(nick) && !(isChannel(nick) && validNick(nick[1:])) {
			t.Skip()
		}
		j, err := userJID("irc.example", "net", nick)
		if err != nil {
			t.Fatalf("userJID(%q): %v", nick, err)
		}
		got, err := parseTarget(j)
		if err != nil || got.network != "net" || fold(got.name) != fold(nick) {
			t.Fatalf("%q → %s → %+v, %v", nick, j, got, err)
		}
	})
}

func TestValidNick(t *testing.T) {
	for nick, ok := range map[string]bool{
		"bob": true, "[b0b]": true, `a\b`: true, "x-1": true, "_x": true,
		"": false, "1bob": false, "-bob": false, "bob smith": false, "bob,eve": false, "#ops": false, "bob!x": false,
	} {
		if validNick(nick) != ok {
			t.Errorf("validNick(%q) = %v", nick, !ok)
		}
	}
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "irc.db")
	s, err := OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Register(ctx, Registration{User: "alice@example.com", Network: "libera", Nick: "alice"}))
	must(s.Register(ctx, Registration{User: "alice@example.com", Network: "oftc", Nick: "al"}))
	must(s.Register(ctx, Registration{User: "alice@example.com", Network: "libera", Nick: "alice2", Password: "pw"}))
	must(s.Register(ctx, Registration{User: "bob@example.com", Network: "libera", Nick: "bob"}))
	for _, n := range []string{"Carol", "carol", "[Dave]", "{dave}"} {
		if _, err := s.AddContact(ctx, "alice@example.com", "libera", n); err != nil {
			t.Fatal(err)
		}
	}
	must(s.Close())

	// State survives a restart.
	s, err = OpenStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	regs, err := s.Registrations(ctx, "alice@example.com")
	must(err)
	want := []Registration{
		{User: "alice@example.com", Network: "libera", Nick: "alice2", Password: "pw"},
		{User: "alice@example.com", Network: "oftc", Nick: "al"},
	}
	if !reflect.DeepEqual(regs, want) {
		t.Errorf("registrations %+v", regs)
	}
	cs, err := s.Contacts(ctx, "alice@example.com", "libera")
	must(err)
	if !reflect.DeepEqual(cs, []string{"Carol", "[Dave]"}) {
		t.Errorf("contacts %v (RFC 1459 case folding)", cs)
	}
	must(s.RemoveContact(ctx, "alice@example.com", "libera", "CAROL"))
	must(s.Unregister(ctx, "alice@example.com", "oftc"))
	if _, err := s.Registration(ctx, "alice@example.com", "oftc"); err != ErrNotRegistered {
		t.Errorf("after unregister: %v", err)
	}
	must(s.Unregister(ctx, "alice@example.com", ""))
	all, err := s.Registrations(ctx, "")
	must(err)
	if len(all) != 1 || all[0].User != "bob@example.com" {
		t.Errorf("left %+v", all)
	}
	if cs, _ := s.Contacts(ctx, "alice@example.com", "libera"); len(cs) != 0 {
		t.Errorf("contacts left %v", cs)
	}
}

func TestSplitLine(t *testing.T) {
	long := strings.Repeat("word ", 200) // 1000 bytes
	euro := strings.Repeat("€", 200)     // 600 bytes, 3 each
	for _, tc := range []struct {
		in    string
		parts int
	}{
		{"short", 1},
		{long, 3},
		{euro, 2},
		{strings.Repeat("x", 401), 2},
	} {
		parts := splitLine(tc.in, maxText)
		if len(parts) != tc.parts {
			t.Errorf("%d bytes: %d parts, want %d", len(tc.in), len(parts), tc.parts)
		}
		joined := ""
		for _, p := range parts {
			if len(p) > maxText || !utf8.ValidString(p) || p == "" {
				t.Errorf("bad part %q", p)
			}
			joined += p
		}
		if strings.ReplaceAll(joined, " ", "") != strings.ReplaceAll(tc.in, " ", "") {
			t.Errorf("content lost for %d bytes", len(tc.in))
		}
	}
}
