package server_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/policy/clamdtest"
	"gatehouse/transports/component"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

// The boundary policy over real sockets: staff log in over c2s, and the
// outside party is a XEP-0114 component serving irc.localhost (a
// transport), exactly as an IRC gateway would connect.

const (
	peerDomain = "irc.localhost"
	peerSecret = "policy-test-secret-0123456789"
	pw         = "correct horse"
)

// policyPeer is a raw XEP-0114 component standing for the outside world.
type policyPeer struct {
	t   testing.TB
	nc  net.Conn
	dec *xml.Decoder
	wmu sync.Mutex
	in  chan *stanza.Stanza

	mu      sync.Mutex
	backlog []*stanza.Stanza
}

func dialPolicyPeer(t testing.TB, addr string) *policyPeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, xmpptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(xmpptest.Timeout))
	p := &policyPeer{t: t, nc: nc, dec: xml.NewDecoder(nc), in: make(chan *stanza.Stanza, 256)}
	p.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>`, peerDomain)
	id := ""
	for id == "" {
		tok, err := p.dec.Token()
		if err != nil {
			t.Fatalf("peer: reading the stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					id = a.Value
				}
			}
		}
	}
	p.send(`<handshake>%s</handshake>`, component.Handshake(id, []byte(peerSecret)))
	for {
		tok, err := p.dec.Token()
		if err != nil {
			t.Fatalf("peer: handshake: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			el, err := stanza.ReadElement(p.dec, se.Copy())
			if err != nil || el.Name.Local != "handshake" {
				t.Fatalf("peer: handshake refused: %v %v", el, err)
			}
			break
		}
	}
	_ = nc.SetDeadline(time.Time{})
	go p.readLoop()
	return p
}

func (p *policyPeer) send(format string, args ...any) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, _ = fmt.Fprintf(p.nc, format, args...)
}

func (p *policyPeer) readLoop() {
	defer close(p.in)
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return
		}
		if se, ok := tok.(xml.StartElement); ok {
			se = se.Copy()
			if stanza.KindOf(se.Name.Local) == 0 {
				if _, err := stanza.ReadElement(p.dec, se); err != nil {
					return
				}
				continue
			}
			st, err := stanza.Parse(p.dec, se)
			if err != nil {
				return
			}
			p.in <- st
		}
	}
}

// expect waits for a stanza matching f; others stay queued.
func (p *policyPeer) expect(f func(*stanza.Stanza) bool) *stanza.Stanza {
	p.t.Helper()
	p.mu.Lock()
	for i, s := range p.backlog {
		if f(s) {
			p.backlog = append(p.backlog[:i], p.backlog[i+1:]...)
			p.mu.Unlock()
			return s
		}
	}
	p.mu.Unlock()
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
			p.mu.Lock()
			p.backlog = append(p.backlog, s)
			p.mu.Unlock()
		case <-timer.C:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.t.Fatalf("peer: timed out; unmatched: %v", p.backlog)
		}
	}
}

// none checks that nothing matching f is queued (call after a later
// stanza proved ordering).
func (p *policyPeer) none(f func(*stanza.Stanza) bool) {
	p.t.Helper()
	for {
		select {
		case s, ok := <-p.in:
			if !ok {
				return
			}
			p.mu.Lock()
			p.backlog = append(p.backlog, s)
			p.mu.Unlock()
			continue
		default:
		}
		break
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.backlog {
		if f(s) {
			p.t.Fatalf("peer: unexpected %v", s)
		}
	}
}

type policyEnv struct {
	ts   *xmpptest.TestServer
	peer *policyPeer
	file string
}

// startPolicyServer runs a server with the policy file policyFile (copied
// to a temporary file the test may rewrite), the accounts alice (manager
// boss), intern (group interns, manager boss), boss and compliance, and
// the outside peer connected.
func startPolicyServer(t *testing.T, policyFile, clamd string, mods ...xmpptest.Option) *policyEnv {
	t.Helper()
	src, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		t.Fatal(err)
	}
	if clamd == "" {
		// The example enables scanning; tests that do not scan point it
		// at a socket that does not exist.
		clamd = "unix:" + filepath.Join(t.TempDir(), "no-clamd.sock")
	}
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Policy.File = file
		c.Policy.Clamd = clamd
		c.Policy.DirectoryRefresh = 0 // see group changes at once
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: peerDomain, Secret: peerSecret, Type: "irc"}}
		for _, m := range mods {
			m(c)
		}
	})
	ctx := context.Background()
	for _, u := range []string{"alice", "intern", "boss", "compliance"} {
		ts.AddUser(t, u, pw)
	}
	db := ts.DB()
	for _, err := range []error{
		db.SetManager(ctx, "alice", "boss"), db.SetManager(ctx, "intern", "boss"),
		db.CreateGroup(ctx, "interns"), db.AddToGroup(ctx, "interns", "intern"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	peer := dialPolicyPeer(t, ts.ComponentAddrs()[0])
	return &policyEnv{ts: ts, peer: peer, file: file}
}

const examplePolicy = "../../testdata/policy/example.yaml"

// online dials user and sends initial presence, so that messages to the
// bare JID (notices) reach the session.
func online(t *testing.T, ts *xmpptest.TestServer, user string) *xmpptest.Client {
	t.Helper()
	c := ts.Dial(t, user, pw, xmpptest.ClientOptions{Resource: "desk"})
	c.Send(`<presence/>`)
	c.Ping()
	return c
}

func errText(st *stanza.Stanza) string {
	if e := st.Child("", "error"); e != nil {
		return e.ChildText(stanza.NSStanzaErr, "text")
	}
	return ""
}

func isError(id string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Type == "error" && s.ID == id }
}

func bodyIs(body string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() == body }
}

func bodyHas(part string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && strings.Contains(s.Body(), part) }
}

// TestPolicyInternBlocked: a user in a group barred from outside chat gets
// the configured error, cannot subscribe to outside contacts, and cannot
// be reached from outside.
func TestPolicyInternBlocked(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "")
	intern := online(t, e.ts, "intern")

	intern.Send(`<message to='partner@irc.localhost' type='chat' id='m1'><body>hello</body></message>`)
	bounce := intern.Expect(isError("m1"))
	if bounce.ErrorCondition() != stanza.PolicyViolation ||
		errText(bounce) != "Interns may not communicate with people outside Example Corp. (rule interns-internal-only)" {
		t.Fatalf("bounce: %v", bounce)
	}
	// A subscription request never leaves, and the intern is told why.
	// (The router's presence error goes to the bare JID, where the
	// presence module drops it; the roster keeps ask=subscribe.)
	intern.Send(`<presence to='partner@irc.localhost' type='subscribe' id='s1'/>`)
	sn := intern.Expect(bodyHas("Your request to see the presence of partner@irc.localhost was refused"))
	if !strings.Contains(sn.Body(), "Interns may not communicate with people outside Example Corp. (rule interns-internal-only)") ||
		sn.From.String() != "localhost" || sn.Child("urn:gatehouse:policy:0", "policy").AttrValue("rule") != "interns-internal-only" {
		t.Fatalf("subscription refusal notice: %v", sn)
	}
	alice := online(t, e.ts, "alice")
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='a1'><body>from alice</body></message>`)
	e.peer.expect(bodyIs("from alice")) // the component link is ordered
	e.peer.none(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "subscribe" })

	// From outside: refused, and the outsider is not told the rule.
	e.peer.send(`<message from='partner@irc.localhost' to='intern@localhost' type='chat' id='in1'><body>hi intern</body></message>`)
	b := e.peer.expect(isError("in1"))
	if b.ErrorCondition() != stanza.PolicyViolation || strings.Contains(errText(b), "intern") {
		t.Fatalf("inbound bounce: %v", b)
	}
	intern.Ping()
	intern.ExpectNone(bodyIs("hi intern"), 100*time.Millisecond)
	e.peer.none(func(s *stanza.Stanza) bool { return s.From.Localpart() == "intern" })

	// Taken out of the group (no reload needed), the intern may talk.
	if err := e.ts.DB().RemoveFromGroup(context.Background(), "interns", "intern"); err != nil {
		t.Fatal(err)
	}
	intern.Send(`<message to='partner@irc.localhost' type='chat' id='m2'><body>hello again</body></message>`)
	e.peer.expect(bodyIs("hello again"))
}

