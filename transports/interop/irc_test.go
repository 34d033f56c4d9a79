package interop

import (
	"context"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const ircDomain = "irc.example"

// ircServer starts Gatehouse with its builtin IRC transport for the IRC
// network at ircAddr, in dataDir (empty: a new one).
func ircServer(t *testing.T, ircAddr, dataDir string) *xmpptest.TestServer {
	t.Helper()
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		if dataDir != "" {
			c.DataDir = dataDir
		}
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{
			Domain: ircDomain, Builtin: "irc", Name: "IRC", Type: "irc",
			Networks:     []config.IRCNetwork{{Name: "test", Address: ircAddr}},
			PresencePoll: config.Duration(300 * time.Millisecond),
		}}
	})
	host := ts.ComponentHost()
	waitUntil(t, "the builtin transport's link", func() bool { return host.Connected(ircDomain) })
	return ts
}

func isPresenceFrom(typ, from string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.Type == typ && s.From.String() == from
	}
}

func rosterPush(jid, sub string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		q := s.Child("jabber:iq:roster", "query")
		if s.Kind != stanza.KindIQ || s.Type != "set" || q == nil {
			return false
		}
		for _, it := range q.Elements() {
			if it.AttrValue("jid") == jid && it.AttrValue("subscription") == sub {
				return true
			}
		}
		return false
	}
}

func bodyFrom(body, from string) func(*stanza.Stanza) bool {
	return func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindMessage && s.Body() == body && s.From.String() == from
	}
}

