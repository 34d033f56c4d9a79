package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPolicySection(t *testing.T) {
	c, err := Parse([]byte(`
policy:
  file: /etc/gatehouse/policy.yaml
  clamd: unix:/run/clamav/clamd.ctl
  clamd_timeout: 5s
  on_scan_failure: allow
  scan_max_bytes: 65536
  directory_refresh: 0s
  max_transfers: 10
  review_timeout: 1h
  review_timeout_action: release
  review_poll: 500ms
  scan_links: true
  scan_links_private: true
`), "gh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{File: "/etc/gatehouse/policy.yaml", Clamd: "unix:/run/clamav/clamd.ctl", ClamdTimeout: Duration(5 * time.Second),
		OnScanFailure: "allow", ScanMaxBytes: 65536, DirectoryRefresh: 0, MaxTransfers: 10,
		ReviewTimeout: Duration(time.Hour), ReviewTimeoutAction: "release", ReviewPoll: Duration(500 * time.Millisecond),
		ScanLinks: true, ScanLinksPrivate: true}
	if c.Policy != want {
		t.Fatalf("policy section %+v, want %+v", c.Policy, want)
	}
	if d := Default().Policy; d != policyDefaults() || d.OnScanFailure != "deny" || d.File != "" ||
		d.ReviewTimeoutAction != "reject" || d.ReviewTimeout != Duration(72*time.Hour) {
		t.Fatalf("defaults %+v", d)
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, tc := range []struct {
		doc, path, msg string
	}{
		{"policy:\n  clamd: unix:relative.sock", "policy.clamd", "absolute path"},
		{"policy:\n  clamd: clamd", "policy.clamd", "not unix:/path or tcp:host:port"},
		{"policy:\n  clamd: 'tcp:'", "policy.clamd", "not unix:/path or tcp:host:port"},
		{"policy:\n  clamd_timeout: 0s", "policy.clamd_timeout", "positive duration"},
		{"policy:\n  on_scan_failure: ignore", "policy.on_scan_failure", `"ignore" is not one of deny, allow`},
		{"policy:\n  scan_max_bytes: 100", "policy.scan_max_bytes", "between 4096"},
		{"policy:\n  directory_refresh: -1s", "policy.directory_refresh", "must not be negative"},
		{"policy:\n  max_transfers: 0", "policy.max_transfers", "between 1"},
		{"policy:\n  file: ' policy.yaml'", "policy.file", "leading or trailing spaces"},
		{"policy:\n  review_timeout: 0s", "policy.review_timeout", "positive duration"},
		{"policy:\n  review_timeout_action: deliver", "policy.review_timeout_action", `"deliver" is not one of reject, release`},
		{"policy:\n  review_poll: 0s", "policy.review_poll", "positive duration"},
	} {
		_, err := Parse([]byte(tc.doc), "gh.yaml")
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Path != tc.path || e.Line != 2 || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("%q: got %v, want %s at line 2 containing %q", tc.doc, err, tc.path, tc.msg)
		}
	}
	for _, ok := range []string{"unix:/run/clamav/clamd.ctl", "/run/clamav/clamd.ctl", "tcp:127.0.0.1:3310", "localhost:3310"} {
		if _, err := Parse([]byte("policy:\n  clamd: "+ok), "gh.yaml"); err != nil {
			t.Errorf("clamd %q: %v", ok, err)
		}
	}
}
