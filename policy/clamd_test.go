package policy_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/policy"
	"gatehouse/policy/clamdtest"
)

// TestClamdScan talks INSTREAM to a real clamd with the test database.
func TestClamdScan(t *testing.T) {
	d := clamdtest.Start(t)
	c := &policy.Clamd{Network: "unix", Addr: d.Socket, Timeout: 10 * time.Second}
	big := bytes.Repeat([]byte("clean data "), 20000) // several INSTREAM chunks
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"clean", []byte("hello, this is a harmless file"), ""},
		{"empty", nil, ""},
		{"eicar", clamdtest.EICAR(), clamdtest.EICARName},
		{"marker in large file", append(append(append([]byte(nil), big...), clamdtest.Marker...), big...), clamdtest.MarkerName},
		{"large clean", big, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Scan(context.Background(), tc.data)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Scan = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClamdDown(t *testing.T) {
	c := &policy.Clamd{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock"), Timeout: time.Second}
	if _, err := c.Scan(context.Background(), []byte("x")); !errors.Is(err, policy.ErrScan) {
		t.Fatalf("Scan with clamd down = %v, want ErrScan", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, policy.ErrScan) {
		t.Fatalf("Ping with clamd down = %v, want ErrScan", err)
	}
}

func TestParseClamdAddr(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr string
		bad               bool
	}{
		{in: "unix:/run/clamav/clamd.ctl", network: "unix", addr: "/run/clamav/clamd.ctl"},
		{in: "/run/clamav/clamd.ctl", network: "unix", addr: "/run/clamav/clamd.ctl"},
		{in: "tcp:127.0.0.1:3310", network: "tcp", addr: "127.0.0.1:3310"},
		{in: "localhost:3310", network: "tcp", addr: "localhost:3310"},
		{in: "unix:", bad: true},
		{in: "tcp:nohost", bad: true},
	} {
		n, a, err := policy.ParseClamdAddr(tc.in)
		if tc.bad != (err != nil) || !tc.bad && (n != tc.network || a != tc.addr) {
			t.Errorf("ParseClamdAddr(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
}
