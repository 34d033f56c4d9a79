package server_test

import (
	"context"
	"database/sql"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the reviewers' view: plain SQL on the file

	"gatehouse/logging/archive"
	"gatehouse/transports/component"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// The compliance archive over real sockets: staff log in over c2s; the
// outside world is a XEP-0114 component serving a transport domain.

const (
	arcPeerDomain = "legacy.localhost"
	arcPeerSecret = "archive-test-secret-0123456789"
	arcPW         = "archive pw"
)

// arcPeer is a raw XEP-0114 component.
type arcPeer struct {
	t   testing.TB
	nc  net.Conn
	wmu sync.Mutex
	in  chan *stanza.Stanza
}

func dialArcPeer(t testing.TB, addr string) *arcPeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, xmpptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(xmpptest.Timeout))
	dec := xml.NewDecoder(nc)
	p := &arcPeer{t: t, nc: nc, in: make(chan *stanza.Stanza, 1024)}
	p.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>`, arcPeerDomain)
	id := ""
	for id == "" {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("peer: stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					id = a.Value
				}
			}
		}
	}
	p.send(`<handshake>%s</handshake>`, component.Handshake(id, []byte(arcPeerSecret)))
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("peer: handshake: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			el, err := stanza.ReadElement(dec, se.Copy())
			if err != nil || el.Name.Local != "handshake" {
				t.Fatalf("peer: handshake refused: %v %v", el, err)
			}
			break
		}
	}
	_ = nc.SetDeadline(time.Time{})
	go func() {
		defer close(p.in)
		for {
			tok, err := dec.Token()
			if err != nil {
				return
			}
			if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "stream" {
				// The server closes the stream (shutdown): close ours.
				p.send(`</stream:stream>`)
				_ = nc.Close()
				return
			}
			se, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			se = se.Copy()
			if stanza.KindOf(se.Name.Local) == 0 {
				if _, err := stanza.ReadElement(dec, se); err != nil {
					return
				}
				continue
			}
			st, err := stanza.Parse(dec, se)
			if err != nil {
				return
			}
			p.in <- st
		}
	}()
	return p
}

func (p *arcPeer) send(format string, args ...any) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, _ = fmt.Fprintf(p.nc, format, args...)
}

// expect waits for a stanza matching f, dropping others.
func (p *arcPeer) expect(f func(*stanza.Stanza) bool) *stanza.Stanza {
	p.t.Helper()
	timer := time.NewTimer(xmpptest.Timeout)
	defer timer.Stop()
	for {
		select {
		case s, ok := <-p.in:
			if !ok {
				p.t.Fatal("peer: stream closed while waiting")
			}
			if f(s) {
				return s
			}
		case <-timer.C:
			p.t.Fatal("peer: timed out")
		}
	}
}

// startArchiveServer runs a server with the component configured and
// connected, alice and bob as accounts.
func startArchiveServer(t *testing.T, mod func(*config.Config)) (*xmpptest.TestServer, *arcPeer) {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: arcPeerDomain, Secret: arcPeerSecret, Type: "irc"}}
		if mod != nil {
			mod(c)
		}
	})
	for _, u := range []string{"alice", "bob"} {
		if _, err := ts.DB().Credentials(context.Background(), u); err == nil {
			continue // a data directory used before
		}
		ts.AddUser(t, u, arcPW)
	}
	peer := dialArcPeer(t, ts.ComponentAddrs()[0])
	return ts, peer
}

// reviewer opens the archive as a compliance officer does: read-only
// plain SQL on the live file.
func reviewer(t *testing.T, ts *xmpptest.TestServer) *sql.DB {
	t.Helper()
	path := filepath.Join(ts.Config.DataDir, ts.Config.Archive.File)
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// waitLogon waits until user's log-on is on record (it is written just
// after the bind answer went out).
func waitLogon(t *testing.T, ts *xmpptest.TestServer, user string) {
	t.Helper()
	db := reviewer(t, ts)
	deadline := time.Now().Add(xmpptest.Timeout)
	for queryInt(t, db, `SELECT count(*) FROM session_events WHERE event = 'logon' AND account = ?`, user+"@localhost") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no log-on of %s recorded", user)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func queryInt(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestArchiveRecordsCrossingsOnce(t *testing.T) {
	ts, peer := startArchiveServer(t, nil)
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<message to='carol@legacy.localhost' type='chat' id='m1'><body>the merger is on</body><origin-id xmlns='urn:xmpp:sid:0' id='o-1'/></message>`)
	got := peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage })
	if got.Body() != "the merger is on" || got.From.String() != "alice@localhost/laptop" {
		t.Fatalf("component got %v", got)
	}
	peer.send(`<message from='carol@legacy.localhost' to='alice@localhost/laptop' type='chat' id='r1'><body>great news</body></message>`)
	alice.Expect(xmpptest.IsMessage("great news"))

	db := reviewer(t, ts)
	type row struct {
		dir, zone, network, account, localJID, peer, kind, typ, body, verdict, rule, pv, stanzaID string
		origin                                                                                    sql.NullString
	}
	rows, err := db.Query(`SELECT direction, zone, network, account, local_jid, peer, kind, type, body, verdict, rule, policy_version, stanza_id, origin_id
		FROM stanzas WHERE kind = 'message' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.dir, &r.zone, &r.network, &r.account, &r.localJID, &r.peer, &r.kind, &r.typ, &r.body, &r.verdict, &r.rule, &r.pv, &r.stanzaID, &r.origin); err != nil {
			t.Fatal(err)
		}
		list = append(list, r)
	}
	rows.Close()
	want := []row{
		{"out", "transport", arcPeerDomain, "alice@localhost", "alice@localhost/laptop", "carol@legacy.localhost", "message", "chat", "the merger is on", "allow", "default", "none", "m1", sql.NullString{String: "o-1", Valid: true}},
		{"in", "transport", arcPeerDomain, "alice@localhost", "alice@localhost/laptop", "carol@legacy.localhost", "message", "chat", "great news", "allow", "default", "none", "r1", sql.NullString{}},
	}
	if len(list) != len(want) {
		t.Fatalf("archived messages: %+v, want %+v", list, want)
	}
	for i := range want {
		if list[i] != want[i] {
			t.Errorf("row %d = %+v\nwant %+v", i, list[i], want[i])
		}
	}
	// The session and the component link are on record too, and the raw
	// stanza is kept as sent.
	if n := queryInt(t, db, `SELECT count(*) FROM session_events WHERE event = 'logon' AND account = 'alice@localhost' AND resource = 'laptop'
		AND tls_version LIKE 'TLS 1.%' AND sasl_mechanism = 'SCRAM-SHA-256' AND client_addr LIKE '127.0.0.1:%'`); n != 1 {
		t.Errorf("logon rows: %d", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM link_events WHERE event = 'up' AND zone = 'transport' AND network = ?`, arcPeerDomain); n != 1 {
		t.Errorf("link up rows: %d", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE raw LIKE '%<body>the merger is on</body>%'`); n != 1 {
		t.Errorf("raw rows: %d", n)
	}
	// The writer indexes text just after committing; catch up first.
	if err := ts.Archive().IndexNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas_fts WHERE stanzas_fts MATCH 'merger'`); n != 1 {
		t.Errorf("full-text hits: %d", n)
	}
	// Presence is out of scope by default: alice's initial presence
	// reached nobody outside, and nothing but messages crossed.
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE kind = 'presence'`); n != 0 {
		t.Errorf("presence rows: %d", n)
	}
	alice.Close()
	ts.Stop()
	if n := queryInt(t, db, `SELECT count(*) FROM session_events WHERE event = 'logoff' AND account = 'alice@localhost' AND duration_ms >= 0`); n != 1 {
		t.Errorf("logoff rows: %d", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM link_events WHERE event = 'down' AND network = ?`, arcPeerDomain); n != 1 {
		t.Errorf("link down rows: %d", n)
	}
	verifyArchive(t, ts)
}

