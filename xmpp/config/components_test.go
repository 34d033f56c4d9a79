package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestComponentsParse(t *testing.T) {
	doc := `
components:
  listen: ["127.0.0.1:5347", "[::1]:5347"]
  handshake_timeout: 5s
  ping_interval: 1m
  idle_timeout: 20s
  transports:
    - domain: irc.example.com
      secret: "0123456789abcdef0123"
      name: IRC
      type: irc
    - domain: telegram.example.com
      secret_file: /etc/gatehouse/telegram.secret
`
	c, err := Parse([]byte(doc), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Components
	if len(cc.Listen) != 2 || cc.HandshakeTimeout.D() != 5*time.Second || cc.PingInterval.D() != time.Minute || cc.IdleTimeout.D() != 20*time.Second {
		t.Fatalf("components = %+v", cc)
	}
	want := []Component{
		{Domain: "irc.example.com", Secret: "0123456789abcdef0123", Name: "IRC", Type: "irc"},
		{Domain: "telegram.example.com", SecretFile: "/etc/gatehouse/telegram.secret"},
	}
	if len(cc.Transports) != len(want) {
		t.Fatalf("transports = %+v", cc.Transports)
	}
	for i := range want {
		if !reflect.DeepEqual(cc.Transports[i], want[i]) {
			t.Errorf("transports[%d] = %+v, want %+v", i, cc.Transports[i], want[i])
		}
	}
}

func TestComponentsValidation(t *testing.T) {
	const ok = `{domain: irc.example.com, secret: "0123456789abcdef"}`
	cases := []struct {
		name, doc, path, msg string
		line                 int
	}{
		{"bad listen", "components:\n  listen: [nonsense]", "components.listen[0]", "missing port", 2},
		{"duplicate listen", "components:\n  listen: ['127.0.0.1:5347', '127.0.0.1:5347']", "components.listen[1]", "already used", 2},
		{"no listener", "components:\n  listen: []\n  transports: [" + ok + "]", "components.listen", "no listeners", 2},
		{"zero timeout", "components:\n  handshake_timeout: 0s", "components.handshake_timeout", "positive", 2},
		{"no domain", "components:\n  transports:\n    - {secret: '0123456789abcdef'}", "components.transports[0].domain", "must not be empty", 3},
		{"address not domain", "components:\n  transports:\n    - {domain: bob@irc.example.com, secret: '0123456789abcdef'}", "components.transports[0].domain", "not an address", 3},
		{"not canonical", "components:\n  transports:\n    - {domain: IRC.example.com, secret: '0123456789abcdef'}", "components.transports[0].domain", "canonical", 3},
		{"duplicate domain", "components:\n  transports:\n    - " + ok + "\n    - " + ok, "components.transports[1].domain", "already listed", 4},
		{"no secret", "components:\n  transports:\n    - {domain: irc.example.com}", "components.transports[0].secret", "set secret or secret_file", 3},
		{"both secrets", "components:\n  transports:\n    - {domain: irc.example.com, secret: '0123456789abcdef', secret_file: /x}", "components.transports[0].secret_file", "not both", 3},
		{"short secret", "components:\n  transports:\n    - {domain: irc.example.com, secret: short}", "components.transports[0].secret", "at least 16", 3},
		{"bad roster privilege", "components:\n  transports:\n    - {domain: irc.example.com, secret: '0123456789abcdef', privileges: {roster: all}}", "components.transports[0].privileges.roster", "not one of", 3},
		{"bad privilege version", "components:\n  transports:\n    - {domain: irc.example.com, secret: '0123456789abcdef', privileges: {version: 3}}", "components.transports[0].privileges.version", "1 or 2", 3},
		{"unknown builtin", "components:\n  transports:\n    - {domain: irc.example.com, builtin: xmpp}", "components.transports[0].builtin", "only builtin", 3},
		{"builtin without networks", "components:\n  transports:\n    - {domain: irc.example.com, builtin: irc}", "components.transports[0].networks", "at least one", 3},
		{"bad network address", "components:\n  transports:\n    - {domain: irc.example.com, builtin: irc, networks: [{name: net, address: nowhere}]}", "components.transports[0].networks[0].address", "host:port", 3},
		{"networks of external", "components:\n  transports:\n    - {domain: irc.example.com, secret: '0123456789abcdef', networks: [{name: net, address: 'h:1'}]}", "components.transports[0].networks", "only a builtin", 3},
		{"bad type", "components:\n  transports:\n    - {domain: irc.example.com, secret: '0123456789abcdef', type: 'IRC Net'}", "components.transports[0].type", "lowercase token", 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "t.yaml")
			var ce *Error
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want a validation error", err)
			}
			if ce.Path != tc.path || !strings.Contains(ce.Msg, tc.msg) || ce.Line != tc.line {
				t.Fatalf("got %s (path %q, line %d), want %s at line %d: ...%s", ce, ce.Path, ce.Line, tc.path, tc.line, tc.msg)
			}
		})
	}
}

func TestComponentsUnknownKey(t *testing.T) {
	_, err := Parse([]byte("components:\n  transports:\n    - {domain: irc.example.com, password: x}"), "t.yaml")
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey", err)
	}
}
