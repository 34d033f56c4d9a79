package policy_test

import (
	"context"
	"strings"
	"testing"

	"gatehouse/policy"
	"gatehouse/xmpp/router"
)

// TestCEL: CEL expressions narrow access, content and file rules, over
// the documented variables; groups named in them are loaded.
func TestCEL(t *testing.T) {
	p, err := policy.Parse([]byte(`version: cel-1
lexicons:
  secret: {terms: [falcon]}
access:
  - id: sales-no-long-irc
    cel: "'sales' in groups && zone == 'transport' && size(body) > 40"
    action: deny
    message: Long messages to IRC are not for sales.
content:
  - id: falcon-to-transport
    lexicons: [secret]
    cel: zone == 'transport' && direction == 'outbound'
    action: deny
files:
  - id: big-pdf
    cel: file_size > 1000 && 'application/pdf' in file_types && user != 'boss'
    action: deny
`), "cel.yaml", opts)
	must(t, err)
	if missing, err := policy.MissingGroups(context.Background(), p, testDB(t)); err != nil || len(missing) != 0 {
		t.Fatalf("CEL string literals reported as missing groups: %v %v", missing, err)
	}
	f := newGate(t, p, nil)
	ctx := context.Background()
	must(t, f.db.CreateGroup(ctx, "sales"))
	must(t, f.db.AddToGroup(ctx, "sales", "alice"))
	must(t, f.gate.Swap(ctx, p))

	long := "a message that is clearly longer than forty characters"
	for _, tc := range []struct {
		name, stanza string
		verdict      router.Verdict
		rule         string
	}{
		{"sales, long, transport", `<message from='alice@localhost/d' to='x@irc.localhost' type='chat'><body>` + long + `</body></message>`, router.Deny, "sales-no-long-irc"},
		{"sales, short", `<message from='alice@localhost/d' to='x@irc.localhost' type='chat'><body>short</body></message>`, router.Allow, "default"},
		{"not sales", `<message from='boss@localhost/d' to='x@irc.localhost' type='chat'><body>` + long + `</body></message>`, router.Allow, "default"},
		{"falcon outbound", `<message from='boss@localhost/d' to='x@irc.localhost' type='chat'><body>Falcon</body></message>`, router.Deny, "falcon-to-transport"},
		{"falcon inbound", `<message from='x@irc.localhost/r' to='boss@localhost' type='chat'><body>Falcon</body></message>`, router.Allow, "default"},
		{"big pdf", `<iq from='intern@localhost/d' to='x@irc.localhost/r' type='set' id='j'><si xmlns='http://jabber.org/protocol/si' id='s' mime-type='application/pdf' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='a.pdf' size='5000'/></si></iq>`, router.Deny, "big-pdf"},
		{"big pdf from boss", `<iq from='boss@localhost/d' to='x@irc.localhost/r' type='set' id='j'><si xmlns='http://jabber.org/protocol/si' id='s' mime-type='application/pdf' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='a.pdf' size='5000'/></si></iq>`, router.Allow, "default"},
		{"small pdf", `<iq from='intern@localhost/d' to='x@irc.localhost/r' type='set' id='j'><si xmlns='http://jabber.org/protocol/si' id='s' mime-type='application/pdf' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='a.pdf' size='500'/></si></iq>`, router.Allow, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := f.cross(t, tc.stanza)
			if d.Verdict != tc.verdict || d.Rule != tc.rule {
				t.Fatalf("decision %+v, want %v %s", d, tc.verdict, tc.rule)
			}
		})
	}
	e := p.Explain(policy.Sample{Dir: policy.Outbound, Zone: router.ZoneTransport, LocalAccount: true, Groups: []string{"sales"}, Now: monday10,
		Stanza: parseStanza(t, `<message from='alice@localhost/d' to='x@irc.localhost' type='chat'><body>`+long+`</body></message>`)})
	if len(e.Steps) != 1 || !strings.Contains(e.Steps[0].Detail, `cel "'sales' in groups`) {
		t.Fatalf("explain: %+v", e.Steps)
	}
}

func TestCELErrors(t *testing.T) {
	for _, tc := range []struct{ cel, want string }{
		{"sender == 'x'", "x.yaml:4: access[0].cel (rule a): ERROR: <input>:1:1: undeclared reference to 'sender'"},
		{"size(body)", "access[0].cel (rule a): the expression is int, it must be a bool"},
		{"body ==", "access[0].cel (rule a): ERROR"},
	} {
		doc := "version: v1\naccess:\n  - id: a\n    cel: \"" + tc.cel + "\"\n    action: deny\n"
		_, err := policy.Parse([]byte(doc), "x.yaml", opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cel %q: error %v, want %q", tc.cel, err, tc.want)
		}
	}
}
