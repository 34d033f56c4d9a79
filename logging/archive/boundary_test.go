package archive

import (
	"context"
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/mattn/go-sqlite3"

	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

func parseStanza(t testing.TB, s string) *stanza.Stanza {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("parse %s: %v", s, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			st, err := stanza.Parse(dec, se)
			if err != nil {
				t.Fatalf("parse %s: %v", s, err)
			}
			return st
		}
	}
}

func env(t testing.TB, raw string, src, dst router.Zone) *router.Envelope {
	st := parseStanza(t, raw)
	srcDomain, dstDomain := st.From.Domainpart(), st.To.Domainpart()
	return &router.Envelope{Seq: 42, Stanza: st, Src: router.Endpoint{Zone: src, Domain: srcDomain, Conn: 7},
		Dst: router.Endpoint{Zone: dst, Domain: dstDomain}}
}

func TestFromEnvelope(t *testing.T) {
	cases := []struct {
		name     string
		raw      string
		src, dst router.Zone
		want     Stanza
	}{
		{"out to a federated server",
			`<message xmlns='jabber:client' from='alice@example.com/laptop' to='bob@partner.example' id='a1'><body>hi</body><thread>t1</thread><subject>s</subject><origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>`,
			router.ZoneLocal, router.ZoneRemote,
			Stanza{Direction: Out, Zone: ZoneRemote, Network: "partner.example", Account: "alice@example.com", LocalJID: "alice@example.com/laptop",
				Peer: "bob@partner.example", PeerJID: "bob@partner.example", Kind: "message", Type: "normal", StanzaID: "a1", OriginID: "o1",
				Thread: "t1", Subject: "s", Body: "hi"}},
		{"in from a transport, legacy id unescaped",
			`<message xmlns='jabber:client' from='john\20doe\40corp.com@irc.example.com/x' to='alice@example.com' type='chat'><body>yo</body></message>`,
			router.ZoneTransport, router.ZoneLocal,
			Stanza{Direction: In, Zone: ZoneTransport, Network: "irc.example.com", Account: "alice@example.com", LocalJID: "alice@example.com",
				Peer: `john\20doe\40corp.com@irc.example.com`, PeerJID: `john\20doe\40corp.com@irc.example.com/x`, LegacyID: "john doe@corp.com",
				Kind: "message", Type: "chat", Body: "yo"}},
		{"internal presence",
			`<presence xmlns='jabber:client' from='alice@example.com/laptop' to='bob@example.com'/>`,
			router.ZoneLocal, router.ZoneLocal,
			Stanza{Direction: Internal, Zone: ZoneLocal, Network: "example.com", Account: "alice@example.com", LocalJID: "alice@example.com/laptop",
				Peer: "bob@example.com", PeerJID: "bob@example.com", Kind: "presence", Type: "available"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := FromEnvelope(env(t, c.raw, c.src, c.dst))
			if got.Raw == "" || got.RouteSeq != 42 || got.ConnID != 7 || got.Verdict != Allow {
				t.Fatalf("raw %q route_seq %d conn %d verdict %s", got.Raw, got.RouteSeq, got.ConnID, got.Verdict)
			}
			got.Raw, got.RouteSeq, got.ConnID, got.Verdict = "", 0, 0, ""
			if *got != c.want {
				t.Fatalf("got  %+v\nwant %+v", *got, c.want)
			}
		})
	}
}

// fixed is an inner boundary with a fixed answer; it may rewrite the
// stanza as a redacting policy does.
type fixed struct {
	dec     router.Decision
	err     error
	rewrite string
	calls   int
}

func (f *fixed) Cross(_ context.Context, env *router.Envelope) (router.Decision, error) {
	f.calls++
	if f.rewrite != "" {
		st := env.Stanza.ShallowCopy()
		st.Children = nil
		st.Append(stanza.NewElement("", "body").AppendText(f.rewrite))
		env.Stanza = st
	}
	return f.dec, f.err
}

