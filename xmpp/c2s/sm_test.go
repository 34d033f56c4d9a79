package c2s_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const nsSM = "urn:xmpp:sm:3"

// smServer runs a server with stream management tuned for tests and the
// accounts alice and bob.
func smServer(t *testing.T, opts ...xmpptest.Option) *xmpptest.TestServer {
	t.Helper()
	opts = append([]xmpptest.Option{func(c *config.Config) {
		c.C2S.SMResumeTimeout = config.Duration(time.Minute)
		c.C2S.SMRequestEvery = 3
	}}, opts...)
	ts := xmpptest.RunServer(t, opts...)
	ts.AddUser(t, "alice", "alice password")
	ts.AddUser(t, "bob", "bob password")
	return ts
}

func isNonza(local string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool { return e.Name.Space == nsSM && e.Name.Local == local }
}

func presenceFrom(typ string, from jid.JID) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.Type == typ && s.From.Equal(from)
	}
}

// waitDetached waits until the server holds full JID j for resumption; it
// waits on the server's change notifications, never on a clock.
func waitDetached(t *testing.T, ts *xmpptest.TestServer, j jid.JID) {
	t.Helper()
	timeout := time.After(xmpptest.Timeout)
	for {
		d, changed := ts.C2S().Detached(j)
		if d {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%s was not detached", j)
		}
	}
}