// TestPolicyProjectX: "Project X" to an outside contact is refused and the
// sender's manager, a local user, receives a notice; a card number is
// masked on the way out and the compliance officer is told.
func TestPolicyProjectX(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "")
	alice := online(t, e.ts, "alice")
	boss := online(t, e.ts, "boss")
	compliance := online(t, e.ts, "compliance")

	alice.Send(`<message to='partner@irc.localhost' type='chat' id='px'><body>The ＰＲＯＪＥＣＴ X launch slips a week</body></message>`)
	b := alice.Expect(isError("px"))
	if b.ErrorCondition() != stanza.PolicyViolation || errText(b) != "Project X is confidential. (rule project-x)" {
		t.Fatalf("bounce: %v", b)
	}
	n := boss.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.From.String() == "localhost" })
	for _, want := range []string{"Rule project-x (content, deny)", "from alice@localhost/desk to partner@irc.localhost", "slips a week"} {
		if !strings.Contains(n.Body(), want) {
			t.Errorf("manager notice %q lacks %q", n.Body(), want)
		}
	}
	if n.Child("urn:gatehouse:policy:0", "policy") == nil || n.Child("", "subject").Text() != "Policy notice: project-x" {
		t.Errorf("notice: %v", n)
	}

	alice.Send(`<message to='partner@irc.localhost' type='chat' id='card'><body>card 4111 1111 1111 1111 exp 12/29</body></message>`)
	got := e.peer.expect(bodyHas("exp 12/29"))
	if got.Body() != "card ******************* exp 12/29" {
		t.Fatalf("delivered %q", got.Body())
	}
	cn := compliance.Expect(bodyHas("Rule card-numbers (content, redact)"))
	if strings.Contains(cn.Body(), "4111") {
		t.Fatalf("the compliance notice repeats the card number: %q", cn.Body())
	}
	// The refused message never reached the outside.
	e.peer.none(bodyHas("slips a week"))

	// Both decisions are in the compliance archive with their rules and
	// the policy version; the original card number only there.
	arch := policyArchive(t, e.ts)
	var verdict, rule, version, raw string
	var delivered sql.NullString
	q := `SELECT verdict, rule, policy_version, raw, raw_delivered FROM stanzas WHERE stanza_id = ?`
	if err := arch.QueryRow(q, "px").Scan(&verdict, &rule, &version, &raw, &delivered); err != nil {
		t.Fatal(err)
	}
	if verdict != "deny" || rule != "watch-irc,project-x" || version != e.ts.PolicyVersion() {
		t.Fatalf("archived Project X decision: %s %s %s", verdict, rule, version)
	}
	if err := arch.QueryRow(q, "card").Scan(&verdict, &rule, &version, &raw, &delivered); err != nil {
		t.Fatal(err)
	}
	if verdict != "allow" || !strings.Contains(rule, "card-numbers") || !strings.Contains(raw, "4111 1111 1111 1111") ||
		!strings.Contains(delivered.String, "card *******************") {
		t.Fatalf("archived redaction: %s %s raw=%q delivered=%q", verdict, rule, raw, delivered.String)
	}
}