// Staff reach an IRC partner through the builtin transport: register,
// contacts in the roster (XEP-0356), presence, private messages both ways,
// a channel as a room, and the transport coming back after the IRC server
// restarts; the registration survives a restart of Gatehouse.
func TestBuiltinIRCTransport(t *testing.T) {
	interopTest(t)
	ircBin := requireCmd(t, "ngircd")
	ircHost := loopbackIRC(t)
	ircAddr, ngircd := startNgircd(t, ircBin, ircHost)
	dataDir := t.TempDir()
	ts := ircServer(t, ircAddr, dataDir)
	ts.AddUser(t, "alice", alicePW)

	bobJID := "bob%test@" + ircDomain
	bob := dialIRC(t, ircAddr, "bob")

	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>`)
	alice.Expect(xmpptest.IsIQ("r0"))

	// XEP-0100 discovery and registration.
	alice.Sendf(`<iq type='get' id='d1' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, ircDomain)
	info := alice.Expect(xmpptest.IsIQ("d1"))
	if id := info.Child("http://jabber.org/protocol/disco#info", "query").Child("http://jabber.org/protocol/disco#info", "identity"); id == nil ||
		id.AttrValue("category") != "gateway" || id.AttrValue("type") != "irc" {
		t.Fatalf("disco#info: %s", info)
	}
	alice.Sendf(`<iq type='get' id='g1' to='%s'><query xmlns='jabber:iq:gateway'/></iq>`, ircDomain)
	if p := alice.Expect(xmpptest.IsIQ("g1")); p.Type != "result" {
		t.Fatalf("gateway prompt: %s", p)
	}
	alice.Sendf(`<iq type='set' id='g2' to='%s'><query xmlns='jabber:iq:gateway'><prompt>Bob</prompt></query></iq>`, ircDomain)
	if p := alice.Expect(xmpptest.IsIQ("g2")); p.Child("jabber:iq:gateway", "query").ChildText("jabber:iq:gateway", "jid") != bobJID {
		t.Fatalf("gateway answer: %s", p)
	}
	alice.Sendf(`<iq type='get' id='reg1' to='%s'><query xmlns='jabber:iq:register'/></iq>`, ircDomain)
	form := alice.Expect(xmpptest.IsIQ("reg1"))
	if form.Type != "result" || form.Child("jabber:iq:register", "query").Child("jabber:x:data", "x") == nil {
		t.Fatalf("registration form: %s", form)
	}
	alice.Sendf(`<iq type='set' id='reg2' to='%s'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>
		<field var='FORM_TYPE'><value>jabber:iq:register</value></field>
		<field var='network'><value>test</value></field>
		<field var='nick'><value>alicegh</value></field>
		<field var='contacts'><value>bob</value></field></x></query></iq>`, ircDomain)
	if r := alice.Expect(xmpptest.IsIQ("reg2")); r.Type != "result" {
		t.Fatalf("registration: %s", r)
	}
	// The contact lands in the roster through the privileged roster API.
	alice.Expect(rosterPush(bobJID, "both"))
	alice.Expect(rosterPush(ircDomain, "both"))
	alice.Send(`<presence/>`)

	// Presence from ISON, private messages both ways.
	alice.Expect(isPresenceFrom("", bobJID))
	alice.Sendf(`<message to='%s' type='chat' id='m1'><body>hello bob</body></message>`, bobJID)
	bob.expect("alice's private message", func(l string) bool {
		return ircNick(l) == "alicegh" && strings.HasSuffix(l, "PRIVMSG bob :hello bob")
	})
	bob.send("PRIVMSG alicegh :hi \x02alice\x02 \x0304,01in colour\x03")
	if m := alice.Expect(bodyFrom("hi alice in colour", bobJID)); m.Type != "chat" {
		t.Fatalf("from IRC: %s", m)
	}

	// Each crossing is in the compliance archive exactly once.
	archived(t, ts, "hello bob", archive.Out, 1)
	archived(t, ts, "hi alice in colour", archive.In, 1)

	// Someone new writes: a new contact, in the roster.
	carol := dialIRC(t, ircAddr, "carol")
	carol.send("PRIVMSG alicegh :it's carol")
	alice.Expect(bodyFrom("it's carol", "carol%test@"+ircDomain))
	alice.Expect(rosterPush("carol%test@"+ircDomain, "both"))

	// Presence change: bob leaves IRC and comes back.
	bob.send("QUIT :bye")
	alice.Expect(isPresenceFrom("unavailable", bobJID))
	bob = dialIRC(t, ircAddr, "bob")
	alice.Expect(isPresenceFrom("", bobJID))

	// A channel as a room.
	room := "#ops%test@" + ircDomain
	bob.send("JOIN #ops")
	bob.expect("end of NAMES", func(l string) bool { return ircCommand(l) == "366" })
	bob.send("TOPIC #ops :incident bridge")
	bob.expect("topic set", func(l string) bool { return ircCommand(l) == "TOPIC" })
	alice.Sendf(`<presence to='%s/alicegh'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	alice.Expect(isPresenceFrom("", room+"/bob"))
	self := alice.Expect(isPresenceFrom("", room+"/alicegh"))
	if st := self.Child("http://jabber.org/protocol/muc#user", "x"); st == nil || st.Child("http://jabber.org/protocol/muc#user", "status") == nil {
		t.Fatalf("self presence: %s", self)
	}
	subj := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Child("", "subject") != nil })
	if subj.Child("", "subject").Text() != "incident bridge" {
		t.Fatalf("subject: %s", subj)
	}
	bob.expect("alice joining", func(l string) bool { return ircNick(l) == "alicegh" && ircCommand(l) == "JOIN" })
	alice.Sendf(`<message to='%s' type='groupchat' id='gc1'><body>hello room</body></message>`, room)
	bob.expect("alice in the channel", func(l string) bool { return strings.HasSuffix(l, "PRIVMSG #ops :hello room") })
	if r := alice.Expect(bodyFrom("hello room", room+"/alicegh")); r.ID != "gc1" || r.Type != "groupchat" {
		t.Fatalf("reflection: %s", r)
	}
	bob.send("PRIVMSG #ops :hello xmpp")
	alice.Expect(bodyFrom("hello xmpp", room+"/bob"))

	// The IRC server restarts: contacts go offline, the transport
	// reconnects with backoff, rejoins the channel and both ways work again.
	ngircd.stop()
	alice.Expect(isPresenceFrom("unavailable", bobJID))
	alice.Expect(isPresenceFrom("unavailable", ircDomain))
	_, ngircd = startNgircd(t, ircBin, ircHost)
	alice.Expect(isPresenceFrom("", ircDomain))
	bob = dialIRC(t, ircAddr, "bob")
	alice.Expect(isPresenceFrom("", bobJID))
	bob.send("PRIVMSG alicegh :back again")
	alice.Expect(bodyFrom("back again", bobJID))
	alice.Sendf(`<message to='%s' type='chat' id='m2'><body>welcome back</body></message>`, bobJID)
	bob.expect("after the restart", func(l string) bool { return strings.HasSuffix(l, "PRIVMSG bob :welcome back") })
	bob.send("JOIN #ops")
	bob.expect("alice rejoined", func(l string) bool { return ircCommand(l) == "353" && strings.Contains(l, "alicegh") })

	// Leaving the room parts the channel.
	alice.Sendf(`<presence to='%s/alicegh' type='unavailable'/>`, room)
	bob.expect("alice parting", func(l string) bool { return ircNick(l) == "alicegh" && ircCommand(l) == "PART" })

	// Gatehouse restarts: the registration is in SQLite, the transport
	// probes its users and alice is back on IRC when she comes online.
	alice.Close()
	bob.waitIson("alicegh", false)
	ts.Stop()
	ts2 := ircServer(t, ircAddr, dataDir)
	alice = ts2.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<presence/>`)
	alice.Expect(isPresenceFrom("", bobJID))
	bob.waitIson("alicegh", true)
	bob.send("PRIVMSG alicegh :still there?")
	alice.Expect(bodyFrom("still there?", bobJID))
}

