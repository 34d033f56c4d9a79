package mam

import (
	"encoding/xml"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/stanza"
)

func element(t testing.TB, s string) *stanza.Element {
	t.Helper()
	el, err := decodeElement(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return el
}

func decodeElement(s string) (*stanza.Element, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			return stanza.ReadElement(d, start)
		}
	}
}

func form(fields string) string {
	return `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>` + fields + `</x>`
}

func query(inner string) string {
	return `<query xmlns='urn:xmpp:mam:2' queryid='q1'>` + inner + `</query>`
}

func rsm(inner string) string {
	return `<set xmlns='http://jabber.org/protocol/rsm'>` + inner + `</set>`
}

func TestParseQuery(t *testing.T) {
	start := time.Date(2010, 6, 7, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want request
		cond stanza.Condition
	}{
		{"empty", query(""), request{QueryID: "q1", Page: Page{Max: 50}}, ""},
		{"form with", query(form(`<field var='with'><value>Juliet@Capulet.lit/Balcony</value></field>`)),
			request{QueryID: "q1", Filter: Filter{With: "juliet@capulet.lit", WithRes: "Balcony"}, Page: Page{Max: 50}}, ""},
		{"form range", query(form(`<field var='start'><value>2010-06-07T00:00:00Z</value></field><field var='end'><value>2010-06-07T02:00:00.5+02:00</value></field>`)),
			request{QueryID: "q1", Filter: Filter{Start: start, End: start.Add(500 * time.Millisecond)}, Page: Page{Max: 50}}, ""},
		{"form ids", query(form(`<field var='ids'><value>a</value><value>b</value></field><field var='after-id'><value>c</value></field><field var='before-id'><value>d</value></field>`)),
			request{QueryID: "q1", Filter: Filter{IDs: []string{"a", "b"}, AfterID: "c", BeforeID: "d"}, Page: Page{Max: 50}}, ""},
		{"empty values ignored", query(form(`<field var='with'/><field var='start'><value></value></field>`)),
			request{QueryID: "q1", Page: Page{Max: 50}}, ""},
		{"rsm max", query(rsm(`<max>10</max>`)), request{QueryID: "q1", Page: Page{Max: 10}}, ""},
		{"rsm max clamped", query(rsm(`<max>100000</max>`)), request{QueryID: "q1", Page: Page{Max: 50}}, ""},
		{"rsm max zero", query(rsm(`<max>0</max>`)), request{QueryID: "q1", Page: Page{Max: 0}}, ""},
		{"rsm after", query(rsm(`<max>5</max><after>x</after>`)), request{QueryID: "q1", Page: Page{Max: 5, After: "x"}}, ""},
		{"rsm last page", query(rsm(`<max>5</max><before/>`)), request{QueryID: "q1", Page: Page{Max: 5, Backward: true}}, ""},
		{"rsm before", query(rsm(`<before>y</before>`)), request{QueryID: "q1", Page: Page{Max: 50, Before: "y", Backward: true}}, ""},
		{"flip", query(`<flip-page/>`), request{QueryID: "q1", Page: Page{Max: 50}, Flip: true}, ""},
		{"no queryid", `<query xmlns='urn:xmpp:mam:2'/>`, request{Page: Page{Max: 50}}, ""},

		{"unknown field", query(form(`<field var='include-groupchat'><value>true</value></field>`)), request{}, stanza.FeatureNotImplemented},
		{"no FORM_TYPE", query(`<x xmlns='jabber:x:data' type='submit'><field var='with'><value>a@b</value></field></x>`), request{}, stanza.BadRequest},
		{"wrong FORM_TYPE", query(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x>`), request{}, stanza.BadRequest},
		{"form not submit", query(`<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field></x>`), request{}, stanza.BadRequest},
		{"bad with", query(form(`<field var='with'><value>@@</value></field>`)), request{}, stanza.JIDMalformed},
		{"bad start", query(form(`<field var='start'><value>yesterday</value></field>`)), request{}, stanza.BadRequest},
		{"two withs", query(form(`<field var='with'><value>a@b</value><value>c@d</value></field>`)), request{}, stanza.BadRequest},
		{"field twice", query(form(`<field var='with'><value>a@b</value></field><field var='with'><value>a@b</value></field>`)), request{}, stanza.BadRequest},
		{"two forms", query(form(``) + form(``)), request{}, stanza.BadRequest},
		{"too many ids", query(form(`<field var='ids'>` + strings.Repeat(`<value>a</value>`, 51) + `</field>`)), request{}, stanza.PolicyViolation},
		{"id too long", query(form(`<field var='ids'><value>` + strings.Repeat("a", MaxIDLen+1) + `</value></field>`)), request{}, stanza.ItemNotFound},
		{"bad max", query(rsm(`<max>-1</max>`)), request{}, stanza.BadRequest},
		{"max not a number", query(rsm(`<max>ten</max>`)), request{}, stanza.BadRequest},
		{"empty after", query(rsm(`<after/>`)), request{}, stanza.BadRequest},
		{"index", query(rsm(`<index>10</index>`)), request{}, stanza.FeatureNotImplemented},
		{"max twice", query(rsm(`<max>1</max><max>2</max>`)), request{}, stanza.BadRequest},
		{"queryid too long", `<query xmlns='urn:xmpp:mam:2' queryid='` + strings.Repeat("q", MaxQueryIDLen+1) + `'/>`, request{}, stanza.BadRequest},
		{"node", `<query xmlns='urn:xmpp:mam:2' node='x'/>`, request{}, stanza.FeatureNotImplemented},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseQuery(element(t, tc.in), 50)
			if tc.cond != "" {
				if err == nil || err.cond != tc.cond {
					t.Fatalf("got %+v, %v; want %s", got, err, tc.cond)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.QueryID != tc.want.QueryID || got.Page != tc.want.Page || got.Flip != tc.want.Flip ||
				got.Filter.With != tc.want.Filter.With || got.Filter.WithRes != tc.want.Filter.WithRes ||
				!got.Filter.Start.Equal(tc.want.Filter.Start) || !got.Filter.End.Equal(tc.want.Filter.End) ||
				got.Filter.AfterID != tc.want.Filter.AfterID || got.Filter.BeforeID != tc.want.Filter.BeforeID ||
				!slices.Equal(got.Filter.IDs, tc.want.Filter.IDs) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParsePrefs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Prefs
		cond stanza.Condition
	}{
		{"default only", `<prefs xmlns='urn:xmpp:mam:2' default='roster'/>`, Prefs{Default: "roster"}, ""},
		{"lists", `<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>Romeo@Montague.lit</jid></always><never><jid>montague.lit</jid><jid>a@b/r</jid></never></prefs>`,
			Prefs{Default: "always", Always: []string{"romeo@montague.lit"}, Never: []string{"a@b/r", "montague.lit"}}, ""},
		{"on both lists", `<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>x@y</jid><jid>z@y</jid></always><never><jid>x@y</jid></never></prefs>`,
			Prefs{Default: "never", Always: []string{"z@y"}, Never: []string{"x@y"}}, ""},
		{"duplicates", `<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>x@y</jid><jid>X@y</jid></always></prefs>`,
			Prefs{Default: "never", Always: []string{"x@y"}}, ""},
		{"no default", `<prefs xmlns='urn:xmpp:mam:2'/>`, Prefs{}, stanza.BadRequest},
		{"bad default", `<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>`, Prefs{}, stanza.BadRequest},
		{"bad jid", `<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@</jid></never></prefs>`, Prefs{}, stanza.JIDMalformed},
		{"two always lists", `<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><always/></prefs>`, Prefs{}, stanza.BadRequest},
		{"too many", `<prefs xmlns='urn:xmpp:mam:2' default='always'><never>` + strings.Repeat(`<jid>a@b</jid>`, MaxPrefsJIDs+1) + `</never></prefs>`, Prefs{}, stanza.NotAcceptable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePrefs(element(t, tc.in))
			if tc.cond != "" {
				if err == nil || err.cond != tc.cond {
					t.Fatalf("got %+v, %v; want %s", got, err, tc.cond)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Default != tc.want.Default || !slices.Equal(got.Always, tc.want.Always) || !slices.Equal(got.Never, tc.want.Never) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPrefsDecide(t *testing.T) {
	p := Prefs{Default: DefaultRoster,
		Always: []string{"bob@example.com", "carol@example.org/work", "both@example.com/r"},
		Never:  []string{"carol@example.org", "eve@example.net/phone", "both@example.com/r"}}
	tests := []struct {
		target string
		want   Rule
	}{
		{"bob@example.com", RuleAlways},
		{"bob@example.com/any", RuleAlways},
		{"carol@example.org", RuleNever},
		{"carol@example.org/home", RuleNever},
		{"carol@example.org/work", RuleAlways}, // a full JID entry wins over the bare one
		{"eve@example.net/phone", RuleNever},
		{"eve@example.net/desk", RuleRoster},
		{"both@example.com/r", RuleNever}, // on both lists: never
		{"dave@example.com", RuleRoster},
	}
	for _, tc := range tests {
		if got := p.Decide(jid.MustParse(tc.target)); got != tc.want {
			t.Errorf("Decide(%s) = %d, want %d", tc.target, got, tc.want)
		}
	}
	for def, want := range map[string]Rule{DefaultAlways: RuleAlways, DefaultNever: RuleNever, DefaultRoster: RuleRoster} {
		if got := (&Prefs{Default: def}).Decide(jid.MustParse("x@y")); got != want {
			t.Errorf("default %s: %d, want %d", def, got, want)
		}
	}
}

func TestStorable(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`<message type='chat'><body>hi</body></message>`, true},
		{`<message><body>hi</body></message>`, true},
		{`<message type='normal'><subject>s</subject></message>`, true},
		{`<message type='headline'><body>news</body></message>`, false},
		{`<message type='groupchat'><body>room</body></message>`, false},
		{`<message type='error'><body>hi</body></message>`, false},
		{`<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, false},
		{`<message type='chat'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><body>hi</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><store xmlns='urn:xmpp:hints'/></message>`, true},
		{`<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>`, true},
		{`<message type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>`, true},
		{`<message type='chat'><openpgp xmlns='urn:xmpp:openpgp:0'>x</openpgp></message>`, true},
		{`<message type='chat'><received xmlns='urn:xmpp:receipts' id='a'/></message>`, true},
		{`<message type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='a'/></message>`, true},
		{`<message><x xmlns='jabber:x:conference' jid='room@muc'/></message>`, true},
		{`<message><x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@b'/></x></message>`, true},
		{`<message><x xmlns='http://jabber.org/protocol/muc#user'/></message>`, false},
		{`<message type='chat'><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>`, true},
		{`<message type='chat'><body xmlns='urn:example:not-a-body'>x</body></message>`, false},
		{`<message type='chat'><result xmlns='urn:xmpp:mam:2' id='x'><forwarded xmlns='urn:xmpp:forward:0'><message><body>old</body></message></forwarded></result></message>`, false},
	}
	for _, tc := range tests {
		st, err := stanza.FromElement(element(t, tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := storable(st); got != tc.want {
			t.Errorf("storable(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestStripLocalIDs(t *testing.T) {
	isHost := func(d string) bool { return d == "example.com" }
	st, err := stanza.FromElement(element(t, `<message><body>x</body>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.com' id='forged'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='Bob@Example.COM' id='forged2'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='example.com' id='forged3'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='room@conference.example.com' id='muc'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='mallory@example.net' id='remote'/>`+
		`<origin-id xmlns='urn:xmpp:sid:0' id='origin'/></message>`))
	if err != nil {
		t.Fatal(err)
	}
	shared := st.Children
	stripLocalIDs(st, isHost)
	var kept []string
	for _, e := range st.Elements() {
		kept = append(kept, e.Name.Local+":"+e.AttrValue("id"))
	}
	want := []string{"body:", "stanza-id:muc", "stanza-id:remote", "origin-id:origin"}
	if !slices.Equal(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
	if len(shared) != 7 || shared[1].El.AttrValue("id") != "forged" {
		t.Fatal("the original child list was edited in place")
	}
}

func TestForStorageDropsChatStates(t *testing.T) {
	st, err := stanza.FromElement(element(t, `<message type='chat'><body>x</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`))
	if err != nil {
		t.Fatal(err)
	}
	got := string(forStorage(st).AppendXML(nil, stanza.NSClient))
	if strings.Contains(got, "chatstates") || !strings.Contains(got, "<body>x</body>") {
		t.Fatalf("stored %s", got)
	}
	if len(st.Children) != 2 {
		t.Fatal("the delivered message lost its chat state")
	}
}

func TestFinElement(t *testing.T) {
	tests := []struct {
		res  Result
		want string
	}{
		{Result{Complete: true}, `<fin xmlns="urn:xmpp:mam:2" complete="true"><set xmlns="http://jabber.org/protocol/rsm"><count>0</count></set></fin>`},
		{Result{Items: []Item{{ID: "a"}, {ID: "b"}}, Count: 9}, `<fin xmlns="urn:xmpp:mam:2" complete="false"><set xmlns="http://jabber.org/protocol/rsm"><first>a</first><last>b</last><count>9</count></set></fin>`},
	}
	for _, tc := range tests {
		if got := finElement(tc.res).String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