// bodies collects the messages a client receives up to a ping round trip.
func bodies(t *testing.T, c *xmpptest.Client) []*stanza.Stanza {
	t.Helper()
	id := fmt.Sprintf("collect-%d", time.Now().UnixNano())
	c.Sendf(`<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, id)
	var out []*stanza.Stanza
	for {
		s := c.Expect(func(s *stanza.Stanza) bool {
			return (s.Kind == stanza.KindMessage && s.Body() != "") || (s.Kind == stanza.KindIQ && s.ID == id)
		})
		if s.Kind == stanza.KindIQ {
			return out
		}
		out = append(out, s)
	}
}

func bodyList(ms []*stanza.Stanza) string {
	var b []string
	for _, m := range ms {
		b = append(b, m.Body())
	}
	return strings.Join(b, ",")
}

func TestSMFeatures(t *testing.T) {
	tests := []struct {
		name     string
		wantSM   bool
		wantCSI  bool
		features func(*config.Config)
	}{
		{name: "default", wantSM: true, wantCSI: true},
		{name: "disabled", features: func(c *config.Config) { c.C2S.SMEnabled, c.C2S.CSIEnabled = false, false }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []xmpptest.Option
			if tc.features != nil {
				opts = append(opts, tc.features)
			}
			ts := smServer(t, opts...)
			c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
			if got := c.Features.Child(nsSM, "sm") != nil; got != tc.wantSM {
				t.Errorf("sm offered: %v, want %v (%s)", got, tc.wantSM, c.Features)
			}
			if got := c.Features.Child("urn:xmpp:csi:0", "csi") != nil; got != tc.wantCSI {
				t.Errorf("csi offered: %v, want %v (%s)", got, tc.wantCSI, c.Features)
			}
		})
	}
}

// TestSMEnableAndAcks: <enabled/> attributes, h counted both ways, the
// server's own ack requests, and errors for misuse.
func TestSMEnableAndAcks(t *testing.T) {
	ts := smServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})

	t.Run("enabled with resumption", func(t *testing.T) {
		c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true})
		if len(c.SMID) < 16 || c.SMMax != "60" {
			t.Fatalf("enabled id %q max %q", c.SMID, c.SMMax)
		}
	})
	t.Run("enabled without resumption", func(t *testing.T) {
		c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true, SMNoResume: true})
		if c.SMID != "" || c.SMMax != "" {
			t.Fatalf("enabled id %q max %q, want neither", c.SMID, c.SMMax)
		}
	})
	t.Run("inbound h", func(t *testing.T) {
		c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true})
		for i := 1; i <= 3; i++ {
			c.Ping()
			if h := c.RequestAck(); h != uint32(i) {
				t.Fatalf("after %d stanzas the server acked %d", i, h)
			}
		}
		// Bounced and malformed stanzas count too: they were handled.
		c.Send(`<message to='a@b@c' id='bad'><body>x</body></message>`)
		c.Expect(func(s *stanza.Stanza) bool { return s.ID == "bad" })
		if h := c.RequestAck(); h != 4 {
			t.Fatalf("acked %d, want 4", h)
		}
	})
	t.Run("outbound h and requests", func(t *testing.T) {
		c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true, NoAutoAck: true})
		for i := 1; i <= 3; i++ {
			bob.Sendf(`<message to='%s' type='chat'><body>m%d</body></message>`, c.JID, i)
		}
		// sm_request_every is 3: the request follows the third stanza.
		c.ExpectNonza(isNonza("r"))
		if h := c.Handled(); h != 3 {
			t.Fatalf("request after %d stanzas, want 3", h)
		}
		c.Ack()
		c.AckH(3) // a repeated ack is harmless
		c.Ping()
		if h := c.Handled(); h != 4 {
			t.Fatalf("handled %d, want 4", h)
		}
	})
	t.Run("enable twice", func(t *testing.T) {
		c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true})
		c.Send(`<enable xmlns='urn:xmpp:sm:3'/>`)
		f := c.ExpectNonza(isNonza("failed"))
		if f.Child(stanza.NSStanzaErr, "unexpected-request") == nil {
			t.Fatalf("%s", f)
		}
		c.Ping()
	})
	t.Run("resume on a bound stream", func(t *testing.T) {
		c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true})
		c.Send(`<resume xmlns='urn:xmpp:sm:3' previd='x' h='0'/>`)
		if f := c.ExpectNonza(isNonza("failed")); f.Child(stanza.NSStanzaErr, "unexpected-request") == nil {
			t.Fatalf("%s", f)
		}
	})
}

// TestSMHandledCountTooHigh: acknowledging stanzas never sent ends the
// stream with undefined-condition and <handled-count-too-high/>.
func TestSMHandledCountTooHigh(t *testing.T) {
	ts := smServer(t)
	c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true})
	c.Ping() // one stanza sent to the client
	c.AckH(5)
	if got := c.WaitClosed(); got != "undefined-condition" {
		t.Fatalf("stream error %q", got)
	}
	app := c.StreamErrorElement().Child(nsSM, "handled-count-too-high")
	if app == nil || app.AttrValue("h") != "5" || app.AttrValue("send-count") != "1" {
		t.Fatalf("stream error %s", c.StreamErrorElement())
	}
	// The session is over, not waiting to be resumed.
	if d, _ := ts.C2S().Detached(c.JID); d {
		t.Fatal("session kept for resumption")
	}
}

// TestSMResume drops the connection (or not: the client may give up on a
// connection the server still thinks alive) and resumes: exactly the
// stanzas the client did not handle are sent again, stamped, then new
// ones; the session never looked offline to anyone.
func TestSMResume(t *testing.T) {
	tests := []struct {
		name      string
		drop      bool // cut TCP and wait until the server notices
		unhandled uint32
		want      string
	}{
		{"detached, all handled", true, 0, "m4"},
		{"detached, two unhandled", true, 2, "m2,m3,m4"},
		{"old connection still open", false, 2, "m2,m3,m4"},
		{"old connection still open, all handled", false, 0, "m4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := smServer(t)
			bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
			desk := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
			desk.Send(`<presence/>`)
			desk.Ping()
			phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true, NoAutoAck: true})
			phone.Send(`<presence/>`)
			desk.Expect(presenceFrom("", phone.JID))
			phone.Ping() // the server has handled 2 stanzas from phone
			for i := 1; i <= 3; i++ {
				bob.Sendf(`<message to='%s' type='chat'><body>m%d</body></message>`, phone.JID, i)
			}
			phone.Expect(xmpptest.IsMessage("m3"))
			handled := phone.Handled() - tc.unhandled

			if tc.drop {
				phone.Drop()
				waitDetached(t, ts, phone.JID)
			}
			bob.Sendf(`<message to='%s' type='chat'><body>m4</body></message>`, phone.JID)
			bob.Ping()
			before := time.Now()

			phone2 := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", Resume: phone.SMID, ResumeH: handled, NoAutoAck: true})
			if phone2.Resumed == nil {
				t.Fatalf("resume failed: %s", phone2.ResumeFailed)
			}
			if h := phone2.Resumed.AttrValue("h"); h != "2" || phone2.Resumed.AttrValue("previd") != phone.SMID {
				t.Fatalf("resumed %s, want h=2", phone2.Resumed)
			}
			got := bodies(t, phone2)
			if bodyList(got) != tc.want {
				t.Fatalf("after resume got %q, want %q", bodyList(got), tc.want)
			}
			for _, m := range got {
				d := m.Child(stanza.NSDelay, "delay")
				if d == nil {
					t.Fatalf("resent %s without delay", m)
				}
				if stamp, err := time.Parse(time.RFC3339, d.AttrValue("stamp")); err != nil || stamp.After(before) {
					t.Fatalf("delay stamp %q is not when it was first sent", d.AttrValue("stamp"))
				}
			}
			if !tc.drop {
				phone.WaitClosed() // the old connection is dropped
			}
			// Same session: new traffic flows, counting goes on, nobody
			// saw it go offline.
			bob.Sendf(`<message to='%s' type='chat'><body>m5</body></message>`, phone.JID)
			if m := phone2.Expect(xmpptest.IsMessage("m5")); m.Child(stanza.NSDelay, "delay") != nil {
				t.Fatalf("fresh message stamped: %s", m)
			}
			// Two stanzas before the drop and the ping in bodies().
			if h := phone2.RequestAck(); h != 3 {
				t.Fatalf("server h %d after resume, want 3", h)
			}
			desk.Ping()
			desk.ExpectNone(presenceFrom("unavailable", phone.JID), 0)
			// Acks are checked against what was sent on both streams.
			phone2.AckH(phone2.Handled())
			phone2.Ping()
		})
	}
}

// TestSMResumeFails: unknown, foreign and expired ids get <failed/> with
// item-not-found, after which the client binds a fresh session.
func TestSMResumeFails(t *testing.T) {
	ts := smServer(t, func(c *config.Config) { c.C2S.SMResumeTimeout = config.Duration(50 * time.Millisecond) })
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{SM: true, Resource: "b"})
	expired := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{SM: true, Resource: "gone"})
	expired.Drop()
	// The expiry is the session's end: it leaves the table.
	for {
		_, changed := ts.C2S().Detached(expired.JID)
		if ts.Sessions().Get(expired.JID) == nil {
			break
		}
		select {
		case <-changed:
		case <-time.After(xmpptest.Timeout):
			t.Fatal("session did not expire")
		}
	}
	tests := []struct{ name, id, resource string }{
		{"unknown id", "bm90LWFuLWlk", "x"},
		{"another account's id", bob.SMID, "b"},
		{"expired", expired.SMID, "gone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resume: tc.id, Resource: tc.resource})
			if c.Resumed != nil || c.ResumeFailed != "item-not-found" {
				t.Fatalf("resumed %v, failed %q", c.Resumed, c.ResumeFailed)
			}
			if c.JID.Bare().String() != "alice@localhost" {
				t.Fatalf("bound %s after failed resume", c.JID)
			}
			c.Ping()
		})
	}
	bob.Ping() // bob's session was not disturbed
}

// TestSMSessionEnds: when a session ends without being resumed (timeout,
// no resumption asked, clean close), what the client never acknowledged is
// re-routed: to another resource that does not have it yet, else to
// offline storage; requests bounce; nothing arrives twice.
func TestSMSessionEnds(t *testing.T) {
	tests := []struct {
		name     string
		opts     xmpptest.ClientOptions
		end      func(c *xmpptest.Client)
		to       string // "full" or "bare"
		carbons  bool   // desk has carbons on
		deskGets bool   // the re-routed copy reaches desk (else offline or nowhere)
		offline  bool   // ends in offline storage
	}{
		{"timeout, desk has a carbon", xmpptest.ClientOptions{}, (*xmpptest.Client).Drop, "full", true, false, false},
		{"timeout, desk got it via the bare JID", xmpptest.ClientOptions{}, (*xmpptest.Client).Drop, "bare", false, false, false},
		{"timeout, desk has not seen it", xmpptest.ClientOptions{}, (*xmpptest.Client).Drop, "full", false, true, false},
		{"no resumption asked", xmpptest.ClientOptions{SMNoResume: true}, (*xmpptest.Client).Drop, "full", false, true, false},
		{"clean close", xmpptest.ClientOptions{}, func(c *xmpptest.Client) { c.Send(`</stream:stream>`) }, "full", false, true, false},
		{"timeout, no other resource", xmpptest.ClientOptions{}, (*xmpptest.Client).Drop, "full", false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := smServer(t, func(c *config.Config) { c.C2S.SMResumeTimeout = config.Duration(100 * time.Millisecond) })
			bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
			// watch has negative priority: it sees presence, never
			// messages to the bare JID.
			watch := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "watch"})
			watch.Send(`<presence><priority>-1</priority></presence>`)
			watch.Ping()
			var desk *xmpptest.Client
			if !tc.offline {
				desk = ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
				if tc.carbons {
					desk.Send(`<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
					desk.Expect(xmpptest.IsIQ("c"))
				}
				desk.Send(`<presence/>`)
				desk.Ping()
			}
			o := tc.opts
			o.Resource, o.SM, o.NoAutoAck = "phone", true, true
			phone := ts.Dial(t, "alice", "alice password", o)
			phone.Send(`<presence/>`)
			watch.Expect(presenceFrom("", phone.JID))
			to := phone.JID.String()
			if tc.to == "bare" {
				to = "alice@localhost"
			}
			bob.Sendf(`<message to='%s' type='chat' id='m1'><body>unacked</body></message>`, to)
			phone.Expect(xmpptest.IsMessage("unacked"))
			sent := time.Now()
			if desk != nil {
				desk.Ping()
			}
			tc.end(phone)
			// An iq to the session while it is gone or going: bounced
			// when it ends, never left unanswered.
			bob.Sendf(`<iq type='get' id='q1' to='%s'><query xmlns='jabber:iq:version'/></iq>`, phone.JID)
			// The unavailable broadcast comes only when the session is
			// really over, after the re-routing.
			watch.Expect(presenceFrom("unavailable", phone.JID))
			if e := bob.Expect(xmpptest.IsIQ("q1")); e.Type != "error" || e.ErrorCondition() != stanza.ServiceUnavailable {
				t.Fatalf("iq to the ended session: %s", e)
			}
			if desk != nil {
				got := bodies(t, desk)
				// The original (bare) delivery is already consumed above
				// only by phone; desk may hold it from the bare fan-out.
				n := 0
				for _, m := range got {
					if m.Body() == "unacked" {
						n++
						if tc.deskGets {
							d := m.Child(stanza.NSDelay, "delay")
							if d == nil {
								t.Fatalf("re-routed without delay: %s", m)
							}
						}
					}
				}
				want := 0
				if tc.deskGets || tc.to == "bare" {
					want = 1
				}
				if n != want {
					t.Fatalf("desk got the message %d times, want %d", n, want)
				}
			}
			watch.Ping()
			watch.ExpectNone(xmpptest.IsMessage("unacked"), 0)
			// Next login: only what no other resource had is waiting.
			laptop := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "laptop"})
			laptop.Send(`<presence/>`)
			got := bodies(t, laptop)
			if tc.offline {
				if len(got) != 1 || got[0].Body() != "unacked" {
					t.Fatalf("offline after login: %q", bodyList(got))
				}
				d := got[0].Child(stanza.NSDelay, "delay")
				stamp, err := time.Parse(time.RFC3339, d.AttrValue("stamp"))
				if err != nil || stamp.After(sent) {
					t.Fatalf("first delay %s is not when the message was first sent", d)
				}
			} else if len(got) != 0 {
				t.Fatalf("offline after login: %q, want nothing", bodyList(got))
			}
		})
	}
}

