package entitytime_test

import (
	"regexp"
	"testing"
	"time"

	"gatehouse/xmpp/mod/entitytime"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func TestElement(t *testing.T) {
	utc := time.Date(2026, 3, 1, 12, 30, 45, 999, time.UTC)
	tests := []struct {
		name    string
		t       time.Time
		tzo     string
		utcText string
	}{
		{"utc", utc, "Z", "2026-03-01T12:30:45Z"},
		{"east", utc.In(time.FixedZone("x", 5*3600+30*60)), "+05:30", "2026-03-01T12:30:45Z"},
		{"west", utc.In(time.FixedZone("y", -6*3600)), "-06:00", "2026-03-01T12:30:45Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := entitytime.Element(tc.t)
			if got := e.ChildText(entitytime.NS, "tzo"); got != tc.tzo {
				t.Errorf("tzo %q, want %q", got, tc.tzo)
			}
			if got := e.ChildText(entitytime.NS, "utc"); got != tc.utcText {
				t.Errorf("utc %q, want %q", got, tc.utcText)
			}
		})
	}
}

func TestQuery(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice pw")
	c := ts.Dial(t, "alice", "alice pw", xmpptest.ClientOptions{})
	tzo := regexp.MustCompile(`^(Z|[+-]\d\d:\d\d)$`)
	tests := []struct {
		name, to, typ string
		wantCond      stanza.Condition
	}{
		{"server", " to='localhost'", "get", ""},
		{"own account", "", "get", ""},
		{"set", " to='localhost'", "set", stanza.BadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().Add(-time.Second)
			c.Sendf(`<iq type='%s' id='t1'%s><time xmlns='urn:xmpp:time'/></iq>`, tc.typ, tc.to)
			r := c.Expect(xmpptest.IsIQ("t1"))
			if tc.wantCond != "" {
				if r.ErrorCondition() != tc.wantCond {
					t.Fatalf("got %s, want %s", r, tc.wantCond)
				}
				return
			}
			el := r.Child(entitytime.NS, "time")
			if r.Type != "result" || el == nil {
				t.Fatalf("got %s", r)
			}
			if !tzo.MatchString(el.ChildText(entitytime.NS, "tzo")) {
				t.Errorf("bad tzo in %s", r)
			}
			got, err := time.Parse(time.RFC3339, el.ChildText(entitytime.NS, "utc"))
			if err != nil || got.Before(before.Truncate(time.Second)) || got.After(time.Now()) {
				t.Errorf("utc %v (%v) not within the request", got, err)
			}
		})
	}
}