// waitIson asks the IRC server (ISON) until nick is online or offline as
// wanted; bounded by the number of rounds.
func (c *ircClient) waitIson(nick string, online bool) {
	c.t.Helper()
	for range 60 {
		c.send("ISON " + nick)
		l := c.expect("ISON reply", func(l string) bool { return ircCommand(l) == "303" })
		_, list, _ := strings.Cut(strings.SplitN(l, " ", 4)[3], ":")
		if slicesContains(strings.Fields(list), nick) == online {
			return
		}
	}
	c.t.Fatalf("irc: %s never became online=%v", nick, online)
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// archived checks that the archive holds want rows of the message body
// going dir through the IRC transport.
func archived(t *testing.T, ts *xmpptest.TestServer, body string, dir archive.Direction, want int) {
	t.Helper()
	n := 0
	_, err := ts.Archive().Search(context.Background(), archive.Filter{Network: ircDomain, Direction: dir},
		archive.Actor{Name: "test", Origin: "cli"}, func(r *archive.StanzaRow) error {
			if r.Body == body {
				n++
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("archive: %d rows of %q (%s), want %d", n, body, dir, want)
	}
}

// startInspircd runs InspIRCd (IRCv3: echo-message, message-tags with
// msgid, server-time, away-notify) on host:6667, with presence module
// "monitor" (MONITOR) or "watch" (WATCH).
func startInspircd(t *testing.T, bin, host, presence string) string {
	dir := t.TempDir()
	conf := filepath.Join(dir, "inspircd.conf")
	writeFile(t, filepath.Join(dir, "motd"), "Gatehouse interop test\n")
	writeFile(t, conf, `<server name="irc.test" description="Gatehouse interop test" network="Test">
<admin name="test" nick="test" email="test@irc.test">
<bind address="`+host+`" port="6667" type="clients">
<power diepass="" restartpass="">
<connect name="main" allow="*" timeout="60" threshold="1000" pingfreq="120" hardsendq="1048576" softsendq="65536" recvq="65536" localmax="1000" globalmax="1000" useident="no" resolvehostnames="no" commandrate="1000000" fakelag="off" limit="1000">
<pid file="`+filepath.Join(dir, "inspircd.pid")+`">
<files motd="`+filepath.Join(dir, "motd")+`">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="`+filepath.Join(dir, "ircd.log")+`">
<dns timeout="1" server="127.0.0.1">
<module name="cap">
<module name="ircv3">
<module name="ircv3_ctctags">
<module name="ircv3_echomessage">
<module name="ircv3_msgid">
<module name="ircv3_servertime">
<module name="`+presence+`">
`)
	argv := []string{bin, "--nofork", "--config", conf}
	if os.Geteuid() == 0 {
		argv = append(argv, "--runasroot")
	}
	p := start(t, "inspircd", dir, argv...)
	addr := net.JoinHostPort(host, "6667")
	p.waitFor("inspircd to listen on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, stepTimeout)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	})
	return addr
}

// With an IRCv3 server the transport uses MONITOR for presence (ISON
// polling is off here), echo-message for channel reflections, msgid as
// message ids, and away-notify for away status.
func TestBuiltinIRCTransportIRCv3(t *testing.T) {
	interopTest(t)
	ircBin := requireCmd(t, "inspircd")
	ircAddr := startInspircd(t, ircBin, loopbackIRC(t), "monitor")
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{
			Domain: ircDomain, Builtin: "irc",
			Networks:     []config.IRCNetwork{{Name: "v3", Address: ircAddr}},
			PresencePoll: config.Duration(time.Hour), // MONITOR must do it
		}}
	})
	host := ts.ComponentHost()
	waitUntil(t, "the builtin transport's link", func() bool { return host.Connected(ircDomain) })
	ts.AddUser(t, "alice", alicePW)
	bobJID := "bob%v3@" + ircDomain

	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>`)
	alice.Expect(xmpptest.IsIQ("r0"))
	// A plain XEP-0077 client: legacy fields, the first network.
	alice.Sendf(`<iq type='set' id='reg' to='%s'><query xmlns='jabber:iq:register'><nick>alicegh</nick></query></iq>`, ircDomain)
	if r := alice.Expect(xmpptest.IsIQ("reg")); r.Type != "result" {
		t.Fatalf("registration: %s", r)
	}
	alice.Send(`<presence/>`)
	// Subscribing to a contact adds it (XEP-0100 §5.2) and MONITORs it.
	alice.Sendf(`<presence to='%s' type='subscribe'/>`, bobJID)
	alice.Expect(rosterPush(bobJID, "both"))
	bob := dialIRC(t, ircAddr, "bob")
	alice.Expect(isPresenceFrom("", bobJID))

	bob.send("PRIVMSG alicegh :hi over v3")
	m := alice.Expect(bodyFrom("hi over v3", bobJID))
	if m.ID == "" {
		t.Errorf("no msgid as the message id: %s", m)
	}
	alice.Sendf(`<message to='%s' type='chat' id='m1'><body>hello bob</body></message>`, bobJID)
	bob.expect("alice's message", func(l string) bool { return strings.HasSuffix(l, "PRIVMSG bob :hello bob") })

	room := "#ops%v3@" + ircDomain
	bob.send("JOIN #ops")
	bob.expect("end of NAMES", func(l string) bool { return ircCommand(l) == "366" })
	alice.Sendf(`<presence to='%s/alicegh'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	alice.Expect(isPresenceFrom("", room+"/alicegh"))
	alice.Sendf(`<message to='%s' type='groupchat' id='gc1'><body>echo me</body></message>`, room)
	if r := alice.Expect(bodyFrom("echo me", room+"/alicegh")); r.ID != "gc1" || r.Child("urn:xmpp:sid:0", "stanza-id") == nil {
		t.Errorf("reflection through echo-message: %s", r)
	}
	bob.expect("alice in the channel", func(l string) bool { return strings.HasSuffix(l, "PRIVMSG #ops :echo me") })

	// away-notify: bob shares the channel.
	bob.send("AWAY :at lunch")
	away := alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == bobJID && s.Child("", "show") != nil
	})
	if away.Child("", "show").Text() != "away" || away.Child("", "status").Text() != "at lunch" {
		t.Errorf("away: %s", away)
	}
	bob.send("QUIT :bye")
	alice.Expect(isPresenceFrom("unavailable", bobJID))
}

