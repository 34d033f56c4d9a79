package component_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"mellium.im/xmpp/jid"

	"gatehouse/transports/component"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const (
	ircDomain   = "irc.example"
	ircSecret   = "irc-secret-0123456789abcdef"
	otherDomain = "other.example"
	otherSecret = "other-secret-0123456789abcdef"
	alicePW     = "alice-secret-1"
)

// env is a server with two configured transports and the user alice.
type env struct {
	ts   *xmpptest.TestServer
	addr string // component listener
}

func newEnv(t *testing.T, opts ...xmpptest.Option) *env {
	t.Helper()
	base := func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{
			{Domain: ircDomain, Secret: ircSecret, Name: "IRC", Type: "irc"},
			{Domain: otherDomain, Secret: otherSecret},
		}
	}
	ts := xmpptest.RunServer(t, append([]xmpptest.Option{base}, opts...)...)
	ts.AddUser(t, "alice", alicePW)
	addrs := ts.ComponentAddrs()
	if len(addrs) != 1 {
		t.Fatalf("component listeners: %v", addrs)
	}
	return &env{ts: ts, addr: addrs[0]}
}

func (e *env) alice(t *testing.T) *xmpptest.Client {
	t.Helper()
	return e.ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
}

func (e *env) irc(t *testing.T) *compClient {
	t.Helper()
	return mustDial(t, e.addr, ircDomain, ircSecret)
}

func isMessage(body string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() == body }
}

func isKind(k stanza.Kind, id string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool { return s.Kind == k && s.ID == id }
}

func errorOf(s *stanza.Stanza) (typ string, cond stanza.Condition) {
	if e := s.Child("", "error"); e != nil {
		typ = e.AttrValue("type")
	}
	return typ, s.ErrorCondition()
}

// A message crosses to the component with the user's full JID as 'from',
// and the component's answer from an address at its domain reaches the
// user.
func TestMessageRoundTrip(t *testing.T) {
	e := newEnv(t)
	alice := e.alice(t)
	irc := e.irc(t)

	alice.Send(`<message to='bob%irc@irc.example' type='chat' id='m1'><body>hello irc</body></message>`)
	got := irc.Expect(isMessage("hello irc"))
	if got.From.String() != alice.JID.String() || got.To.String() != "bob%irc@irc.example" || got.ID != "m1" {
		t.Fatalf("component got %s", got)
	}

	irc.Send(`<message from='bob%%irc@irc.example/ircnet' to='%s' type='chat' id='r1'><body>hello xmpp</body></message>`, alice.JID)
	back := alice.Expect(xmpptest.IsMessage("hello xmpp"))
	if back.From.String() != "bob%irc@irc.example/ircnet" || back.Type != "chat" {
		t.Fatalf("user got %s", back)
	}
}

// XEP-0100 basics: registration and disco requests to the gateway's
// domain are routed to the component, and its answers come back.
func TestGatewayRequestsForwarded(t *testing.T) {
	e := newEnv(t)
	alice := e.alice(t)
	irc := e.irc(t)
	for _, tc := range []struct{ id, payload, answer string }{
		{"reg1", `<query xmlns='jabber:iq:register'/>`,
			`<query xmlns='jabber:iq:register'><instructions>Choose a nick</instructions><username/></query>`},
		{"info1", `<query xmlns='http://jabber.org/protocol/disco#info'/>`,
			`<query xmlns='http://jabber.org/protocol/disco#info'><identity category='gateway' type='irc' name='live'/></query>`},
	} {
		alice.Sendf(`<iq type='get' id='%s' to='irc.example'>%s</iq>`, tc.id, tc.payload)
		req := irc.Expect(isKind(stanza.KindIQ, tc.id))
		if req.From.String() != alice.JID.String() || req.Type != "get" {
			t.Fatalf("component got %s", req)
		}
		irc.Send(`<iq type='result' id='%s' from='irc.example' to='%s'>%s</iq>`, tc.id, alice.JID, tc.answer)
		res := alice.Expect(xmpptest.IsIQ(tc.id))
		if res.Type != "result" || res.From.String() != ircDomain || res.Payload() == nil {
			t.Fatalf("user got %s", res)
		}
	}
}

