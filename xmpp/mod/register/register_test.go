package register_test

import (
	"errors"
	"fmt"
	"testing"

	"gatehouse/xmpp/config"
	"gatehouse/xmpp/stanza"
	"gatehouse/xmpp/xmpptest"
)

func reply(t *testing.T, c *xmpptest.Client, send string) *stanza.Element {
	t.Helper()
	c.Send(send)
	el, err := c.NextElement()
	if err != nil {
		t.Fatalf("after %s: %v", send, err)
	}
	return el
}

func errCond(el *stanza.Element) string {
	if el.AttrValue("type") != "error" {
		return ""
	}
	e := el.Child("", "error")
	if e == nil {
		e = el.Child(stanza.NSClient, "error")
	}
	if e == nil {
		return "?"
	}
	for _, c := range e.Elements() {
		if c.Name.Space == stanza.NSStanzaErr && c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return "?"
}

const setUser = `<iq type='set' id='r%d'><query xmlns='jabber:iq:register'><username>%s</username><password>%s</password></query></iq>`

func TestRegistrationDisabledByDefault(t *testing.T) {
	ts := xmpptest.RunServer(t)
	c, feats := ts.DialUnauthenticated(t)
	if feats.Child("http://jabber.org/features/iq-register", "register") != nil {
		t.Fatal("iq-register feature offered while registration is off")
	}
	el := reply(t, c, `<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>mallory</username><password>password123</password></query></iq>`)
	if errCond(el) != "not-allowed" {
		t.Fatalf("registration while disabled: %s", el)
	}
	if _, err := ts.TryDial(t, "mallory", "password123", xmpptest.ClientOptions{}); err == nil {
		t.Fatal("an account was created while registration is off")
	}
}

// TestRegistration: with register.enabled the form is offered, accounts
// are created and can log in, taken names and bad input get the right
// errors, and one address may create only register.max_per_ip accounts
// per window.
func TestRegistration(t *testing.T) {
	ts := xmpptest.RunServer(t, func(c *config.Config) {
		c.Register.Enabled = true
		c.Register.MaxPerIP = 4
	})
	ts.AddUser(t, "taken", "taken password")
	c, feats := ts.DialUnauthenticated(t)
	if feats.Child("http://jabber.org/features/iq-register", "register") == nil {
		t.Fatalf("no iq-register feature: %s", feats)
	}
	form := reply(t, c, `<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>`)
	if q := form.Child("jabber:iq:register", "query"); form.AttrValue("type") != "result" || q == nil || q.Child("", "password") == nil {
		t.Fatalf("registration form: %s", form)
	}
	tests := []struct {
		name, user, password, cond string
	}{
		{"created", "newbie", "long enough", ""},
		{"taken", "taken", "long enough", "conflict"},
		{"short password", "shorty", "short", "not-acceptable"},
		{"bad username", "Has Space", "long enough", "not-acceptable"},
		{"over the limit", "fifth", "long enough", "resource-constraint"},
	}
	for i, tc := range tests {
		el := reply(t, c, fmtSet(i, tc.user, tc.password))
		if got := errCond(el); got != tc.cond {
			t.Fatalf("%s: got %q (%s), want %q", tc.name, got, el, tc.cond)
		}
	}
	// Every attempt counted: another connection from the same address is
	// refused too.
	c2, _ := ts.DialUnauthenticated(t)
	if el := reply(t, c2, fmtSet(9, "sixth", "long enough")); errCond(el) != "resource-constraint" {
		t.Fatalf("second connection: %s", el)
	}
	// The new account works, and the same stream can still log in.
	u := ts.Dial(t, "newbie", "long enough", xmpptest.ClientOptions{})
	u.Ping()
}

func fmtSet(i int, user, password string) string {
	return sprintf(setUser, i, user, password)
}

// TestPasswordChange: a logged-in user changes their password in-band;
// the old one stops working. Changing someone else's or removing the
// account is refused.
func TestPasswordChange(t *testing.T) {
	ts := xmpptest.RunServer(t)
	ts.AddUser(t, "alice", "alice password")
	c := ts.Dial(t, "alice", "alice password", xmpptest.ClientOptions{})
	tests := []struct{ name, payload, cond string }{
		{"someone else's", `<username>bob</username><password>new password 1</password>`, "not-allowed"},
		{"too short", `<username>alice</username><password>x</password>`, "not-acceptable"},
		{"remove", `<remove/>`, "not-allowed"},
		{"changed", `<username>alice</username><password>new password 1</password>`, ""},
	}
	for i, tc := range tests {
		c.Sendf(`<iq type='set' id='p%d'><query xmlns='jabber:iq:register'>%s</query></iq>`, i, tc.payload)
		r := c.Expect(xmpptest.IsIQ(sprintf("p%d", i)))
		if got := string(r.ErrorCondition()); got != tc.cond {
			t.Fatalf("%s: got %q, want %q: %s", tc.name, got, tc.cond, r)
		}
	}
	_, err := ts.TryDial(t, "alice", "alice password", xmpptest.ClientOptions{})
	var ae *xmpptest.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("old password: %v, want a SASL failure", err)
	}
	ts.Dial(t, "alice", "new password 1", xmpptest.ClientOptions{}).Ping()
}

var sprintf = fmt.Sprintf