// TestSMShutdownStoresOffline: what arrives while the client is away is kept
// with the session and, at shutdown, stored offline rather than lost.
func TestSMShutdownStoresOffline(t *testing.T) {
	ts := smServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true, NoAutoAck: true})
	phone.Send(`<presence/>`)
	phone.Ping()
	phone.Drop()
	waitDetached(t, ts, phone.JID)
	bob.Sendf(`<message to='alice@localhost' type='chat'><body>while away</body></message>`)
	bob.Ping()
	ts.Stop()
	db, err := server.OpenDB(context.Background(), ts.Config.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	msgs, err := db.TakeOffline(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].XML), "while away") {
		t.Fatalf("offline after shutdown: %d messages", len(msgs))
	}
}

// TestSMRebindSameResource: a client that binds the same resource instead
// of resuming replaces the detached session and gets what the old one
// never acknowledged, once.
func TestSMRebindSameResource(t *testing.T) {
	ts := smServer(t)
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true, NoAutoAck: true})
	bob.Sendf(`<message to='%s' type='chat'><body>lost?</body></message>`, phone.JID)
	phone.Expect(xmpptest.IsMessage("lost?"))
	phone.Drop()
	waitDetached(t, ts, phone.JID)
	phone2 := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true})
	got := bodies(t, phone2)
	if bodyList(got) != "lost?" || got[0].Child(stanza.NSDelay, "delay") == nil {
		t.Fatalf("new session got %q", bodyList(got))
	}
	if d, _ := ts.C2S().Detached(phone.JID); d {
		t.Fatal("old session still detached")
	}
}