// TestPolicyFiles: size and type limits on file offers.
func TestPolicyFiles(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "")
	alice := online(t, e.ts, "alice")
	jingle := func(id, name string, size int) string {
		return fmt.Sprintf(`<iq to='partner@irc.localhost/x' type='set' id='%s'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='%s'>`+
			`<content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>`+
			`<name>%s</name><size>%d</size></file></description></content></jingle></iq>`, id, id, name, size)
	}
	alice.Send(jingle("big", "video.mp4", 5_000_000))
	if b := alice.Expect(isError("big")); b.ErrorCondition() != stanza.PolicyViolation ||
		errText(b) != "Files larger than 1 MB may not leave the company. (rule max-1mb)" {
		t.Fatalf("big file: %v", b)
	}
	alice.Send(`<iq to='partner@irc.localhost/x' type='set' id='exe'><si xmlns='http://jabber.org/protocol/si' id='s1' profile='http://jabber.org/protocol/si/profile/file-transfer'>` +
		`<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='invoice.exe' size='2000'/></si></iq>`)
	if b := alice.Expect(isError("exe")); !strings.Contains(errText(b), "rule no-executables") {
		t.Fatalf("executable: %v", b)
	}
	alice.Send(jingle("ok", "notes.txt", 2000))
	e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "ok" })
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='oob'><body>https://share.example/a/report.pdf</body>` +
		`<x xmlns='jabber:x:oob'><url>https://share.example/a/report.pdf</url></x></message>`)
	e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "oob" })
}