// verifyArchive opens the (stopped) server's archive and checks the chain.
func verifyArchive(t *testing.T, ts *xmpptest.TestServer) {
	t.Helper()
	ac := ts.Config.Archive
	a, err := archive.Open(context.Background(), archive.Options{
		Path: ac.Path(ts.Config.DataDir, ac.File), AnchorPath: ac.Path(ts.Config.DataDir, ac.AnchorFile),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	rep, err := a.Verify(context.Background(), archive.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.AnchorsHit == 0 {
		t.Fatalf("verify: %+v", rep)
	}
}

// lockArchive takes the archive's write lock from another connection, as
// a stuck process would, until the returned func is called.
func lockArchive(t *testing.T, ts *xmpptest.TestServer) func() {
	t.Helper()
	path := filepath.Join(ts.Config.DataDir, ts.Config.Archive.File)
	db, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			_ = tx.Rollback()
			_ = db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

func TestArchiveFailClosed(t *testing.T) {
	ts, peer := startArchiveServer(t, func(c *config.Config) { c.Archive.LockTimeout = config.Duration(50 * time.Millisecond) })
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	waitLogon(t, ts, "alice")
	release := lockArchive(t, ts)
	alice.Send(`<message to='carol@legacy.localhost' type='chat' id='lost'><body>while locked</body></message>`)
	bounce := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.ID == "lost" })
	if bounce.Type != "error" || bounce.ErrorCondition() != stanza.ResourceConstraint {
		t.Fatalf("sender got %v, want a resource-constraint error", bounce)
	}
	release()
	alice.Send(`<message to='carol@legacy.localhost' type='chat' id='ok'><body>after the lock</body></message>`)
	// The refused message never reached the outside; the next one did.
	got := peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage })
	if got.ID != "ok" {
		t.Fatalf("component got %v first, want the message sent after the lock", got)
	}
	db := reviewer(t, ts)
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE body = 'while locked'`); n != 0 {
		t.Fatalf("refused message archived %d times", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE body = 'after the lock'`); n != 1 {
		t.Fatalf("delivered message archived %d times", n)
	}
}