// An ordinary XMPP client, Debian's go-sendxmpp, reaches an IRC partner
// through the builtin transport: a private message and a message in a
// channel it joins as a room.
func TestSendxmppThroughIRCTransport(t *testing.T) {
	interopTest(t)
	ircBin := requireCmd(t, "ngircd")
	sendxmpp := requireCmd(t, "go-sendxmpp")
	ircAddr, _ := startNgircd(t, ircBin, loopbackIRC(t))
	ts := ircServer(t, ircAddr, "")
	ts.AddUser(t, "alice", alicePW)
	bobJID := "bob%test@" + ircDomain
	bob := dialIRC(t, ircAddr, "bob")
	bob.send("JOIN #ops")
	bob.expect("end of NAMES", func(l string) bool { return ircCommand(l) == "366" })

	// Registered, and online on a desktop client: the IRC session is up.
	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "desk"})
	alice.Sendf(`<iq type='set' id='reg' to='%s'><query xmlns='jabber:iq:register'><nick>alicegh</nick></query></iq>`, ircDomain)
	if r := alice.Expect(xmpptest.IsIQ("reg")); r.Type != "result" {
		t.Fatalf("registration: %s", r)
	}
	alice.Send(`<presence/>`)
	alice.Expect(isPresenceFrom("", ircDomain))

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})))
	env := []string{"SSL_CERT_FILE=" + ca, "SSL_CERT_DIR=" + t.TempDir()}
	send := func(name, body string, extra ...string) {
		msg := filepath.Join(dir, name+".txt")
		writeFile(t, msg, body)
		argv := append([]string{sendxmpp, "--timeout", "10", "-u", "alice@localhost", "-p", alicePW, "-j", ts.Addr, "-m", msg}, extra...)
		p := startEnv(t, "go-sendxmpp "+name, dir, env, argv...)
		select {
		case <-p.done:
		case <-time.After(stepTimeout):
			t.Fatalf("go-sendxmpp %s did not finish: %s", name, p.output())
		}
		if p.cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("go-sendxmpp %s: %s", name, p.output())
		}
	}
	send("pm", "hello from go-sendxmpp", bobJID)
	bob.expect("the private message", func(l string) bool {
		return ircNick(l) == "alicegh" && strings.HasSuffix(l, "PRIVMSG bob :hello from go-sendxmpp")
	})
	send("room", "hello channel", "-c", "-a", "alicegh", "#ops%test@"+ircDomain)
	bob.expect("the channel message", func(l string) bool {
		return ircNick(l) == "alicegh" && strings.HasSuffix(l, "PRIVMSG #ops :hello channel")
	})
}