// TestPolicyVirusScan: files that cross inline are scanned by a real
// clamd; the EICAR test file is refused (and the manager told), a clean
// file passes.
func TestPolicyVirusScan(t *testing.T) {
	cd := clamdtest.Start(t)
	e := startPolicyServer(t, examplePolicy, cd.Addr)
	alice := online(t, e.ts, "alice")
	boss := online(t, e.ts, "boss")
	ibb := func(id, sid string, seq int, data []byte) string {
		return fmt.Sprintf(`<iq to='partner@irc.localhost/x' type='set' id='%s'><data xmlns='http://jabber.org/protocol/ibb' sid='%s' seq='%d'>%s</data></iq>`,
			id, sid, seq, base64.StdEncoding.EncodeToString(data))
	}
	alice.Send(`<iq to='partner@irc.localhost/x' type='set' id='open1'><open xmlns='http://jabber.org/protocol/ibb' sid='s1' block-size='4096'/></iq>`)
	e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "open1" })
	alice.Send(ibb("clean", "s1", 0, []byte("quarterly numbers, nothing to see")))
	e.peer.expect(func(s *stanza.Stanza) bool { return s.ID == "clean" })

	alice.Send(ibb("eicar", "s2", 0, clamdtest.EICAR()))
	b := alice.Expect(isError("eicar"))
	if b.ErrorCondition() != stanza.PolicyViolation || !strings.Contains(errText(b), clamdtest.EICARName) || !strings.Contains(errText(b), "rule virus-scan") {
		t.Fatalf("EICAR bounce: %v", b)
	}
	n := boss.Expect(bodyHas("Rule virus-scan"))
	if !strings.Contains(n.Body(), "Malware: "+clamdtest.EICARName) {
		t.Fatalf("manager notice: %q", n.Body())
	}
	// The same file as a data: URI in a message.
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='uri'><body>data:application/octet-stream;base64,` +
		base64.StdEncoding.EncodeToString(clamdtest.EICAR()) + `</body></message>`)
	if b := alice.Expect(isError("uri")); !strings.Contains(errText(b), clamdtest.EICARName) {
		t.Fatalf("data URI bounce: %v", b)
	}
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='after'><body>done</body></message>`)
	e.peer.expect(bodyIs("done"))
	e.peer.none(func(s *stanza.Stanza) bool { return s.ID == "eicar" || s.ID == "uri" })
}

// TestPolicyScanFailClosed: with clamd down, inline files are refused.
func TestPolicyScanFailClosed(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "")
	alice := online(t, e.ts, "alice")
	alice.Send(`<iq to='partner@irc.localhost/x' type='set' id='d'><data xmlns='http://jabber.org/protocol/ibb' sid='s' seq='0'>aGVsbG8=</data></iq>`)
	if b := alice.Expect(isError("d")); b.ErrorCondition() != stanza.ResourceConstraint {
		t.Fatalf("bounce: %v", b)
	}
}

