package policy_test

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	"gatehouse/policy"
	"gatehouse/xmpp/router"
	"gatehouse/xmpp/stanza"
)

func parseStanza(t testing.TB, s string) *stanza.Stanza {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			st, err := stanza.Parse(d, start)
			if err != nil {
				t.Fatalf("parse %q: %v", s, err)
			}
			return st
		}
	}
}

func example(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Load("../testdata/policy/example.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// monday10 is inside a mon-fri 09:00-18:00 window.
var monday10 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func out(xmlText string) string {
	return `<message xmlns='jabber:client' from='alice@localhost/desk' to='partner@irc.localhost' type='chat' id='m1'>` + xmlText + `</message>`
}

func msg(body string) string { return out(`<body>` + body + `</body>`) }

// TestExplainExample runs the example policy over sample crossings: which
// rules act, in which order, and what the decision is.
func TestExplainExample(t *testing.T) {
	p := example(t)
	big := fmt.Sprintf(`<x xmlns='jabber:x:oob'><url>https://upload.localhost/abc/plan.pdf</url></x>`)
	for _, tc := range []struct {
		name    string
		dir     policy.Direction
		zone    router.Zone
		stanza  string
		groups  []string
		verdict router.Verdict
		cond    stanza.Condition
		rule    string
		text    string // substring of the bounce text
		notify  []string
	}{
		{name: "plain chat", stanza: msg("hello"), verdict: router.Allow, rule: "watch-irc,recorded"},
		{name: "intern blocked", stanza: msg("hello"), groups: []string{"interns"}, verdict: router.Deny, cond: stanza.PolicyViolation,
			rule: "interns-internal-only", text: "Interns may not communicate with people outside Example Corp. (rule interns-internal-only)"},
		{name: "intern inbound gets generic text", dir: policy.Inbound, groups: []string{"interns"},
			stanza:  `<message from='partner@irc.localhost/x' to='alice@localhost' type='chat'><body>hi</body></message>`,
			verdict: router.Deny, cond: stanza.PolicyViolation, rule: "interns-internal-only", text: "refused by the recipient organization's policy"},
		{name: "intern subscription", groups: []string{"interns"},
			stanza:  `<presence from='alice@localhost' to='partner@irc.localhost' type='subscribe'/>`,
			verdict: router.Deny, rule: "interns-internal-only"},
		{name: "competitor", zone: router.ZoneRemote,
			stanza:  `<message from='alice@localhost/d' to='ceo@rd.competitor.example' type='chat'><body>hi</body></message>`,
			verdict: router.Deny, rule: "no-competitors", notify: []string{"no-competitors → manager"}},
		{name: "project x", stanza: msg("the Project X launch"), verdict: router.Deny, cond: stanza.PolicyViolation,
			rule: "watch-irc,project-x", text: "Project X is confidential. (rule project-x)", notify: []string{"project-x → manager"}},
		{name: "project x look-alike", stanza: msg("the Рrојесt\u200b  Ⅹ launch"), verdict: router.Deny, rule: "watch-irc,project-x", notify: []string{"project-x → manager"}},
		{name: "project x fullwidth", stanza: msg("ＰＲＯＪＥＣＴ Ｘ"), verdict: router.Deny, rule: "watch-irc,project-x", notify: []string{"project-x → manager"}},
		{name: "project x not a whole word", stanza: msg("subproject xylophone"), verdict: router.Allow, rule: "watch-irc,recorded"},
		{name: "project x inbound allowed", dir: policy.Inbound,
			stanza:  `<message from='partner@irc.localhost/x' to='alice@localhost' type='chat'><body>Project X?</body></message>`,
			verdict: router.Allow, rule: "watch-irc,recorded"},
		{name: "legal exempt", groups: []string{"legal"}, stanza: msg("Project X"), verdict: router.Allow, rule: "watch-irc,legal-exempt,recorded"},
		{name: "substring lexicon", stanza: msg("see doc FOO-internal-only-v2"), verdict: router.Deny, rule: "watch-irc,internal-only"},
		{name: "card number redacted", stanza: msg("card 4111 1111 1111 1111 thanks"), verdict: router.Allow,
			rule: "watch-irc,card-numbers,recorded", notify: []string{"card-numbers → compliance@localhost"}},
		{name: "presence status", stanza: `<presence from='alice@localhost/d' to='partner@irc.localhost'><status>on Project X</status></presence>`,
			verdict: router.Deny, rule: "watch-irc,project-x", notify: []string{"project-x → manager"}},
		{name: "small upload link", stanza: out(`<body>https://upload.localhost/abc/plan.pdf</body>` + big), verdict: router.Allow, rule: "watch-irc,recorded"},
		{name: "jingle too big",
			stanza: `<iq xmlns='jabber:client' from='alice@localhost/d' to='partner@irc.localhost/x' type='set' id='j1'>
				<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1'><content creator='initiator' name='f'>
				<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>video.mp4</name><media-type>video/mp4</media-type><size>5000000</size></file></description>
				</content></jingle></iq>`,
			verdict: router.Deny, rule: "watch-irc,max-1mb", text: "Files larger than 1 MB may not leave the company. (rule max-1mb)"},
		{name: "jingle too big inbound is fine", dir: policy.Inbound,
			stanza: `<iq xmlns='jabber:client' to='alice@localhost/d' from='partner@irc.localhost/x' type='set' id='j1'>
				<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1'><content creator='initiator' name='f'>
				<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>video.mp4</name><size>5000000</size></file></description>
				</content></jingle></iq>`,
			verdict: router.Allow, rule: "watch-irc"},
		{name: "si executable",
			stanza: `<iq from='alice@localhost/d' to='partner@irc.localhost/x' type='set' id='s1'>
				<si xmlns='http://jabber.org/protocol/si' id='sid1' mime-type='application/octet-stream' profile='http://jabber.org/protocol/si/profile/file-transfer'>
				<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='setup.EXE' size='1000'/></si></iq>`,
			verdict: router.Deny, rule: "watch-irc,no-executables"},
		{name: "data uri is scanned", stanza: out(`<body>data:text/plain;base64,` + base64.StdEncoding.EncodeToString([]byte("hello")) + `</body>`),
			verdict: router.Allow, rule: "watch-irc,recorded"},
		{name: "ibb data", stanza: `<iq from='alice@localhost/d' to='partner@irc.localhost/x' type='set' id='i1'><data xmlns='http://jabber.org/protocol/ibb' seq='0' sid='s'>aGVsbG8=</data></iq>`,
			verdict: router.Allow, rule: "watch-irc"},
		{name: "server's own stanza", stanza: `<iq from='localhost' to='irc.localhost' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>`,
			groups: []string{"interns"}, verdict: router.Allow, rule: "watch-irc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.dir == 0 {
				tc.dir = policy.Outbound
			}
			if tc.zone == 0 {
				tc.zone = router.ZoneTransport
			}
			st := parseStanza(t, tc.stanza)
			e := p.Explain(policy.Sample{Dir: tc.dir, Zone: tc.zone, Stanza: st, LocalAccount: true, Groups: tc.groups, Now: monday10})
			d := e.Decision
			if d.Verdict != tc.verdict || d.Rule != tc.rule || d.PolicyVersion != p.Version() {
				t.Fatalf("decision %+v, want verdict %v rule %q; steps %+v", d, tc.verdict, tc.rule, e.Steps)
			}
			if tc.cond != "" && d.Condition != tc.cond {
				t.Errorf("condition %q, want %q", d.Condition, tc.cond)
			}
			if !strings.Contains(d.Text, tc.text) {
				t.Errorf("text %q lacks %q", d.Text, tc.text)
			}
			if strings.Join(e.Notify, ";") != strings.Join(tc.notify, ";") {
				t.Errorf("notify %q, want %q", e.Notify, tc.notify)
			}
		})
	}
}

