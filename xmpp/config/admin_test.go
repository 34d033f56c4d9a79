package config

import (
	"errors"
	"strings"
	"testing"
)

func TestAdminValidation(t *testing.T) {
	tests := []struct {
		doc, path, msg string
	}{
		{"admin:\n  http_listen: 0.0.0.0:5290\n  token_file: /t", "admin.http_listen", "loopback"},
		{"admin:\n  http_listen: 192.0.2.1:5290\n  token_file: /t", "admin.http_listen", "loopback"},
		{"admin:\n  http_listen: nonsense\n  token_file: /t", "admin.http_listen", "host:port"},
		{"admin:\n  http_listen: 127.0.0.1:5290", "admin.token_file", "required"},
		{"metrics:\n  listen: 0.0.0.0:9570", "metrics.listen", "loopback"},
		{"metrics:\n  listen: 9570", "metrics.listen", "host:port"},
	}
	for _, tc := range tests {
		t.Run(tc.doc, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "t.yaml")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.path+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %s: ...%s", err, tc.path, tc.msg)
			}
		})
	}
	for _, ok := range []string{"admin:\n  http_listen: 127.0.0.1:5290\n  token_file: /t", "admin:\n  http_listen: '[::1]:5290'\n  token_file: /t", "admin:\n  socket: ''"} {
		if _, err := Parse([]byte(ok), "t.yaml"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	c := Default()
	c.DataDir = "/var/lib/gatehouse"
	if p := c.AdminSocketPath(); p != "/var/lib/gatehouse/admin.sock" {
		t.Errorf("socket path %q", p)
	}
	c.Admin.Socket = "/run/gatehouse/admin.sock"
	if p := c.AdminSocketPath(); p != "/run/gatehouse/admin.sock" {
		t.Errorf("absolute socket path %q", p)
	}
}