// TestPolicyDisclaimer: the first message of a pair gets the notice on
// both sides, once per period.
func TestPolicyDisclaimer(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "")
	alice := online(t, e.ts, "alice")

	alice.Send(`<message to='partner@irc.localhost' type='chat' id='m1'><body>first</body></message>`)
	toPeer := e.peer.expect(bodyHas("[automatic notice]"))
	if toPeer.From.String() != "alice@localhost" || !strings.Contains(toPeer.Body(), "recorded by Example Corp") {
		t.Fatalf("outside notice: %v", toPeer)
	}
	e.peer.expect(bodyIs("first"))
	n := alice.Expect(bodyHas("This conversation is recorded"))
	if n.From.String() != "localhost" || !strings.Contains(n.Body(), "partner@irc.localhost") {
		t.Fatalf("local notice: %v", n)
	}
	// The reply and further messages in the period carry no new notice.
	e.peer.send(`<message from='partner@irc.localhost' to='alice@localhost' type='chat'><body>reply</body></message>`)
	alice.Expect(bodyIs("reply"))
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='m2'><body>second</body></message>`)
	e.peer.expect(bodyIs("second"))
	e.peer.none(bodyHas("[automatic notice]"))
	alice.Ping()
	alice.ExpectNone(bodyHas("This conversation is recorded"), 50*time.Millisecond)

	// Another outside contact is another pair.
	alice.Send(`<message to='other@irc.localhost' type='chat' id='m3'><body>hi other</body></message>`)
	e.peer.expect(func(s *stanza.Stanza) bool {
		return s.To.String() == "other@irc.localhost" && strings.HasPrefix(s.Body(), "[automatic notice]")
	})
}

// TestPolicyReload: a good file takes effect at once; a bad file is
// refused whole and the old policy stays.
func TestPolicyReload(t *testing.T) {
	e := startPolicyServer(t, examplePolicy, "")
	alice := online(t, e.ts, "alice")
	v1 := e.ts.PolicyVersion()

	alice.Send(`<message to='partner@irc.localhost' type='chat' id='a1'><body>about Falcon</body></message>`)
	e.peer.expect(bodyIs("about Falcon"))

	// A new rule, loaded as SIGHUP does (Server.Reload).
	src, err := os.ReadFile(e.file)
	if err != nil {
		t.Fatal(err)
	}
	v2src := strings.Replace(string(src), `version: "2026-11-23.1"`, `version: "2026-11-23.2"`, 1)
	v2src = strings.Replace(v2src, "      - PX-2000\n", "      - PX-2000\n      - Falcon\n", 1)
	if err := os.WriteFile(e.file, []byte(v2src), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ts.Reload(e.ts.Config)
	v2 := e.ts.PolicyVersion()
	if v2 == v1 || !strings.HasPrefix(v2, "2026-11-23.2@") {
		t.Fatalf("version after reload %q (was %q)", v2, v1)
	}
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='a2'><body>about Falcon</body></message>`)
	if b := alice.Expect(isError("a2")); !strings.Contains(errText(b), "rule project-x") {
		t.Fatalf("after reload: %v", b)
	}

	// A bad file: every rule in it is ignored, the running policy stays.
	bad, err := os.ReadFile("../../testdata/policy/bad-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.file, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	err = e.ts.ReloadPolicy(context.Background())
	var pe interface{ Error() string }
	if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), "rule interns-internal-only") {
		t.Fatalf("bad reload: %v", err)
	}
	if v := e.ts.PolicyVersion(); v != v2 {
		t.Fatalf("version after a refused reload %q, want %q", v, v2)
	}
	alice.Send(`<message to='partner@irc.localhost' type='chat' id='a3'><body>about Falcon</body></message>`)
	if b := alice.Expect(isError("a3")); !strings.Contains(errText(b), "rule project-x") {
		t.Fatalf("after a refused reload: %v", b)
	}

	// The archive notes both: later rows carry the version in force.
	arch := policyArchive(t, e.ts)
	rows, err := arch.Query(`SELECT action, policy_version FROM policy_actions WHERE action LIKE 'policy.reload%' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var action, version string
		if err := rows.Scan(&action, &version); err != nil {
			t.Fatal(err)
		}
		got = append(got, action+" "+version)
	}
	if want := []string{"policy.reloaded " + v2, "policy.reload_refused " + v2}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("archive reload rows %v, want %v", got, want)
	}
}
