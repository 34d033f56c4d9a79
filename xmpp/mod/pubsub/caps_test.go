package pubsub

import (
	"encoding/xml"
	"strings"
	"testing"

	"gatehouse/xmpp/stanza"
)

func parse(t testing.TB, s string) *stanza.Element {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			el, err := stanza.ReadElement(d, se.Copy())
			if err != nil {
				t.Fatal(err)
			}
			return el
		}
	}
}

// The examples of XEP-0115 §5.2 and §5.3.
func TestVerString(t *testing.T) {
	tests := []struct {
		name, hash, xml, want string
	}{
		{"simple", "sha-1", `<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>`, "QgayPKawpkPSDYmwT/WM94uAlu0="},
		{"complex", "sha-1", `<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>`, "q07IKJEyjvHSyhy//CH0CxmKi8w="},
		{"duplicate feature", "sha-1", `<query xmlns='http://jabber.org/protocol/disco#info'>
  <feature var='a'/><feature var='a'/></query>`, ""},
		{"unknown hash", "md5", `<query xmlns='http://jabber.org/protocol/disco#info'/>`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := verString(tc.hash, parse(t, tc.xml)); got != tc.want {
				t.Fatalf("ver %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConfigPreconditions(t *testing.T) {
	c := pepDefaults()
	tests := []struct {
		name   string
		fields map[string][]string
		ok     bool
	}{
		{"same access", map[string][]string{"pubsub#access_model": {"presence"}}, true},
		{"other access", map[string][]string{"pubsub#access_model": {"open"}}, false},
		{"max", map[string][]string{"pubsub#max_items": {"1"}}, true},
		{"unknown field ignored", map[string][]string{"urn:example#x": {"1"}}, true},
		{"bad boolean", map[string][]string{"pubsub#persist_items": {"maybe"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.meets(tc.fields, 256); (err == nil) != tc.ok {
				t.Fatalf("meets = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// FuzzVerString: any disco#info a client sends must not crash the caps
// check.
func FuzzVerString(f *testing.F) {
	f.Add(`<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc'/><feature var='a'/></query>`)
	f.Add(`<query xmlns='http://jabber.org/protocol/disco#info'><x xmlns='jabber:x:data'><field var='FORM_TYPE'><value>t</value></field><field var='b'/></x></query>`)
	f.Fuzz(func(t *testing.T, s string) {
		d := xml.NewDecoder(strings.NewReader(s))
		for {
			tok, err := d.Token()
			if err != nil {
				return
			}
			if se, ok := tok.(xml.StartElement); ok {
				el, err := stanza.ReadElement(d, se.Copy())
				if err != nil {
					return
				}
				v := verString("sha-1", el)
				if v != "" && len(v) != 28 {
					t.Fatalf("ver %q", v)
				}
				_ = features(el)
				fields, _ := formFields(el)
				var c Config
				_ = c.apply(fields, 10, true)
				return
			}
		}
	})
}

// BenchmarkVerString: verifying a typical client's caps (once per new
// hash, on the presence path).
func BenchmarkVerString(b *testing.B) {
	var s strings.Builder
	s.WriteString(`<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='phone' name='Conversations'/>`)
	for i := range 40 {
		s.WriteString(`<feature var='urn:example:feature:` + string(rune('a'+i%26)) + strings.Repeat("x", i) + `'/>`)
	}
	s.WriteString(`</query>`)
	q := parse(b, s.String())
	b.ReportAllocs()
	for b.Loop() {
		if verString("sha-1", q) == "" {
			b.Fatal("no ver")
		}
	}
}
