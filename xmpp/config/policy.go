package config

import (
	"net"
	"strings"
	"time"
)

// Policy configures boundary policy (policy/). The rules themselves live
// in their own file (policy.file, docs/policy.md), which SIGHUP and
// `gatehouse policy reload` re-read; this section says where it is and
// how the server reaches what the rules need.
type Policy struct {
	// File is the policy file. Empty: no policy, every crossing is
	// allowed (and still archived). A relative path is relative to the
	// working directory of the server process.
	File string `yaml:"file"`
	// Clamd is the ClamAV daemon for virus scanning: "unix:/path",
	// "/path" (a unix socket) or "tcp:host:port". Empty: no scanner; a
	// policy that enables scanning is then refused.
	Clamd string `yaml:"clamd"`
	// ClamdTimeout bounds one scan, connecting included; default 30s.
	ClamdTimeout Duration `yaml:"clamd_timeout"`
	// OnScanFailure is what happens to a file that cannot be scanned
	// (clamd down, timeout, too large for clamd): deny (default, fail
	// closed) or allow.
	OnScanFailure string `yaml:"on_scan_failure"`
	// ScanMaxBytes: an in-band bytestream is scanned as a whole up to this
	// size, beyond it chunk by chunk with the previous 64 KiB; default
	// 1 MiB.
	ScanMaxBytes int `yaml:"scan_max_bytes"`
	// DirectoryRefresh is how often group memberships are re-read from
	// the database, so `gatehouse group add` takes effect without a
	// reload; default 10s.
	DirectoryRefresh Duration `yaml:"directory_refresh"`
	// MaxTransfers bounds the in-band bytestreams followed at once (for
	// size limits and scanning); default 1024.
	MaxTransfers int `yaml:"max_transfers"`
	// ReviewTimeout is how long a message held for review (action hold)
	// waits for a reviewer; default 72h. Then ReviewTimeoutAction decides.
	ReviewTimeout Duration `yaml:"review_timeout"`
	// ReviewTimeoutAction is what happens to a held message nobody
	// decided on in time: reject (default: the sender gets an error) or
	// release (it is delivered).
	ReviewTimeoutAction string `yaml:"review_timeout_action"`
	// ReviewPoll is how often the server picks up reviewers' decisions
	// (`gatehouse review release|reject`) from the queue; default 2s.
	ReviewPoll Duration `yaml:"review_poll"`
	// ScanLinks lets the server fetch files behind http(s) links that
	// cross (OOB, SFS, other servers' uploads) so that a policy with
	// scan.links can scan them: up to scan_max_bytes, within
	// clamd_timeout. Default false.
	ScanLinks bool `yaml:"scan_links"`
	// ScanLinksPrivate also fetches links to private and loopback
	// addresses, which are refused by default (the fetcher must not be a
	// way into the company network). Default false.
	ScanLinksPrivate bool `yaml:"scan_links_private"`
}

// policyDefaults returns the defaults of the policy section.
func policyDefaults() Policy {
	return Policy{
		ClamdTimeout:     Duration(30 * time.Second),
		OnScanFailure:    "deny",
		ScanMaxBytes:     1 << 20,
		DirectoryRefresh: Duration(10 * time.Second),
		MaxTransfers:     1024,

		ReviewTimeout:       Duration(72 * time.Hour),
		ReviewTimeoutAction: "reject",
		ReviewPoll:          Duration(2 * time.Second),
	}
}

// validate checks the policy section. The policy file itself is read and
// checked by the server (this package reads no other file).
func (c *Policy) validate(v *checker) {
	if c.File != "" && strings.TrimSpace(c.File) != c.File {
		v.fail("policy.file", "%q has leading or trailing spaces", c.File)
	}
	if c.Clamd != "" {
		if err := checkClamd(c.Clamd); err != "" {
			v.fail("policy.clamd", "%q: %s", c.Clamd, err)
		}
	}
	v.positive("policy.clamd_timeout", c.ClamdTimeout)
	v.oneOf("policy.on_scan_failure", c.OnScanFailure, "deny", "allow")
	v.between("policy.scan_max_bytes", c.ScanMaxBytes, 4096, 256<<20)
	if c.DirectoryRefresh < 0 {
		v.fail("policy.directory_refresh", "must not be negative, got %s", c.DirectoryRefresh)
	}
	v.between("policy.max_transfers", c.MaxTransfers, 1, 1_000_000)
	v.positive("policy.review_timeout", c.ReviewTimeout)
	v.oneOf("policy.review_timeout_action", c.ReviewTimeoutAction, "reject", "release")
	v.positive("policy.review_poll", c.ReviewPoll)
}

// checkClamd accepts unix:/path, /path, tcp:host:port and host:port.
func checkClamd(s string) string {
	switch {
	case strings.HasPrefix(s, "unix:"):
		if !strings.HasPrefix(strings.TrimPrefix(s, "unix:"), "/") {
			return "a unix socket needs an absolute path (unix:/run/clamav/clamd.ctl)"
		}
		return ""
	case strings.HasPrefix(s, "/"):
		return ""
	}
	addr := strings.TrimPrefix(s, "tcp:")
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return "not unix:/path or tcp:host:port"
	}
	return ""
}