// TestSMMaxUnacked: a client that stops acknowledging is cut off with
// resource-constraint; its session ends (no resumption) and the stanzas go
// to the account's other resource.
func TestSMMaxUnacked(t *testing.T) {
	ts := smServer(t, func(c *config.Config) {
		c.C2S.SMMaxUnacked = 3
		c.C2S.SMRequestEvery = 3
	})
	bob := ts.Dial(t, "bob", "bob password", xmpptest.ClientOptions{})
	desk := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "desk"})
	desk.Send(`<presence/>`)
	desk.Ping()
	phone := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{Resource: "phone", SM: true, NoAutoAck: true})
	for i := 1; i <= 4; i++ {
		bob.Sendf(`<message to='%s' type='chat'><body>n%d</body></message>`, phone.JID, i)
	}
	if got := phone.WaitClosed(); got != "resource-constraint" {
		t.Fatalf("stream error %q", got)
	}
	var got []string
	for len(got) < 4 {
		m := desk.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() != "" })
		got = append(got, m.Body())
	}
	if strings.Join(got, ",") != "n1,n2,n3,n4" {
		t.Fatalf("desk got %v", got)
	}
	if d, _ := ts.C2S().Detached(phone.JID); d || ts.Sessions().Get(phone.JID) != nil {
		t.Fatal("session kept after overflow")
	}
	desk.Ping()
	desk.ExpectNone(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() != "" }, 0)
}