func TestArchiveFailOpen(t *testing.T) {
	ts, peer := startArchiveServer(t, func(c *config.Config) {
		c.Archive.LockTimeout = config.Duration(50 * time.Millisecond)
		c.Archive.OnArchiveFailure = config.ArchiveAllow
	})
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	waitLogon(t, ts, "alice")
	release := lockArchive(t, ts)
	alice.Send(`<message to='carol@legacy.localhost' type='chat' id='open'><body>unrecorded</body></message>`)
	if got := peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage }); got.ID != "open" {
		t.Fatalf("component got %v", got)
	}
	release()
	if n := queryInt(t, reviewer(t, ts), `SELECT count(*) FROM stanzas WHERE body = 'unrecorded'`); n != 0 {
		t.Fatalf("message archived %d times while the archive was locked", n)
	}
}

func TestArchiveScope(t *testing.T) {
	ts, peer := startArchiveServer(t, func(c *config.Config) {
		c.Archive.Internal = true
		c.Archive.Presence = true
	})
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	bob := ts.Dial(t, "bob", arcPW, xmpptest.ClientOptions{Resource: "desk"})
	bob.Send(`<presence/>`) // available: messages to the bare JID reach it
	bob.Expect(xmpptest.IsPresence("", "bob@localhost"))
	alice.Send(`<message to='bob@localhost' type='chat' id='i1'><body>lunch?</body></message>`)
	bob.Expect(xmpptest.IsMessage("lunch?"))
	alice.Send(`<presence to='carol@legacy.localhost'/>`)
	peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "" })
	alice.Send(`<presence to='dave@legacy.localhost' type='subscribe'/>`)
	peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "subscribe" })

	db := reviewer(t, ts)
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE direction = 'internal' AND zone = 'local' AND account = 'alice@localhost'
		AND peer = 'bob@localhost' AND body = 'lunch?'`); n != 1 {
		t.Errorf("internal message rows: %d", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE direction = 'out' AND kind = 'presence' AND type = 'available' AND peer = 'carol@legacy.localhost'`); n != 1 {
		t.Errorf("directed presence rows: %d", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM subscriptions WHERE direction = 'out' AND action = 'subscribe' AND peer = 'dave@legacy.localhost'`); n != 1 {
		t.Errorf("subscription rows: %d", n)
	}
}

func TestArchiveSubscriptionsAlwaysRecorded(t *testing.T) {
	ts, peer := startArchiveServer(t, nil)
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	bob := ts.Dial(t, "bob", arcPW, xmpptest.ClientOptions{Resource: "desk"})
	bob.Send(`<presence/>`) // available: messages to the bare JID reach it
	bob.Expect(xmpptest.IsPresence("", "bob@localhost"))
	alice.Send(`<message to='bob@localhost' type='chat'><body>internal, not recorded</body></message>`)
	bob.Expect(xmpptest.IsMessage("internal, not recorded"))
	alice.Send(`<presence to='carol@legacy.localhost'/>`)
	alice.Send(`<presence to='dave@legacy.localhost' type='subscribe'/>`)
	peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "subscribe" })
	db := reviewer(t, ts)
	var kinds []string
	rows, err := db.Query(`SELECT direction || ' ' || kind || '/' || type FROM stanzas ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		kinds = append(kinds, s)
	}
	rows.Close()
	if strings.Join(kinds, ",") != "out presence/subscribe" {
		t.Fatalf("archived stanzas %v, want only the subscription request", kinds)
	}
}

