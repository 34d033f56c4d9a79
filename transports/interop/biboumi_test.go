package interop

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/transports/component"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

const (
	biboumiDomain = "biboumi.localhost"
	biboumiSecret = "biboumi-secret-0123456789"
	alicePW       = "alice-secret-1"
)

// loopbackIRC picks an address in 127.0.0.0/8 for the IRC server. biboumi
// reaches IRC servers on the standard ports only (6697 and 6670 with TLS,
// then 6667), so the test varies the address instead of the port; on Linux
// every 127.x.y.z is the loopback interface.
func loopbackIRC(t *testing.T) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.%d.%d.%d", 64+b[0]%128, b[1], 1+b[2]%250)
}

// startNgircd runs ngircd in the foreground with a private configuration
// on host:6667 and waits until it accepts connections.
func startNgircd(t *testing.T, bin, host string) (string, *proc) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ngircd.conf")
	writeFile(t, conf, `[Global]
Name = irc.test
Info = Gatehouse interop test
AdminInfo1 = test
AdminInfo2 = test
AdminEMail = test@irc.test
Listen = `+host+`
Ports = 6667
MotdPhrase = "Gatehouse interop test"
[Limits]
MaxConnectionsIP = 0
PingTimeout = 120
[Options]
DNS = no
Ident = no
PAM = no
`)
	p := start(t, "ngircd", dir, bin, "--nodaemon", "--config", conf)
	addr := net.JoinHostPort(host, "6667")
	p.waitFor("ngircd to listen on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, stepTimeout)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	})
	return addr, p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Debian's biboumi, unchanged, connects to Gatehouse as a third-party
// component: an XMPP user joins an IRC channel through it, talks with an
// IRC user in the channel and in private, and leaving XMPP takes the user
// out of the channel. With biboumi gone, its domain bounces.
func TestBiboumiChannelAndPrivateMessages(t *testing.T) {
	interopTest(t)
	bibBin := requireCmd(t, "biboumi")
	ircBin := requireCmd(t, "ngircd")

	ircHost := loopbackIRC(t)
	ircAddr, _ := startNgircd(t, ircBin, ircHost)

	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Components.Listen = []string{"127.0.0.1:0"}
		c.Components.Transports = []config.Component{{Domain: biboumiDomain, Secret: biboumiSecret, Name: "IRC", Type: "irc"}}
	})
	ts.AddUser(t, "alice", alicePW)
	_, compPort, err := net.SplitHostPort(ts.ComponentAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "biboumi.cfg")
	writeFile(t, cfg, strings.Join([]string{
		"hostname=" + biboumiDomain,
		"password=" + biboumiSecret,
		"xmpp_server_ip=127.0.0.1",
		"port=" + compPort,
		"identd_port=0", // no identd: it would bind port 113
		"log_level=0",
		"realname_customization=false",
		"policy_directory=" + dir,
		"db_name=" + filepath.Join(dir, "biboumi.sqlite"),
		"",
	}, "\n"))
	bib := start(t, "biboumi", dir, bibBin, cfg)
	host := ts.ComponentHost()
	bib.waitFor("biboumi's component link", func() bool { return host.Connected(biboumiDomain) })

	partner := dialIRC(t, ircAddr, "partner")
	partner.send("JOIN #chan")
	partner.expect("end of NAMES (366)", func(l string) bool { return ircCommand(l) == "366" })

	alice := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "laptop"})
	alice.Send(`<presence/>`)
	room := "#chan%" + ircHost + "@" + biboumiDomain
	alice.Sendf(`<presence to='%s/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`, room)
	self := alice.Expect(func(s *stanza.Stanza) bool {
		return s.Kind == stanza.KindPresence && s.From.String() == room+"/alice"
	})
	if self.Type != "" {
		t.Fatalf("join failed: %s", self)
	}
	partner.expect("alice joining #chan", func(l string) bool { return ircNick(l) == "alice" && ircCommand(l) == "JOIN" })

	// Channel messages both ways.
	alice.Sendf(`<message to='%s' type='groupchat' id='g1'><body>hello from xmpp</body></message>`, room)
	partner.expect("alice's channel message", func(l string) bool {
		return ircNick(l) == "alice" && strings.HasSuffix(l, "PRIVMSG #chan :hello from xmpp")
	})
	partner.send("PRIVMSG #chan :hello from irc")
	got := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() == "hello from irc" })
	if got.From.String() != room+"/partner" || got.Type != "groupchat" {
		t.Fatalf("channel message: %s", got)
	}

	// Private messages both ways.
	partner.send("PRIVMSG alice :psst, alice")
	pm := alice.Expect(func(s *stanza.Stanza) bool { return s.Kind == stanza.KindMessage && s.Body() == "psst, alice" })
	if pm.From.Domainpart() != biboumiDomain || !strings.HasPrefix(pm.From.Localpart(), "partner%") {
		t.Fatalf("private message: %s", pm)
	}
	alice.Sendf(`<message to='%s' type='chat' id='p1'><body>psst, partner</body></message>`, pm.From.Bare())
	partner.expect("alice's private message", func(l string) bool {
		return ircNick(l) == "alice" && strings.HasSuffix(l, "PRIVMSG partner :psst, partner")
	})

	// The XMPP session ends without leaving the room: Gatehouse sends the
	// room unavailable presence, and biboumi takes alice off IRC.
	alice.Close()
	partner.expect("alice leaving", func(l string) bool {
		c := ircCommand(l)
		return ircNick(l) == "alice" && (c == "PART" || c == "QUIT")
	})

	// biboumi stops: the link goes down and its domain bounces.
	bib.stop()
	waitUntil(t, "the link to go down", func() bool { return !host.Connected(biboumiDomain) })
	alice2 := ts.Dial(t, "alice", alicePW, xmpptest.ClientOptions{Resource: "phone"})
	alice2.Sendf(`<message to='%s' type='groupchat' id='down'><body>anyone?</body></message>`, room)
	bounce := alice2.Expect(func(s *stanza.Stanza) bool { return s.ID == "down" })
	if bounce.Type != "error" || bounce.ErrorCondition() != component.OfflineCondition {
		t.Fatalf("to a stopped transport: %s", bounce)
	}
}