// On a server with WATCH and no MONITOR, contacts' presence comes from
// WATCH (ISON polling is effectively off).
func TestBuiltinIRCTransportWATCH(t *testing.T) {
	interopTest(t)
	ircBin := requireCmd(t, "inspircd")
	ircAddr := startInspircd(t, ircBin, loopbackIRC(t), "watch")
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{
			Domain: ircDomain, Builtin: "irc",
			Networks:     []config.IRCNetwork{{Name: "w", Address: ircAddr}},
			PresencePoll: config.Duration(time.Hour),
		}}
	})
	host := ts.ComponentHost()
	waitUntil(t, "the builtin transport's link", func() bool { return host.Connected(ircDomain) })
	ts.AddUser(t, "alice", alicePW)
	bobJID := "bob%w@" + ircDomain
	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Sendf(`<iq type='set' id='reg' to='%s'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>
		<field var='nick'><value>alicegh</value></field><field var='contacts'><value>bob</value></field></x></query></iq>`, ircDomain)
	if r := alice.Expect(xmpptest.IsIQ("reg")); r.Type != "result" {
		t.Fatalf("registration: %s", r)
	}
	alice.Send(`<presence/>`)
	alice.Expect(isPresenceFrom("", ircDomain))
	bob := dialIRC(t, ircAddr, "bob")
	alice.Expect(isPresenceFrom("", bobJID))
	bob.send("QUIT :bye")
	alice.Expect(isPresenceFrom("unavailable", bobJID))
}
