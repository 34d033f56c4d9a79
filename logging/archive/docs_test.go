package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/auth"
	"gatehouse/xmpp/storage"
)

// docsFile is the reviewers' guide whose example queries this test runs.
const docsFile = "../../docs/archive.md"

// Every ```sql block of docs/archive.md that is followed by a ```text
// block is an example query: it runs through `sqlite3 -readonly` against
// the fixture archive below, open for writing by an Archive as on a live
// server, and must print exactly the documented output. Set
// ARCHIVE_DOCS_UPDATE=1 to rewrite the output blocks (then read the diff).
func TestDocumentedQueries(t *testing.T) {
	sqlite, err := exec.LookPath("sqlite3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sqlite3 is not installed (.ci/deps.sh installs it)")
		}
		t.Skip("sqlite3 is not installed")
	}
	dir := t.TempDir()
	a := buildFixture(t, dir)
	defer a.Close(context.Background())

	doc, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	examples := docExamples.FindAllSubmatchIndex(doc, -1)
	if len(examples) < 12 {
		t.Fatalf("docs/archive.md has %d example queries, want at least 12", len(examples))
	}
	update := os.Getenv("ARCHIVE_DOCS_UPDATE") == "1"
	var out bytes.Buffer
	last := 0
	for i, m := range examples {
		query, want := string(doc[m[2]:m[3]]), string(doc[m[4]:m[5]])
		cmd := exec.Command(sqlite, "-readonly", "-header", "-column", "-bail", "archive.db")
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(query)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("example %d failed: %v %s\n%s", i+1, err, stderr.String(), query)
			continue
		}
		gotText := trimLines(string(got))
		if gotText == "" {
			t.Errorf("example %d returns nothing:\n%s", i+1, query)
		}
		if update {
			out.Write(doc[last:m[4]])
			out.WriteString(gotText)
			last = m[5]
			continue
		}
		if gotText != trimLines(want) {
			t.Errorf("example %d prints\n%s\nthe documentation says\n%s\n(query:\n%s)", i+1, gotText, want, query)
		}
	}
	// The fixture is a sound archive: what the queries show is on a
	// chain that verifies against its anchor.
	rep, err := a.Verify(context.Background(), archive.VerifyOptions{})
	if err != nil || !rep.OK() || rep.AnchorsHit == 0 {
		t.Errorf("fixture does not verify: %+v %v", rep, err)
	}
	if update {
		out.Write(doc[last:])
		if err := os.WriteFile(docsFile, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// An example: a ```sql block, then (after blank lines) a ```text block.
var docExamples = regexp.MustCompile("(?s)```sql\n(.*?)```\n\\s*```text\n(.*?)```")

func trimLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

type fixtureClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixtureClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixtureClock) set(s string) {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.t = t.UTC()
	c.mu.Unlock()
}

// buildFixture writes the example company's archive (archive.db) and
// directory (gatehouse.db) into dir: example.com with alice and dave in
// sales, bob in engineering, carol in legal; partner.example and
// rival.example federated, a WhatsApp transport at wa.example.com.
func buildFixture(t *testing.T, dir string) *archive.Archive {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.NewCredentials("fixture", 4096)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if err := db.CreateUser(ctx, u, creds); err != nil {
			t.Fatal(err)
		}
	}
	for g, users := range map[string][]string{"sales": {"alice", "dave"}, "engineering": {"bob"}, "legal": {"carol"}} {
		if err := db.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if err := db.AddToGroup(ctx, g, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	clk := &fixtureClock{}
	clk.set("2025-03-01 00:00:00")
	a, err := archive.Open(ctx, archive.Options{Path: filepath.Join(dir, "archive.db"), AnchorPath: filepath.Join(dir, "archive.anchor"), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	const pv = "2025-03-01.1"
	var seq int64
	add := func(at string, r archive.Record) {
		t.Helper()
		clk.set(at)
		rc, err := a.Append(ctx, r)
		if err != nil {
			t.Fatalf("fixture %s: %v", at, err)
		}
		seq = rc.Seq
	}
	type party struct{ account, local string }
	alice := party{"alice@example.com", "alice@example.com/laptop"}
	msg := func(dir archive.Direction, p party, peer, typ, body string) *archive.Stanza {
		network := peer[strings.Index(peer, "@")+1:]
		zone := archive.ZoneRemote
		legacy := ""
		if network == "wa.example.com" {
			zone, legacy = archive.ZoneTransport, peer[:strings.Index(peer, "@")]
		}
		from, to := p.local, peer
		if dir == archive.In {
			from, to = peer, p.local
		}
		if dir == archive.Internal {
			zone = archive.ZoneLocal
		}
		return &archive.Stanza{Direction: dir, Zone: zone, Network: network, Account: p.account, LocalJID: p.local,
			Peer: peer, PeerJID: peer, LegacyID: legacy, Kind: "message", Type: typ, StanzaID: fmt.Sprintf("m%d", seq+1),
			Body: body, Verdict: archive.Allow, Rule: "default", PolicyVersion: pv,
			Raw: fmt.Sprintf(`<message xmlns="jabber:client" from="%s" to="%s" type="%s" id="m%d"><body>%s</body></message>`, from, to, typ, seq+1, body)}
	}
	deny := func(r *archive.Stanza, rule, cond, text string) *archive.Stanza {
		r.Verdict, r.Rule, r.DenyCondition, r.DenyText = archive.Deny, rule, cond, text
		return r
	}
	bob := party{"bob@example.com", "bob@example.com/desk"}
	carol := party{"carol@example.com", "carol@example.com/pc"}
	dave := party{"dave@example.com", "dave@example.com/phone"}
	session := func(ev string, p party, addr, tlsv, mech, started string, dur time.Duration) *archive.SessionEvent {
		st, _ := time.Parse("2006-01-02 15:04:05", started)
		return &archive.SessionEvent{Event: ev, Account: p.account, Resource: p.local[strings.Index(p.local, "/")+1:], ConnID: uint64(len(addr)),
			ClientAddr: addr, TLSVersion: tlsv, SASLMechanism: mech, Started: st, Duration: dur}
	}

	add("2025-03-03 07:59:58", &archive.PolicyAction{Action: "policy.loaded", PolicyVersion: pv, Detail: "/etc/gatehouse/policy.yaml"})
	add("2025-03-03 08:00:02", &archive.LinkEvent{Event: archive.EventUp, Zone: archive.ZoneRemote, Network: "partner.example", ConnID: 3, PeerAddr: "198.51.100.7:5269"})
	add("2025-03-03 08:00:03", &archive.LinkEvent{Event: archive.EventUp, Zone: archive.ZoneTransport, Network: "wa.example.com", ConnID: 4, PeerAddr: "127.0.0.1:40122"})
	add("2025-03-03 09:00:00", session(archive.EventLogon, alice, "203.0.113.10:50412", "TLS 1.3", "SCRAM-SHA-256-PLUS", "2025-03-03 09:00:00", 0))
	add("2025-03-03 09:00:41", session(archive.EventLogon, dave, "203.0.113.55:61001", "TLS 1.3", "SCRAM-SHA-256", "2025-03-03 09:00:41", 0))
	add("2025-03-03 09:01:12", msg(archive.Out, alice, "bob@partner.example", "chat", "Morning Bob, did you hear the merger rumours?"))
	add("2025-03-03 09:03:40", msg(archive.In, alice, "bob@partner.example", "chat", "Yes. Let us not discuss the merger in chat."))
	add("2025-03-03 09:10:05", deny(msg(archive.Out, dave, "eve@rival.example", "chat", "Can we meet about pricing?"),
		"access.rivals", "not-allowed", "Contact with rival.example is not permitted (rule access.rivals)"))
	sub := msg(archive.Out, alice, "bob@partner.example", "subscribe", "")
	sub.Kind, sub.Body, sub.Rule = "presence", "", "default"
	sub.Raw = `<presence xmlns="jabber:client" from="alice@example.com/laptop" to="bob@partner.example" type="subscribe"/>`
	add("2025-03-03 09:15:00", sub)
	subd := msg(archive.In, alice, "bob@partner.example", "subscribed", "")
	subd.Kind, subd.Body, subd.LocalJID = "presence", "", "alice@example.com"
	subd.Raw = `<presence xmlns="jabber:client" from="bob@partner.example" to="alice@example.com" type="subscribed"/>`
	add("2025-03-03 09:15:02", subd)
	add("2025-03-03 10:02:00", msg(archive.Out, bob, "+4915112345678@wa.example.com", "chat", "Build 42 is green, shipping tonight"))
	add("2025-03-03 10:02:30", msg(archive.In, bob, "+4915112345678@wa.example.com", "chat", "thanks!"))
	up := msg(archive.Out, carol, "bob@partner.example", "chat", "https://upload.example.com/3f9a/contract-v3.pdf")
	add("2025-03-03 11:00:00", up)
	upSeq := seq
	add("2025-03-03 11:00:00", &archive.FileTransfer{Direction: archive.Out, Zone: archive.ZoneRemote, Network: "partner.example",
		Account: "carol@example.com", Peer: "bob@partner.example", PeerJID: "bob@partner.example", FileName: "contract-v3.pdf",
		Size: 48213, MediaType: "application/pdf", SHA256: "9f2c4e0d3b1a7c6e5d4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d",
		URL: "https://upload.example.com/3f9a/contract-v3.pdf", ScanResult: "clean", Verdict: archive.Allow, Rule: "default",
		PolicyVersion: pv, StanzaSeq: upSeq})
	exe := deny(msg(archive.Out, dave, "eve@rival.example", "chat", "https://upload.example.com/77ab/prices.xlsx"),
		"access.rivals", "not-allowed", "Contact with rival.example is not permitted (rule access.rivals)")
	add("2025-03-03 11:05:00", exe)
	exeSeq := seq
	add("2025-03-03 11:05:00", &archive.FileTransfer{Direction: archive.Out, Zone: archive.ZoneRemote, Network: "rival.example",
		Account: "dave@example.com", Peer: "eve@rival.example", PeerJID: "eve@rival.example", FileName: "prices.xlsx",
		Size: -1, URL: "https://upload.example.com/77ab/prices.xlsx", Verdict: archive.Deny, Rule: "access.rivals",
		PolicyVersion: pv, StanzaSeq: exeSeq})
	iban := msg(archive.Out, alice, "bob@partner.example", "chat", "My IBAN is DE44 5001 0517 5407 3249 31")
	iban.Rule = "content.iban"
	iban.RawDelivered = strings.Replace(iban.Raw, "DE44 5001 0517 5407 3249 31", "[redacted]", 1)
	add("2025-03-03 11:30:00", iban)
	add("2025-03-03 12:30:00", msg(archive.Internal, alice, "carol@example.com", "chat", "Lunch at noon tomorrow?"))
	add("2025-03-03 13:00:00", &archive.PolicyAction{Action: "policy.reloaded", PolicyVersion: pv,
		Detail: `{"file":"/etc/gatehouse/policy.yaml","previous":"` + pv + `"}`})
	add("2025-03-03 17:30:00", session(archive.EventLogoff, alice, "203.0.113.10:50412", "TLS 1.3", "SCRAM-SHA-256-PLUS", "2025-03-03 09:00:00", 8*time.Hour+30*time.Minute))
	add("2025-03-03 18:02:10", session(archive.EventLogoff, dave, "203.0.113.55:61001", "TLS 1.3", "SCRAM-SHA-256", "2025-03-03 09:00:41", 9*time.Hour+1*time.Minute+29*time.Second))
	add("2025-03-04 08:55:00", session(archive.EventLogon, alice, "198.51.100.23:40511", "TLS 1.2", "SCRAM-SHA-256", "2025-03-04 08:55:00", 0))
	att := msg(archive.Out, alice, "bob@partner.example", "chat", "About the merger: the term sheet is attached.")
	att.Thread, att.Subject = "deal-17", "Term sheet"
	add("2025-03-04 09:05:00", att)
	rep := msg(archive.In, alice, "bob@partner.example", "chat", "Received, thanks. Our lawyers will call.")
	rep.Thread = "deal-17"
	add("2025-03-04 09:06:30", rep)
	add("2025-03-04 12:00:00", &archive.LinkEvent{Event: archive.EventDown, Zone: archive.ZoneRemote, Network: "partner.example", ConnID: 3,
		PeerAddr: "198.51.100.7:5269", Since: time.Date(2025, 3, 3, 8, 0, 2, 0, time.UTC), Reason: "idle timeout"})
	add("2025-03-04 12:20:00", &archive.AdminAction{Actor: "xmpp:admin@example.com", Origin: "admin-api", Action: "user.add", Target: "erin@example.com"})
	officer := archive.Actor{Name: "os:compliance", Origin: "cli"}
	clk.set("2025-03-04 14:00:00")
	if _, err := a.Search(ctx, archive.Filter{Account: "alice@example.com", Text: "merger"}, officer, func(*archive.StanzaRow) error { return nil }); err != nil {
		t.Fatal(err)
	}
	clk.set("2025-03-04 14:10:00")
	if _, err := a.AddHold(ctx, archive.Hold{Case: "Acme merger inquiry", Account: "alice@example.com",
		From: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 3, 31, 23, 59, 59, 0, time.UTC), Reason: "letter of 2025-03-04"}, officer); err != nil {
		t.Fatal(err)
	}
	clk.set("2025-03-04 14:12:00")
	if _, err := a.ExportJSONL(ctx, archive.Filter{Account: "alice@example.com"}, officer, "/home/compliance/alice.jsonl", &bytes.Buffer{}, nil); err != nil {
		t.Fatal(err)
	}
	clk.set("2025-03-04 14:15:00")
	if err := a.AnchorNow(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}