// Refusals during negotiation: each ends the stream with the condition
// XEP-0114 and RFC 6120 name.
func TestNegotiationErrors(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		header string
		then   func(c *compClient) // what the component sends after the header
		want   string
	}{
		{"wrong secret", header(ircDomain), func(c *compClient) {
			c.Send(`<handshake>%s</handshake>`, component.Handshake(c.ID, []byte("not-the-secret-at-all")))
		}, "not-authorized"},
		{"handshake for another stream id", header(ircDomain), func(c *compClient) {
			c.Send(`<handshake>%s</handshake>`, component.Handshake("some-other-id", []byte(ircSecret)))
		}, "not-authorized"},
		{"another component's secret", header(ircDomain), func(c *compClient) {
			c.Send(`<handshake>%s</handshake>`, component.Handshake(c.ID, []byte(otherSecret)))
		}, "not-authorized"},
		{"empty handshake", header(ircDomain), func(c *compClient) { c.Send(`<handshake/>`) }, "not-authorized"},
		{"stanza before handshake", header(ircDomain), func(c *compClient) {
			c.Send(`<message from='a@irc.example' to='alice@localhost'><body>x</body></message>`)
		}, "not-authorized"},
		{"unknown domain", header("nope.example"), nil, "host-unknown"},
		{"hosted domain", header("localhost"), nil, "host-unknown"},
		{"subdomain of a component", header("sub.irc.example"), nil, "host-unknown"},
		{"no to", `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>`, nil, "host-unknown"},
		{"client namespace", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='irc.example'>`, nil, "invalid-namespace"},
		{"not a stream", `<stream xmlns='jabber:component:accept' to='irc.example'>`, nil, "invalid-namespace"},
		{"comment", `<!-- hi --><stream:stream/>`, nil, "restricted-xml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := openComponent(t, e.addr, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if tc.then != nil {
				tc.then(c)
			}
			_, err = c.nextElement()
			var sr *streamRefused
			if !errors.As(err, &sr) || sr.Condition != tc.want {
				t.Fatalf("got %v, want stream error %s", err, tc.want)
			}
		})
	}
	if h := e.ts.ComponentHost(); h.Connected(ircDomain) || h.Connected(otherDomain) {
		t.Fatal("a refused component is connected")
	}
}

// A component that does not finish the handshake in time is dropped.
func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Components.HandshakeTimeout = config.Duration(300 * time.Millisecond) })
	c, err := openComponent(t, e.addr, header(ircDomain))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.nextElement()
	var sr *streamRefused
	if !errors.As(err, &sr) || sr.Condition != "connection-timeout" {
		t.Fatalf("got %v, want connection-timeout", err)
	}
}

// The XEP asks for lowercase hex; an uppercase handshake is accepted.
func TestHandshakeCaseInsensitive(t *testing.T) {
	e := newEnv(t)
	c, err := openComponent(t, e.addr, header(ircDomain))
	if err != nil {
		t.Fatal(err)
	}
	c.Send(`<handshake> %s </handshake>`, strings.ToUpper(component.Handshake(c.ID, []byte(ircSecret))))
	if el, err := c.nextElement(); err != nil || el.Name.Local != "handshake" {
		t.Fatalf("got %v %v", el, err)
	}
}

// A second connection for a connected domain gets conflict (XEP-0114);
// the first keeps its link.
func TestDuplicateComponentConflict(t *testing.T) {
	e := newEnv(t)
	alice := e.alice(t)
	first := e.irc(t)
	_, err := dialComponent(t, e.addr, ircDomain, ircSecret)
	var sr *streamRefused
	if !errors.As(err, &sr) || sr.Condition != "conflict" {
		t.Fatalf("second component: %v, want conflict", err)
	}
	alice.Send(`<message to='bob%irc@irc.example' id='m1'><body>still you</body></message>`)
	first.Expect(isMessage("still you"))
	// The other domain is independent.
	mustDial(t, e.addr, otherDomain, otherSecret)
}

// A component may only send from its own domain: anything else ends its
// stream with invalid-from, and the stanza goes nowhere.
func TestSpoofedFromClosesStream(t *testing.T) {
	e := newEnv(t)
	alice := e.alice(t)
	for _, from := range []string{
		"alice@localhost",        // a local user
		"localhost",              // the server
		"someone@other.example",  // another transport
		"bob@sub.irc.example",    // a subdomain is another domain
		"bob@irc.example.evil",   // a suffix is too
		"someone@remote.example", // a remote server
		"bad@@irc.example",       // malformed
		"@irc.example",           // malformed: empty localpart
	} {
		t.Run(from, func(t *testing.T) {
			irc := e.irc(t)
			irc.Send(`<message from='%s' to='%s' id='spoof'><body>spoofed</body></message>`, xmlEscape(from), alice.JID)
			if got := irc.WaitClosed(); got != "invalid-from" {
				t.Fatalf("stream error %q, want invalid-from", got)
			}
		})
	}
	// Nothing spoofed arrived: the next message alice gets is a real one.
	irc := e.irc(t)
	irc.Send(`<message from='bob@irc.example' to='%s' id='real'><body>real</body></message>`, alice.JID)
	if got := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage }); got.Body() != "real" {
		t.Fatalf("alice got %s", got)
	}
}

// Stanzas with missing addressing or a bad type are answered on the
// stream and the link stays up.
func TestBadStanzasAnsweredLinkStays(t *testing.T) {
	e := newEnv(t)
	alice := e.alice(t)
	irc := e.irc(t)
	cases := []struct {
		name, xml string
		kind      stanza.Kind
		want      stanza.Condition
	}{
		{"no from", `<message to='alice@localhost' id='b1'><body>x</body></message>`, stanza.KindMessage, stanza.BadRequest},
		{"no to", `<message from='bob@irc.example' id='b2'><body>x</body></message>`, stanza.KindMessage, stanza.BadRequest},
		{"malformed to", `<message from='bob@irc.example' to='a@@b' id='b3'><body>x</body></message>`, stanza.KindMessage, stanza.JIDMalformed},
		{"bad message type", `<message from='bob@irc.example' to='alice@localhost' type='shout' id='b4'><body>x</body></message>`, stanza.KindMessage, stanza.BadRequest},
		{"iq without id", `<iq from='bob@irc.example' to='localhost' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`, stanza.KindIQ, stanza.BadRequest},
		{"iq with two payloads", `<iq from='bob@irc.example' to='localhost' type='get' id='b6'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>`, stanza.KindIQ, stanza.BadRequest},
		{"bad presence type", `<presence from='bob@irc.example' to='alice@localhost' type='online' id='b7'/>`, stanza.KindPresence, stanza.BadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			irc.Send("%s", tc.xml)
			got := irc.Expect(func(s *stanza.Stanza) bool { return s.Kind == tc.kind && s.Type == "error" })
			if _, cond := errorOf(got); cond != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	irc.Send(`<message from='bob@irc.example' to='%s' id='ok'><body>still up</body></message>`, alice.JID)
	alice.Expect(xmpptest.IsMessage("still up"))
}

// A component cannot use the server as a relay to another transport or a
// remote server: outside to outside is refused.
func TestNoRelayBetweenOutsides(t *testing.T) {
	e := newEnv(t)
	irc := e.irc(t)
	other := mustDial(t, e.addr, otherDomain, otherSecret)
	for i, to := range []string{"someone@other.example", "someone@remote.example"} {
		id := fmt.Sprintf("relay%d", i)
		irc.Send(`<message from='bob@irc.example' to='%s' id='%s'><body>relay</body></message>`, to, id)
		got := irc.Expect(isKind(stanza.KindMessage, id))
		if _, cond := errorOf(got); cond != stanza.NotAllowed {
			t.Fatalf("to %s: got %s, want not-allowed", to, got)
		}
	}
	// A server round trip proves other got nothing before it.
	other.Send(`<iq from='x@other.example' to='localhost' type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if got := other.Expect(func(*stanza.Stanza) bool { return true }); got.ID != "sync" {
		t.Fatalf("other.example got %s", got)
	}
}

// While a transport is down, stanzas to it bounce with an error of type
// wait; disco#info is answered from the configuration when it has a name
// or type (XEP-0100 discovery keeps working).
func TestOfflineTransport(t *testing.T) {
	e := newEnv(t)
	alice := e.alice(t)

	check := func(id string) {
		t.Helper()
		alice.Sendf(`<message to='bob%%irc@irc.example' id='%s'><body>anyone?</body></message>`, id)
		got := alice.Expect(func(s *stanza.Stanza) bool { return s.ID == id })
		typ, cond := errorOf(got)
		if got.Type != "error" || typ != "wait" || cond != component.OfflineCondition || got.From.String() != "bob%irc@irc.example" {
			t.Fatalf("got %s, want a wait/%s error", got, component.OfflineCondition)
		}
	}
	check("never-up")

	alice.Send(`<iq type='get' id='d1' to='irc.example'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	info := alice.Expect(xmpptest.IsIQ("d1"))
	id := info.Payload().Child("", "identity")
	if info.Type != "result" || id == nil || id.AttrValue("category") != "gateway" || id.AttrValue("type") != "irc" || id.AttrValue("name") != "IRC" {
		t.Fatalf("offline disco#info: %s", info)
	}
	// Without a name or type there is nothing to say.
	alice.Send(`<iq type='get' id='d2' to='other.example'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if got := alice.Expect(xmpptest.IsIQ("d2")); got.ErrorCondition() != component.OfflineCondition {
		t.Fatalf("offline disco#info without identity: %s", got)
	}

	// Up, then down again.
	irc := e.irc(t)
	alice.Send(`<message to='bob%irc@irc.example' id='up'><body>up</body></message>`)
	irc.Expect(isMessage("up"))
	irc.Close()
	check("down-again")
}

// When a user's session ends, transport addresses it sent directed
// presence to (a biboumi room it joined) get unavailable presence from that
// full JID; an explicit unavailable to the room does the same.
func TestDirectedPresenceRevokedAtSessionEnd(t *testing.T) {
	e := newEnv(t)
	irc := e.irc(t)
	room := "#chan%irc@irc.example/alice"
	isPresence := func(typ string) func(*stanza.Stanza) bool {
		return func(s *stanza.Stanza) bool {
			return s.Kind == stanza.KindPresence && s.Type == typ && s.To.String() == room
		}
	}

	alice := e.alice(t)
	full := alice.JID.String()
	alice.Send(`<presence/>`)
	alice.Sendf(`<presence to='%s'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	if got := irc.Expect(isPresence("")); got.From.String() != full {
		t.Fatalf("join: %s", got)
	}
	alice.Close()
	if got := irc.Expect(isPresence("unavailable")); got.From.String() != full {
		t.Fatalf("leave: %s", got)
	}

	// A second session leaves explicitly; the session end then sends
	// nothing more to the room.
	alice2 := e.alice(t)
	alice2.Sendf(`<presence to='%s'/>`, room)
	irc.Expect(isPresence(""))
	alice2.Sendf(`<presence to='%s' type='unavailable'/>`, room)
	irc.Expect(isPresence("unavailable"))
	alice2.Close()
	e.waitGone(t, alice2.JID.String())
	// A later stanza proves that nothing was queued before it.
	alice3 := e.alice(t)
	alice3.Send(`<message to='bob%irc@irc.example' id='after'><body>after</body></message>`)
	irc.Expect(isMessage("after"))
	irc.mu.Lock()
	defer irc.mu.Unlock()
	for _, s := range irc.backlog {
		if s.Kind == stanza.KindPresence {
			t.Fatalf("extra presence after an explicit leave: %s", s)
		}
	}
}

// waitGone waits until the session of full JID j has left the session
// table (its end handlers run right after, on the same goroutine).
func (e *env) waitGone(t *testing.T, j string) {
	t.Helper()
	deadline := time.Now().Add(xmpptest.Timeout)
	for {
		gone := true
		for _, s := range e.ts.Sessions().Resources(jid.MustParse("alice@localhost")) {
			gone = gone && s.JID.String() != j
		}
		if gone {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s did not end", j)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A transport contact the user shares presence with (roster subscription
// 'from', as Spectrum 2 and Slidge contacts have) gets the user's presence
// and, when the user's session ends, unavailable.
func TestRosterPresenceToTransportContact(t *testing.T) {
	e := newEnv(t)
	irc := e.irc(t)
	alice := e.alice(t)
	contact := "bob%irc@irc.example"
	// Subscription requests go to available resources that fetched the
	// roster (RFC 6121 §3.1.3).
	alice.Send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	alice.Expect(xmpptest.IsIQ("r1"))
	alice.Send(`<presence/>`)
	alice.Expect(xmpptest.IsPresence("", "alice@localhost"))
	irc.Send(`<presence type='subscribe' from='%s' to='alice@localhost'/>`, contact)
	alice.Expect(xmpptest.IsPresence("subscribe", contact))
	alice.Sendf(`<presence type='subscribed' to='%s'/>`, contact)
	irc.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "subscribed" })

	fromAlice := func(typ string) func(*stanza.Stanza) bool {
		return func(s *stanza.Stanza) bool {
			return s.Kind == stanza.KindPresence && s.Type == typ && s.To.String() == contact && s.From.String() == alice.JID.String()
		}
	}
	alice.Send(`<presence><show>away</show></presence>`)
	irc.Expect(fromAlice(""))
	alice.Close()
	irc.Expect(fromAlice("unavailable"))
}

// Server shutdown closes component streams with system-shutdown, after
// the users' sessions ended, so a room a user is in still learns that the
// user left.
func TestShutdownClosesComponents(t *testing.T) {
	e := newEnv(t)
	irc := e.irc(t)
	other := mustDial(t, e.addr, otherDomain, otherSecret)
	alice := e.alice(t)
	room := "#chan%irc@irc.example/alice"
	alice.Sendf(`<presence to='%s'/>`, room)
	irc.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence && s.Type == "" })
	e.ts.Stop()
	left := irc.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindPresence })
	if left.Type != "unavailable" || left.To.String() != room || left.From.String() != alice.JID.String() {
		t.Fatalf("at shutdown the room got %s", left)
	}
	for _, c := range []*compClient{irc, other} {
		if got := c.WaitClosed(); got != "system-shutdown" {
			t.Fatalf("%s: stream error %q, want system-shutdown", c.Domain, got)
		}
	}
}

// An idle component is pinged; one that answers stays, one that goes
// silent is closed with connection-timeout.
func TestIdlePing(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Components.PingInterval = config.Duration(300 * time.Millisecond)
		c.Components.IdleTimeout = config.Duration(500 * time.Millisecond)
	})
	irc := e.irc(t)
	isPing := func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindIQ && s.Type == "get" && s.Child("urn:xmpp:ping", "ping") != nil
	}
	ping := irc.Expect(isPing)
	if ping.From.String() != "localhost" || ping.To.String() != ircDomain {
		t.Fatalf("ping: %s", ping)
	}
	irc.Send(`<iq type='result' id='%s' from='irc.example' to='localhost'/>`, ping.ID)
	irc.Expect(isPing) // still connected: pinged again
	if got := irc.WaitClosed(); got != "connection-timeout" {
		t.Fatalf("silent component: stream error %q", got)
	}
}

// Input limits apply to components as to clients.
func TestStanzaSizeLimit(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Limits.MaxStanzaBytes = 10000 })
	irc := e.irc(t)
	irc.Send(`<message from='bob@irc.example' to='alice@localhost'><body>%s</body></message>`, strings.Repeat("x", 30000))
	if got := irc.WaitClosed(); got != "policy-violation" {
		t.Fatalf("stream error %q, want policy-violation", got)
	}
}

// recorder is a LinkObserver that records events and can refuse links.
type recorder struct {
	ch     chan string
	refuse bool
}

func (r *recorder) LinkUp(_ context.Context, l component.Link) error {
	r.add(fmt.Sprintf("up %s %v", l.Domain, l.Conn != 0 && l.Remote != ""))
	if r.refuse {
		return errors.New("archive unavailable")
	}
	return nil
}

func (r *recorder) LinkDown(_ context.Context, l component.Link, reason string) {
	r.add("down " + l.Domain)
}

func (r *recorder) add(ev string) { r.ch <- ev }

func (r *recorder) next(t *testing.T) string {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(xmpptest.Timeout):
		t.Fatal("no link event")
	}
	return ""
}

// Link up and down reach the observer (the archive's hook); an observer
// that cannot record refuses the link.
func TestLinkObserver(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{ch: make(chan string, 16)}
	e.ts.ComponentHost().SetObserver(rec)
	irc := e.irc(t)
	if ev := rec.next(t); ev != "up irc.example true" {
		t.Fatalf("event %q", ev)
	}
	irc.Close()
	if ev := rec.next(t); ev != "down irc.example" {
		t.Fatalf("event %q", ev)
	}
	// A refused conflict or handshake never reports a link.
	if _, err := dialComponent(t, e.addr, ircDomain, "wrong-secret-wrong-secret"); err == nil {
		t.Fatal("wrong secret accepted")
	}

	refusing := &recorder{ch: make(chan string, 16), refuse: true}
	e.ts.ComponentHost().SetObserver(refusing)
	_, err := dialComponent(t, e.addr, ircDomain, ircSecret)
	var sr *streamRefused
	if !errors.As(err, &sr) || sr.Condition != "internal-server-error" {
		t.Fatalf("got %v, want internal-server-error", err)
	}
	if ev := refusing.next(t); ev != "up irc.example true" {
		t.Fatalf("event %q", ev)
	}
	if e.ts.ComponentHost().Connected(ircDomain) {
		t.Fatal("refused link is connected")
	}
	select {
	case ev := <-refusing.ch:
		t.Fatalf("unexpected event %q for a refused link", ev)
	default:
	}
}

// Start-up checks that need the file system or the hosted domains.
func TestServerComponentConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.secret", ircSecret+"\n")
	short := write("short.secret", "short\n")
	cases := []struct {
		name string
		comp config.Component
		want string // "" = starts
	}{
		{"secret file with newline", config.Component{Domain: ircDomain, SecretFile: good}, ""},
		{"short secret file", config.Component{Domain: ircDomain, SecretFile: short}, "at least 16"},
		{"missing secret file", config.Component{Domain: ircDomain, SecretFile: filepath.Join(dir, "none")}, "no such file"},
		{"hosted domain", config.Component{Domain: "localhost", Secret: ircSecret}, "served by this server itself"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			cfg.C2S.Listen = []string{"127.0.0.1:0"}
			cfg.C2S.ListenTLS = nil
			cfg.Upload.Listen = "127.0.0.1:0" // on by default; tests run side by side
			cfg.Components.Listen = []string{"127.0.0.1:0"}
			cfg.Components.Transports = []config.Component{tc.comp}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			log := logrus.New()
			log.SetOutput(io.Discard)
			ctx, cancel := context.WithCancel(context.Background())
			srv, err := server.New(ctx, cfg, log)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			err = srv.Listen()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Listen: %v", err)
				}
				done := make(chan error, 1)
				go func() { done <- srv.Run(ctx) }()
				c := mustDial(t, srv.ComponentAddrs()[0], ircDomain, ircSecret)
				cancel()
				if got := c.WaitClosed(); got != "system-shutdown" {
					t.Errorf("stream error %q", got)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				return
			}
			cancel()
			_ = srv.DB().Close()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;")
	return r.Replace(s)
}
