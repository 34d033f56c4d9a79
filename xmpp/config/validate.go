package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// Bounds checked by Validate.
const (
	MinSCRAMIterations = 4096
	MaxSCRAMIterations = 10_000_000
	MinAttempts        = 1
	MaxAttempts        = 10
	MinStanzaBytes     = 10000 // RFC 6120 §13.12
	MinDepth           = 8
	MaxDepth           = 1024
	MaxSMResumeTimeout = 24 * time.Hour
	MaxSMUnacked       = 100_000
	MaxCSIHeld         = 10_000
)

// normalize replaces every host that is a valid domain by its canonical
// (lowercase, Unicode) form. Invalid hosts are left for Validate to report.
func (c *Config) normalize() {
	for i, h := range c.Hosts {
		if j, err := jid.New("", h, ""); err == nil {
			c.Hosts[i] = j.Domainpart()
		}
	}
}

// Validate checks every value and returns all problems found, joined with
// errors.Join; each is an *Error wrapping ErrInvalid whose message starts
// with the key path ("c2s.listen[0]: ..."). It does not modify c.
func (c *Config) Validate() error {
	errs := c.validate()
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

type checker struct{ errs []*Error }

func (v *checker) fail(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{Path: path, Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)})
}

func (v *checker) oneOf(path, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.fail(path, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

func (v *checker) positive(path string, d Duration) {
	if d <= 0 {
		v.fail(path, "must be a positive duration such as \"30s\", got %s", time.Duration(d))
	}
}

func (v *checker) between(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.fail(path, "must be between %d and %d, got %d", lo, hi, n)
	}
}

func (v *checker) atLeast(path string, n, lo int) {
	if n < lo {
		v.fail(path, "must be at least %d, got %d", lo, n)
	}
}

func (c *Config) validate() []*Error {
	v := &checker{}
	c.Archive.validate(v)
	c.Components.validate(v)
	c.S2S.validate(v)
	c.Policy.validate(v)
	c.MAM.validate(v)
	c.MUC.validate(v, c)
	c.PubSub.validate(v, c.Hosts)
	c.Upload.validate(v, c.Hosts)
	c.Web.validate(v)
	c.Push.validate(v)
	validateExternalServices(v, c.ExternalServices)
	c.Adhoc.validate(v)
	c.Register.validate(v)
	c.Admin.validate(v)
	c.Metrics.validate(v)
	c.Directory.validate(v)

	if len(c.Hosts) == 0 {
		v.fail("hosts", "at least one host is required")
	}
	seenHost := make(map[string]int, len(c.Hosts))
	for i, h := range c.Hosts {
		p := fmt.Sprintf("hosts[%d]", i)
		j, err := jid.New("", h, "")
		switch {
		case err != nil:
			v.fail(p, "%q is not a valid domain name: %v", h, err)
			continue
		case j.Domainpart() != h:
			v.fail(p, "%q is not in canonical form; write %q", h, j.Domainpart())
			continue
		case strings.HasPrefix(h, ".") || strings.Contains(h, ".."):
			v.fail(p, "%q is not a valid domain name: empty label", h)
			continue
		}
		if first, dup := seenHost[h]; dup {
			v.fail(p, "%q is already listed as hosts[%d]", h, first)
			continue
		}
		seenHost[h] = i
	}

	if strings.TrimSpace(c.DataDir) == "" {
		v.fail("data_dir", "must not be empty")
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	switch {
	case c.TLS.CertFile != "" && c.TLS.KeyFile == "":
		v.fail("tls.key_file", "must be set when tls.cert_file is set")
	case c.TLS.CertFile == "" && c.TLS.KeyFile != "":
		v.fail("tls.cert_file", "must be set when tls.key_file is set")
	}
	v.oneOf("tls.min_version", c.TLS.MinVersion, "1.2", "1.3")

	if len(c.C2S.Listen) == 0 && len(c.C2S.ListenTLS) == 0 {
		v.fail("c2s.listen", "no listeners: c2s.listen and c2s.listen_tls are both empty")
	}
	seenAddr := make(map[string]string)
	checkAddrs := func(key string, addrs []string) {
		for i, a := range addrs {
			p := fmt.Sprintf("%s[%d]", key, i)
			if err := checkListenAddr(a); err != nil {
				v.fail(p, "%q: %v", a, err)
				continue
			}
			// Port 0 asks the kernel for a free port, so it never clashes.
			if strings.HasSuffix(a, ":0") {
				continue
			}
			if other, dup := seenAddr[a]; dup {
				v.fail(p, "%q is already used by %s", a, other)
				continue
			}
			seenAddr[a] = p
		}
	}
	checkAddrs("c2s.listen", c.C2S.Listen)
	checkAddrs("c2s.listen_tls", c.C2S.ListenTLS)
	v.oneOf("c2s.resource_conflict", c.C2S.ResourceConflict, "replace", "refuse", "rename")
	v.positive("c2s.handshake_timeout", c.C2S.HandshakeTimeout)
	v.positive("c2s.ping_interval", c.C2S.PingInterval)
	v.positive("c2s.idle_timeout", c.C2S.IdleTimeout)
	v.positive("c2s.keepalive_interval", c.C2S.KeepaliveInterval)
	v.atLeast("c2s.max_connections_per_ip", c.C2S.MaxConnectionsPerIP, 0)
	if d := c.C2S.SMResumeTimeout; d < 0 || d > Duration(MaxSMResumeTimeout) {
		v.fail("c2s.sm_resume_timeout", "must be between 0s and %s, got %s", MaxSMResumeTimeout, time.Duration(d))
	}
	v.between("c2s.sm_max_unacked", c.C2S.SMMaxUnacked, 1, MaxSMUnacked)
	v.between("c2s.sm_request_every", c.C2S.SMRequestEvery, 1, c.C2S.SMMaxUnacked)
	v.between("c2s.csi_max_held", c.C2S.CSIMaxHeld, 1, MaxCSIHeld)

	v.between("auth.scram_iterations", c.Auth.SCRAMIterations, MinSCRAMIterations, MaxSCRAMIterations)
	v.between("auth.max_attempts", c.Auth.MaxAttempts, MinAttempts, MaxAttempts)
	if t := c.Auth.Throttle; t.Free < 0 {
		v.fail("auth.throttle.free", "must be 0 (off) or more, got %d", t.Free)
	} else if t.Free > 0 {
		v.positive("auth.throttle.base", t.Base)
		v.positive("auth.throttle.forget", t.Forget)
		if t.Max < t.Base {
			v.fail("auth.throttle.max", "must be at least auth.throttle.base (%s), got %s", t.Base, t.Max)
		}
	}

	v.atLeast("limits.max_stanza_bytes", c.Limits.MaxStanzaBytes, MinStanzaBytes)
	v.between("limits.max_depth", c.Limits.MaxDepth, MinDepth, MaxDepth)
	v.atLeast("limits.send_queue", c.Limits.SendQueue, 1)
	if c.Limits.SendQueueBytes < c.Limits.MaxStanzaBytes {
		v.fail("limits.send_queue_bytes", "must be at least limits.max_stanza_bytes (%d), got %d",
			c.Limits.MaxStanzaBytes, c.Limits.SendQueueBytes)
	}

	v.atLeast("offline.max_per_user", c.Offline.MaxPerUser, 0)

	if strings.TrimSpace(c.Server.Name) == "" {
		v.fail("server.name", "must not be empty")
	}
	return v.errs
}

// checkListenAddr accepts "host:port", "[v6]:port" and ":port" with a
// numeric port (0 picks a free port).
func checkListenAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if port == "" {
		return errors.New("missing port number")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number between 0 and 65535", port)
	}
	return nil
}
