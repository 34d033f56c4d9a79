package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestS2SDefaults(t *testing.T) {
	c := Default().S2S
	want := S2S{
		Listen: []string{"127.0.0.1:5269"}, ListenTLS: []string{"127.0.0.1:5270"}, RequireTLS: true,
		Routes: map[string]string{}, Mode: FederationAllowlist, Allow: []string{}, Deny: []string{}, Bidi: true,
		ConnectTimeout: Duration(30 * time.Second), HandshakeTimeout: Duration(30 * time.Second),
		QueueTimeout: Duration(time.Minute), QueueSize: 1000, IdleTimeout: Duration(10 * time.Minute),
		MaxInbound: 1000, RateLimit: 500,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("s2s defaults\n got %+v\nwant %+v", c, want)
	}
}

func TestS2SParse(t *testing.T) {
	doc := `
s2s:
  enabled: true
  listen: ["0.0.0.0:5269"]
  listen_tls: []
  require_verified_certs: true
  ca_file: /etc/gatehouse/partners.pem
  routes:
    partner.example: "xmpp.partner.example:5269"
    lab.partner.example: "tls://10.0.0.5:5270"
  mode: denylist
  deny: ["spam.example", "*.spam.example"]
  queue_timeout: 5s
  dialback_secret: "0123456789abcdef0123"
`
	c, err := Parse([]byte(doc), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := c.S2S
	if !s.Enabled || len(s.ListenTLS) != 0 || !s.RequireVerifiedCerts || s.Mode != FederationDenylist ||
		len(s.Routes) != 2 || s.Deny[1] != "*.spam.example" || s.QueueTimeout.D() != 5*time.Second || !s.RequireTLS {
		t.Fatalf("parsed %+v", s)
	}
	addr, direct, err := RouteTarget(s.Routes["lab.partner.example"])
	if err != nil || addr != "10.0.0.5:5270" || !direct {
		t.Fatalf("route %q %v %v", addr, direct, err)
	}
}

func TestS2SValidation(t *testing.T) {
	tests := []struct {
		name, doc, path, msg string
	}{
		{"bad listen", "s2s:\n  listen: [nowhere]", "s2s.listen[0]", "missing port"},
		{"duplicate listen", "s2s:\n  listen: ['127.0.0.1:5269']\n  listen_tls: ['127.0.0.1:5269']", "s2s.listen_tls[0]", "already used by s2s.listen[0]"},
		{"enabled without listeners", "s2s:\n  enabled: true\n  listen: []\n  listen_tls: []", "s2s.listen", "both empty"},
		{"mode", "s2s:\n  mode: closed", "s2s.mode", `"closed" is not one of open, allowlist, denylist`},
		{"route not canonical", "s2s:\n  routes: {Partner.Example: 'h:5269'}", "s2s.routes.Partner.Example", `write "partner.example"`},
		{"route wildcard", "s2s:\n  routes: {'*.partner.example': 'h:5269'}", "s2s.routes.*.partner.example", "wildcards are not allowed"},
		{"route no port", "s2s:\n  routes: {partner.example: 'h'}", "s2s.routes.partner.example", "host:port"},
		{"route port zero", "s2s:\n  routes: {partner.example: 'tls://h:0'}", "s2s.routes.partner.example", "between 1 and 65535"},
		{"allow invalid", "s2s:\n  allow: ['bad domain']", "s2s.allow[0]", "not a valid domain"},
		{"allow duplicate", "s2s:\n  allow: [a.example, a.example]", "s2s.allow[1]", "already listed as s2s.allow[0]"},
		{"on both lists", "s2s:\n  allow: [a.example]\n  deny: [a.example]", "s2s.deny[0]", "also listed in s2s.allow[0]"},
		{"deny not canonical", "s2s:\n  deny: ['*.Spam.example']", "s2s.deny[0]", `write "*.spam.example"`},
		{"queue timeout", "s2s:\n  queue_timeout: 0s", "s2s.queue_timeout", "positive duration"},
		{"queue size", "s2s:\n  queue_size: 0", "s2s.queue_size", "between 1 and 1000000"},
		{"max inbound", "s2s:\n  max_inbound: -1", "s2s.max_inbound", "at least 0"},
		{"rate limit", "s2s:\n  rate_limit: -1", "s2s.rate_limit", "at least 0"},
		{"short secret", "s2s:\n  dialback_secret: short", "s2s.dialback_secret", "at least 16 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "gh.yaml")
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an ErrInvalid", err)
			}
			found := false
			for _, e := range flatten(err) {
				var ce *Error
				if errors.As(e, &ce) && ce.Path == tc.path && strings.Contains(ce.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("got %v, want %s: ...%s...", err, tc.path, tc.msg)
			}
		})
	}
}

func TestNormalizeDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM.": "example.com", "*.Example.com": "*.example.com", " a.example ": "a.example",
		"bücher.example": "bücher.example", "xn--bcher-kva.example": "bücher.example",
	} {
		if got, err := NormalizeDomain(in); err != nil || got != want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "*.", "a..b", ".a", "a b", "user@example.com"} {
		if got, err := NormalizeDomain(bad); err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want an error", bad, got)
		}
	}
}

// flatten unwraps errors.Join down to the *Error values.
func flatten(err error) []error {
	if _, ok := err.(*Error); ok {
		return []error{err}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