// With a policy file, the row carries the policy's decision: the rule that
// denied the crossing and the version of the policy that held it.
func TestArchiveRecordsPolicyDecision(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	pol := `version: "archive-test-3"
default_access: allow
lexicons:
  secret:
    match: word
    terms: [Project X]
content:
  - id: project-x
    direction: outbound
    lexicons: [secret]
    action: deny
    message: Project X is confidential.
`
	if err := os.WriteFile(file, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, peer := startArchiveServer(t, func(c *config.Config) { c.Policy.File = file })
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<message to='carol@legacy.localhost' type='chat' id='px'><body>Project X ships Monday</body></message>`)
	bounce := alice.Expect(func(s *stanza.Stanza) bool { return s.ID == "px" })
	if bounce.Type != "error" {
		t.Fatalf("sender got %v, want an error", bounce)
	}
	alice.Send(`<message to='carol@legacy.localhost' type='chat' id='ok'><body>lunch?</body></message>`)
	if got := peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage }); got.ID != "ok" {
		t.Fatalf("component got %v", got)
	}
	db := reviewer(t, ts)
	var verdict, rule, pv, cond string
	if err := db.QueryRow(`SELECT verdict, rule, policy_version, deny_condition FROM stanzas WHERE stanza_id = 'px'`).Scan(&verdict, &rule, &pv, &cond); err != nil {
		t.Fatal(err)
	}
	version := ts.PolicyVersion() // the file's version and a digest of its content
	if !strings.HasPrefix(version, "archive-test-3") {
		t.Fatalf("policy version %q", version)
	}
	if verdict != "deny" || rule != "project-x" || pv != version || cond != string(bounce.ErrorCondition()) {
		t.Fatalf("denied row: %s %s %s %s (bounce %s)", verdict, rule, pv, cond, bounce.ErrorCondition())
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE stanza_id = 'ok' AND verdict = 'allow' AND rule = 'default' AND policy_version = ?`, version); n != 1 {
		t.Fatalf("allowed rows: %d", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM policy_actions WHERE action = 'policy.loaded' AND policy_version = ?`, version); n != 1 {
		t.Fatalf("policy.loaded rows: %d", n)
	}
	// A reload (SIGHUP, gatehouse reload) is on record with the new version.
	if err := os.WriteFile(file, []byte(strings.Replace(pol, "archive-test-3", "archive-test-4", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.Reload(ts.Config)
	if v := ts.PolicyVersion(); !strings.HasPrefix(v, "archive-test-4") ||
		queryInt(t, db, `SELECT count(*) FROM policy_actions WHERE action = 'policy.reloaded' AND policy_version = ?`, v) == 0 {
		t.Fatalf("reload to %s not on record", v)
	}
}

// archive.retention prunes old rows at start-up, spares legal holds, and
// leaves a chain that verifies.
func TestArchiveRetention(t *testing.T) {
	data := t.TempDir()
	ts, peer := startArchiveServer(t, func(c *config.Config) { c.DataDir = data })
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	bob := ts.Dial(t, "bob", arcPW, xmpptest.ClientOptions{Resource: "desk"})
	for _, c := range []*xmpptest.Client{alice, bob} {
		c.Sendf(`<message to='carol@legacy.localhost' type='chat'><body>old message of %s</body></message>`, c.JID.Localpart())
		peer.expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage })
	}
	if _, err := ts.Archive().AddHold(context.Background(), archive.Hold{Case: "bob case", Account: "bob@localhost"},
		archive.Actor{Name: "os:test", Origin: "cli"}); err != nil {
		t.Fatal(err)
	}
	alice.Close()
	bob.Close()
	ts.Stop()

	ts2, _ := startArchiveServer(t, func(c *config.Config) {
		c.DataDir = data
		c.Archive.Retention = config.Duration(time.Nanosecond) // everything written so far is past it
	})
	db := reviewer(t, ts2)
	deadline := time.Now().Add(xmpptest.Timeout)
	for queryInt(t, db, `SELECT count(*) FROM checkpoints`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no retention prune happened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE body = 'old message of alice'`); n != 0 {
		t.Errorf("alice's old message survived retention")
	}
	if n := queryInt(t, db, `SELECT count(*) FROM stanzas WHERE body = 'old message of bob'`); n != 1 {
		t.Errorf("bob's message under legal hold was pruned")
	}
	if n := queryInt(t, db, `SELECT count(*) FROM admin_actions WHERE action = 'archive.prune' AND actor = 'server' AND origin = 'server'`); n == 0 {
		t.Errorf("the prune is not on record")
	}
	ts2.Stop()
	verifyArchive(t, ts2)
}

// A log-on that cannot be recorded ends the session (fail-closed).
func TestArchiveLogonFailClosed(t *testing.T) {
	ts, _ := startArchiveServer(t, func(c *config.Config) { c.Archive.LockTimeout = config.Duration(50 * time.Millisecond) })
	release := lockArchive(t, ts)
	defer release()
	alice, err := ts.TryDial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	if err != nil {
		t.Fatal(err) // the bind succeeds; the log-on is recorded just after it
	}
	if cond := alice.WaitClosed(); cond != "resource-constraint" {
		t.Fatalf("stream error %q, want resource-constraint", cond)
	}
}

// A file offered across the border is on record with the stanza that
// offered it.
func TestArchiveRecordsFileOffer(t *testing.T) {
	ts, peer := startArchiveServer(t, nil)
	alice := ts.Dial(t, "alice", arcPW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<message to='carol@legacy.localhost' type='chat' id='f1'><body>https://upload.localhost/x1/q3-figures.xlsx</body>` +
		`<x xmlns='jabber:x:oob'><url>https://upload.localhost/x1/q3-figures.xlsx</url></x></message>`)
	peer.expect(func(s *stanza.Stanza) bool { return s.ID == "f1" })
	db := reviewer(t, ts)
	if n := queryInt(t, db, `SELECT count(*) FROM file_transfers f JOIN stanzas s ON s.seq = f.stanza_seq
		WHERE s.stanza_id = 'f1' AND f.file_name = 'q3-figures.xlsx' AND f.url = 'https://upload.localhost/x1/q3-figures.xlsx'
		AND f.direction = 'out' AND f.zone = 'transport' AND f.account = 'alice@localhost' AND f.peer = 'carol@legacy.localhost'
		AND f.verdict = 'allow' AND f.size_bytes IS NULL`); n != 1 {
		t.Fatalf("file rows: %d", n)
	}
}

// The CLI records what it changes in the data directory, server running
// or not.
func TestRecordAdminAction(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	by := archive.Actor{Name: "os:root", Origin: "cli"}
	if err := server.RecordAdminAction(context.Background(), cfg, by, "user.add", "carol", ""); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(cfg.DataDir, "archive.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var actor, action, target string
	if err := db.QueryRow(`SELECT actor, action, target FROM admin_actions`).Scan(&actor, &action, &target); err != nil ||
		actor != "os:root" || action != "user.add" || target != "carol" {
		t.Fatalf("admin row %s %s %s (%v)", actor, action, target, err)
	}
}

// A transport link whose coming up cannot be recorded is refused.
func TestArchiveLinkFailClosed(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: arcPeerDomain, Secret: arcPeerSecret, Type: "irc"}}
		c.Archive.LockTimeout = config.Duration(50 * time.Millisecond)
	})
	release := lockArchive(t, ts)
	defer release()
	nc, err := net.DialTimeout("tcp", ts.ComponentAddrs()[0], xmpptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(xmpptest.Timeout))
	fmt.Fprintf(nc, `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>`, arcPeerDomain)
	dec := xml.NewDecoder(nc)
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("stream ended before the handshake answer: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Local == "stream" {
			id := ""
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					id = a.Value
				}
			}
			fmt.Fprintf(nc, `<handshake>%s</handshake>`, component.Handshake(id, []byte(arcPeerSecret)))
			continue
		}
		el, err := stanza.ReadElement(dec, se.Copy())
		if err != nil {
			t.Fatal(err)
		}
		if el.Name.Local == "handshake" {
			t.Fatal("the link came up although it could not be recorded")
		}
		if el.Name.Local == "error" {
			if c := el.Elements(); len(c) == 0 || c[0].Name.Local != "internal-server-error" {
				t.Fatalf("stream error %v, want internal-server-error", el)
			}
			return
		}
	}
}
