package config

import (
	"net"
	"path/filepath"
)

// Admin configures the admin API (xmpp/admin) that the gatehouse CLI uses
// against a running server.
type Admin struct {
	// Socket is the unix socket of the admin API, relative to data_dir
	// unless absolute; mode 0600, and only the server's own user (or root)
	// is served. Default "admin.sock". Empty turns the admin API off.
	Socket string `yaml:"socket"`
	// HTTPListen is an optional loopback address ("127.0.0.1:5280") that
	// serves the same API over HTTP to automation holding the token.
	// Default empty (off). Only loopback addresses are accepted.
	HTTPListen string `yaml:"http_listen"`
	// TokenFile holds the bearer token for HTTPListen (one line, 32+
	// characters); required when HTTPListen is set.
	TokenFile string `yaml:"token_file"`
}

func adminDefaults() Admin { return Admin{Socket: "admin.sock"} }

// AdminSocketPath returns the admin socket's path ("" when the API is off).
func (c *Config) AdminSocketPath() string {
	p := c.Admin.Socket
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

func (c *Admin) validate(v *checker) {
	if c.HTTPListen == "" {
		return
	}
	host, _, err := net.SplitHostPort(c.HTTPListen)
	ip := net.ParseIP(host)
	switch {
	case err != nil:
		v.fail("admin.http_listen", "must be host:port, got %q", c.HTTPListen)
	case host != "localhost" && (ip == nil || !ip.IsLoopback()):
		v.fail("admin.http_listen", "must be a loopback address (127.0.0.1 or [::1]); put a TLS proxy in front for anything else, got %q", c.HTTPListen)
	}
	if c.TokenFile == "" {
		v.fail("admin.token_file", "is required when admin.http_listen is set")
	}
}

// Metrics configures the Prometheus endpoint (logging/metrics).
type Metrics struct {
	// Listen is the loopback address serving /metrics, e.g.
	// "127.0.0.1:9570". Default empty (off).
	Listen string `yaml:"listen"`
}

func (c *Metrics) validate(v *checker) {
	if c.Listen == "" {
		return
	}
	host, _, err := net.SplitHostPort(c.Listen)
	ip := net.ParseIP(host)
	switch {
	case err != nil:
		v.fail("metrics.listen", "must be host:port, got %q", c.Listen)
	case host != "localhost" && (ip == nil || !ip.IsLoopback()):
		v.fail("metrics.listen", "must be a loopback address (127.0.0.1 or [::1]); scrape through a proxy or an SSH tunnel, got %q", c.Listen)
	}
}