func TestExplainDetails(t *testing.T) {
	p := example(t)
	st := parseStanza(t, msg("pay with 4111-1111-1111-1111 or 5500 0000 0000 0004, not Project Xray"))
	e := p.Explain(policy.Sample{Dir: policy.Outbound, Zone: router.ZoneTransport, Stanza: st, LocalAccount: true, Now: monday10})
	if e.Decision.Verdict != router.Allow {
		t.Fatalf("denied: %+v", e.Decision)
	}
	if got := e.Delivered.Body(); got != "pay with ******************* or *******************, not Project Xray" {
		t.Fatalf("redacted body %q", got)
	}
	if st.Body() == e.Delivered.Body() {
		t.Fatal("the original was changed")
	}
	if len(e.Texts) != 1 || !strings.Contains(e.Texts[0], "not project xray") {
		t.Fatalf("texts %q", e.Texts)
	}

	// Scanning is requested for inline content only.
	st = parseStanza(t, out(`<body>data:application/octet-stream;base64,`+base64.StdEncoding.EncodeToString([]byte("abc"))+`</body>`))
	e = p.Explain(policy.Sample{Dir: policy.Outbound, Zone: router.ZoneTransport, Stanza: st, LocalAccount: true, Now: monday10})
	if !e.Scan || len(e.Offers) != 1 || e.Offers[0].Mechanism != policy.MechDataURI || string(e.Offers[0].Data) != "abc" {
		t.Fatalf("data URI: scan %v offers %+v", e.Scan, e.Offers)
	}
}

func TestDefaultDeny(t *testing.T) {
	p, err := policy.Parse([]byte(`
version: allowlist-1
default_access: deny
default_message: Outside chat is limited to partners.
access:
  - id: partners
    domains: [partner.example]
    action: allow
  - id: office-hours
    groups: [sales]
    time: {days: [mon-fri], from: "09:00", to: "18:00", location: Europe/Berlin}
    action: allow
`), "allow.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		to      string
		groups  []string
		now     time.Time
		verdict router.Verdict
		rule    string
	}{
		{"bob@partner.example", nil, monday10, router.Allow, "partners"},
		{"bob@other.example", nil, monday10, router.Deny, "default"},
		{"bob@other.example", []string{"sales"}, monday10, router.Allow, "office-hours"},
		{"bob@other.example", []string{"sales"}, monday10.Add(8 * time.Hour), router.Deny, "default"},       // 19:00 in Berlin
		{"bob@other.example", []string{"sales"}, monday10.Add(-2 * 24 * time.Hour), router.Deny, "default"}, // Saturday
	}
	for _, tc := range cases {
		st := parseStanza(t, `<message from='alice@localhost/d' to='`+tc.to+`' type='chat'><body>hi</body></message>`)
		e := p.Explain(policy.Sample{Dir: policy.Outbound, Zone: router.ZoneRemote, Stanza: st, LocalAccount: true, Groups: tc.groups, Now: tc.now})
		if e.Decision.Verdict != tc.verdict || e.Decision.Rule != tc.rule {
			t.Errorf("%s %v at %s: %+v, want %v %s", tc.to, tc.groups, tc.now, e.Decision, tc.verdict, tc.rule)
		}
		if tc.verdict == router.Deny && e.Decision.Text != "Outside chat is limited to partners. (rule default)" {
			t.Errorf("text %q", e.Decision.Text)
		}
	}
}
