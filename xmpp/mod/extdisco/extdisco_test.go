package extdisco_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/mod/extdisco"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func TestRESTCredentials(t *testing.T) {
	// The TURN REST scheme as coturn checks it: password =
	// base64(HMAC-SHA1(secret, username)); reference value computed with
	// `printf '%s' 1700000000:alice | openssl dgst -sha1 -hmac secret -binary | base64`.
	u, p := extdisco.RESTCredentials("secret", "alice", time.Unix(1700000000, 0))
	if u != "1700000000:alice" || p != "d8soP47RbdIKLDUOpnJPVQyq5Ts=" {
		t.Fatalf("got %s %s", u, p)
	}
}

func TestServices(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.ExternalServices = []config.ExternalService{
			{Type: "stun", Host: "turn.example.com", Port: 3478, Transport: "udp"},
			{Type: "turn", Host: "turn.example.com", Port: 3478, Transport: "udp", Secret: "s3cret", TTL: config.Duration(time.Hour)},
			{Type: "turns", Host: "turn.example.com", Port: 5349, Transport: "tcp", Username: "fixed", Password: "pw", Name: "TLS relay"},
		}
	})
	ts.AddUser(t, "alice", "alice password")
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})

	alice.Send(`<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if info := alice.Expect(xmpptest.IsIQ("i")); !strings.Contains(info.String(), extdisco.NS) {
		t.Fatalf("feature not advertised: %s", info)
	}
	before := time.Now()
	alice.Send(`<iq type='get' id='s' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>`)
	r := alice.Expect(xmpptest.IsIQ("s"))
	svcs := r.Child(extdisco.NS, "services").Elements()
	if r.Type != "result" || len(svcs) != 3 {
		t.Fatalf("services: %s", r)
	}
	turn := svcs[1]
	exp, err := time.Parse(time.RFC3339, turn.AttrValue("expires"))
	if err != nil || exp.Before(before.Add(59*time.Minute)) || exp.After(time.Now().Add(time.Hour)) {
		t.Fatalf("turn expires %q", turn.AttrValue("expires"))
	}
	wantUser := strconv.FormatInt(exp.Unix(), 10) + ":alice"
	_, wantPW := extdisco.RESTCredentials("s3cret", "alice", exp)
	if turn.AttrValue("username") != wantUser || turn.AttrValue("password") != wantPW || turn.AttrValue("restricted") != "1" {
		t.Fatalf("turn credentials: %s", turn.AttrValue("username"))
	}
	if svcs[0].AttrValue("username") != "" || svcs[2].AttrValue("username") != "fixed" || svcs[2].AttrValue("name") != "TLS relay" {
		t.Fatalf("stun/turns entries wrong")
	}

	alice.Send(`<iq type='get' id='f' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("f")); len(r.Child(extdisco.NS, "services").Elements()) != 1 {
		t.Fatalf("filtered by type: %s", r)
	}
	alice.Send(`<iq type='get' id='c' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.com' port='3478'/></credentials></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("c")); r.Type != "result" || r.Child(extdisco.NS, "credentials").Child(extdisco.NS, "service").AttrValue("password") == "" {
		t.Fatalf("credentials: %s", r)
	}
	alice.Send(`<iq type='get' id='n' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='other.example.com'/></credentials></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("n")); r.ErrorCondition() != stanza.ItemNotFound {
		t.Fatalf("unknown service: %s", r)
	}
}

func TestNoServicesNoFeature(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice password")
	alice := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
	alice.Send(`<iq type='get' id='s' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>`)
	if r := alice.Expect(xmpptest.IsIQ("s")); r.ErrorCondition() != stanza.ServiceUnavailable {
		t.Fatalf("services without configuration: %s", r)
	}
}