func lastStanza(t *testing.T, a *Archive) StanzaRow {
	t.Helper()
	var out StanzaRow
	_, err := a.scan(context.Background(), Filter{Kinds: []string{"message", "presence", "iq"}}, "seq DESC", func(r *StanzaRow) error {
		if out.Seq == 0 {
			out = *r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBoundaryRecordsTheDecision(t *testing.T) {
	a, _ := openTest(t)
	ctx := context.Background()
	out := `<message xmlns='jabber:client' from='alice@example.com/laptop' to='bob@partner.example' type='chat'><body>IBAN DE44 5001</body></message>`

	deny := &fixed{dec: router.Decision{Verdict: router.Deny, Condition: stanza.NotAllowed, Text: "not to rivals", Rule: "access.rivals", PolicyVersion: "v7"}}
	dec, err := NewBoundary(deny, a, BoundaryOptions{}).Cross(ctx, env(t, out, router.ZoneLocal, router.ZoneRemote))
	if err != nil || dec.Verdict != router.Deny || dec.Rule != "access.rivals" {
		t.Fatalf("deny: %+v %v", dec, err)
	}
	r := lastStanza(t, a)
	if r.Verdict != Deny || r.Rule != "access.rivals" || r.PolicyVersion != "v7" || r.DenyCondition != "not-allowed" || r.DenyText != "not to rivals" || r.RawDelivered != "" {
		t.Fatalf("deny row %+v", r)
	}

	redact := &fixed{dec: router.Decision{Verdict: router.Allow, Rule: "content.iban", PolicyVersion: "v7"}, rewrite: "IBAN [redacted]"}
	e := env(t, out, router.ZoneLocal, router.ZoneRemote)
	if dec, err := NewBoundary(redact, a, BoundaryOptions{}).Cross(ctx, e); err != nil || dec.Verdict != router.Allow {
		t.Fatalf("redact: %+v %v", dec, err)
	}
	r = lastStanza(t, a)
	if r.Body != "IBAN DE44 5001" || !strings.Contains(r.Raw, "DE44") || !strings.Contains(r.RawDelivered, "[redacted]") || r.Rule != "content.iban" {
		t.Fatalf("redacted row: body %q raw %q delivered %q rule %q", r.Body, r.Raw, r.RawDelivered, r.Rule)
	}

	broken := &fixed{err: errors.New("directory down")}
	if _, err := NewBoundary(broken, a, BoundaryOptions{}).Cross(ctx, env(t, out, router.ZoneLocal, router.ZoneRemote)); err == nil {
		t.Fatal("the inner boundary's error was swallowed")
	}
	r = lastStanza(t, a)
	if r.Verdict != Error || r.DenyCondition != "resource-constraint" || r.DenyText != "directory down" {
		t.Fatalf("error row %+v", r)
	}
	mustVerify(t, a)
}

func TestBoundaryPresenceScope(t *testing.T) {
	a, _ := openTest(t)
	ctx := context.Background()
	inner := &fixed{}
	for _, c := range []struct {
		raw      string
		presence bool
		recorded bool
	}{
		{`<presence xmlns='jabber:client' from='a@example.com/r' to='b@partner.example'/>`, false, false},
		{`<presence xmlns='jabber:client' from='a@example.com/r' to='b@partner.example' type='unavailable'/>`, false, false},
		{`<presence xmlns='jabber:client' from='a@example.com/r' to='b@partner.example' type='subscribe'/>`, false, true},
		{`<presence xmlns='jabber:client' from='b@partner.example' to='a@example.com' type='unsubscribed'/>`, false, true},
		{`<presence xmlns='jabber:client' from='a@example.com/r' to='b@partner.example'/>`, true, true},
		{`<iq xmlns='jabber:client' from='a@example.com/r' to='b@partner.example/x' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>`, false, true},
	} {
		before, _ := a.Head(ctx)
		b := NewBoundary(inner, a, BoundaryOptions{Presence: c.presence})
		if _, err := b.Cross(ctx, env(t, c.raw, router.ZoneLocal, router.ZoneRemote)); err != nil {
			t.Fatal(err)
		}
		after, _ := a.Head(ctx)
		if got := after.Seq > before.Seq; got != c.recorded {
			t.Errorf("%s (presence %v): recorded %v, want %v", c.raw, c.presence, got, c.recorded)
		}
	}
	if inner.calls != 6 {
		t.Fatalf("policy asked %d times, want 6: scope must not skip the policy", inner.calls)
	}
}

// A full disk: the row cannot be committed, the crossing is refused with
// resource-constraint (fail-closed) or let through (fail-open), and the
// chain stays intact for the rows that were committed.
func TestBoundaryDiskFull(t *testing.T) {
	a, _ := openTest(t, func(o *Options) { o.maxPageCount = 60 })
	ctx := context.Background()
	big := strings.Repeat("x", 3000)
	var full error
	for i := 0; i < 200 && full == nil; i++ {
		_, full = a.Append(ctx, msg("alice@example.com", "bob@partner.example", big))
	}
	var se sqlite3.Error
	if !errors.Is(full, ErrUnavailable) || !errors.As(full, &se) || se.Code != sqlite3.ErrFull {
		t.Fatalf("append on a full disk: %v, want ErrUnavailable wrapping SQLITE_FULL", full)
	}
	raw := `<message xmlns='jabber:client' from='alice@example.com/laptop' to='bob@partner.example'><body>` + big + `</body></message>`
	pv := &fixed{dec: router.Decision{Verdict: router.Allow, Rule: "default", PolicyVersion: "v1"}}
	dec, err := NewBoundary(pv, a, BoundaryOptions{}).Cross(ctx, env(t, raw, router.ZoneLocal, router.ZoneRemote))
	if err != nil || dec.Verdict != router.Deny || dec.Condition != stanza.ResourceConstraint || dec.Text != RefusedText || dec.Rule != "archive" {
		t.Fatalf("fail-closed decision %+v %v", dec, err)
	}
	dec, err = NewBoundary(pv, a, BoundaryOptions{FailOpen: true}).Cross(ctx, env(t, raw, router.ZoneLocal, router.ZoneRemote))
	if err != nil || dec.Verdict != router.Allow {
		t.Fatalf("fail-open decision %+v %v", dec, err)
	}
	mustVerify(t, a)
}

// A stanza that offers files gets a file_transfers row per file, in the
// same transaction as its own row, naming it and carrying the decision.
func TestBoundaryRecordsFileOffers(t *testing.T) {
	a, _ := openTest(t)
	ctx := context.Background()
	sum := "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" // sha-256 of "test", base64
	cases := []struct {
		raw  string
		want []FileTransfer
	}{
		{`<message xmlns='jabber:client' from='alice@example.com/l' to='bob@partner.example'><body>https://up.example.com/a1/q3.pdf</body><x xmlns='jabber:x:oob'><url>https://up.example.com/a1/q3.pdf</url></x></message>`,
			[]FileTransfer{{FileName: "q3.pdf", Size: -1, URL: "https://up.example.com/a1/q3.pdf"}}},
		{`<message xmlns='jabber:client' from='alice@example.com/l' to='bob@partner.example'><file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'><media-type>text/plain</media-type><name>notes.txt</name><size>5</size><hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>` + sum + `</hash></file><sources><url-data xmlns='http://jabber.org/protocol/url-data' target='https://up.example.com/b2/notes.txt'/></sources></file-sharing></message>`,
			[]FileTransfer{{FileName: "notes.txt", Size: 5, MediaType: "text/plain", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", URL: "https://up.example.com/b2/notes.txt"}}},
		{`<iq xmlns='jabber:client' from='alice@example.com/l' to='bob@partner.example/x' type='set' id='j1'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1'><content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>plan.odt</name><size>1234</size></file></description></content></jingle></iq>`,
			[]FileTransfer{{FileName: "plan.odt", Size: 1234}}},
		{`<message xmlns='jabber:client' from='alice@example.com/l' to='bob@partner.example'><body>see https://example.org/page</body></message>`, nil},
	}
	db := rawDB(t, a.Path())
	for i, c := range cases {
		dec := router.Decision{Verdict: router.Allow, Rule: "files.ok", PolicyVersion: "v9"}
		if i == 2 {
			dec = router.Decision{Verdict: router.Deny, Rule: "files.no-jingle", PolicyVersion: "v9"}
		}
		if _, err := NewBoundary(&fixed{dec: dec}, a, BoundaryOptions{}).Cross(ctx, env(t, c.raw, router.ZoneLocal, router.ZoneRemote)); err != nil {
			t.Fatal(err)
		}
		stanzaSeq := lastStanza(t, a).Seq
		rows, err := db.Query(`SELECT file_name, coalesce(size_bytes, -1), coalesce(media_type, ''), coalesce(sha256, ''), coalesce(url, ''),
			verdict, rule, policy_version, account, peer, direction FROM file_transfers WHERE stanza_seq = ? ORDER BY seq`, stanzaSeq)
		if err != nil {
			t.Fatal(err)
		}
		var got []FileTransfer
		for rows.Next() {
			var f FileTransfer
			if err := rows.Scan(&f.FileName, &f.Size, &f.MediaType, &f.SHA256, &f.URL, &f.Verdict, &f.Rule, &f.PolicyVersion, &f.Account, &f.Peer, &f.Direction); err != nil {
				t.Fatal(err)
			}
			wantVerdict := Allow
			if dec.Verdict == router.Deny {
				wantVerdict = Deny
			}
			if f.Verdict != wantVerdict || f.Rule != dec.Rule ||
				f.PolicyVersion != "v9" || f.Account != "alice@example.com" || f.Peer != "bob@partner.example" || f.Direction != Out {
				t.Errorf("case %d: decision or parties wrong: %+v", i, f)
			}
			got = append(got, FileTransfer{FileName: f.FileName, Size: f.Size, MediaType: f.MediaType, SHA256: f.SHA256, URL: f.URL})
		}
		rows.Close()
		if len(got) != len(c.want) {
			t.Fatalf("case %d: files %+v, want %+v", i, got, c.want)
		}
		for j := range got {
			if got[j] != c.want[j] {
				t.Errorf("case %d: file %+v, want %+v", i, got[j], c.want[j])
			}
		}
	}
	mustVerify(t, a)
}
