package config

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// Federation modes (s2s.mode).
const (
	// FederationOpen federates with every domain; the lists are ignored.
	FederationOpen = "open"
	// FederationAllowlist federates only with listed domains.
	FederationAllowlist = "allowlist"
	// FederationDenylist federates with every domain but the listed ones.
	FederationDenylist = "denylist"
)

// MinDialbackSecret is the shortest configured dialback secret accepted: it
// keys every dialback key the server hands out (XEP-0185), so it must not be
// guessable.
const MinDialbackSecret = 16

// S2S configures federation with other XMPP servers (s2s/, RFC 6120
// server-to-server streams).
type S2S struct {
	// Enabled switches federation on. While false nothing is bound and
	// stanzas to other domains bounce with remote-server-not-found, as if
	// no remote server could be found. Default false.
	Enabled bool `yaml:"enabled"`
	// Listen are the STARTTLS listeners (RFC 6120, port 5269), default
	// ["127.0.0.1:5269"]: loopback, so a default install never accepts
	// peers from the network until the operator opens it.
	Listen []string `yaml:"listen"`
	// ListenTLS are the direct TLS listeners (XEP-0368, ALPN
	// "xmpp-server"), default ["127.0.0.1:5270"].
	ListenTLS []string `yaml:"listen_tls"`
	// RequireTLS refuses streams (both ways) that are not encrypted.
	// Default true.
	RequireTLS bool `yaml:"require_tls"`
	// RequireVerifiedCerts refuses peers whose certificate does not verify
	// (PKIX and RFC 6125 identity): no dialback fallback. Default false.
	RequireVerifiedCerts bool `yaml:"require_verified_certs"`
	// CAFile is a PEM file of certificate authorities trusted for peers'
	// certificates in addition to the system roots. Default "".
	CAFile string `yaml:"ca_file"`
	// Routes maps a remote domain to "host:port" (STARTTLS) or
	// "tls://host:port" (direct TLS), bypassing DNS: private peering and
	// tests. Default empty.
	Routes map[string]string `yaml:"routes"`
	// Mode is open, allowlist (default) or denylist.
	Mode string `yaml:"mode"`
	// Allow and Deny are the domain lists of the mode. An entry
	// "*.example.com" covers every subdomain of example.com (not
	// example.com itself). Entries made with `gatehouse federation
	// allow|deny` (stored in <data_dir>/federation.db) take precedence.
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
	// Bidi offers and uses XEP-0288 bidirectional streams. Default true.
	Bidi bool `yaml:"bidi"`
	// ConnectTimeout bounds one outbound connection attempt: resolution,
	// TCP, TLS and authentication. Default 30s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// HandshakeTimeout bounds an inbound stream from accept to its first
	// authenticated domain (or answered dialback verification). Default 30s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// QueueTimeout is how long a stanza waits for a link to come up
	// (reconnecting with backoff meanwhile) before it bounces with
	// remote-server-not-found or remote-server-timeout. Default 60s.
	QueueTimeout Duration `yaml:"queue_timeout"`
	// QueueSize is the number of stanzas waiting per (local, remote)
	// domain pair while its link comes up; beyond it they bounce with
	// resource-constraint. Default 1000.
	QueueSize int `yaml:"queue_size"`
	// IdleTimeout closes a link that carried no stanza for this long.
	// Default 10m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxInbound bounds simultaneous inbound s2s connections; 0 is
	// unlimited. Default 1000.
	MaxInbound int `yaml:"max_inbound"`
	// RateLimit is the sustained number of stanzas per second read from
	// one inbound stream; a faster peer is slowed down (its stream is read
	// more slowly), not disconnected. 0 is unlimited. Default 500.
	RateLimit int `yaml:"rate_limit"`
	// DialbackSecret keys Server Dialback (XEP-0185): at least 16
	// characters; servers of one cluster must share it. Empty (default):
	// a random secret is generated once in <data_dir>/dialback-secret.
	DialbackSecret string `yaml:"dialback_secret"`
}

// s2sDefaults returns the defaults of the s2s section.
func s2sDefaults() S2S {
	return S2S{
		Enabled:          false,
		Listen:           []string{"127.0.0.1:5269"},
		ListenTLS:        []string{"127.0.0.1:5270"},
		RequireTLS:       true,
		Routes:           map[string]string{},
		Mode:             FederationAllowlist,
		Allow:            []string{},
		Deny:             []string{},
		Bidi:             true,
		ConnectTimeout:   Duration(30 * time.Second),
		HandshakeTimeout: Duration(30 * time.Second),
		QueueTimeout:     Duration(60 * time.Second),
		QueueSize:        1000,
		IdleTimeout:      Duration(10 * time.Minute),
		MaxInbound:       1000,
		RateLimit:        500,
	}
}

// NormalizeDomain returns the canonical form of a federation domain or a
// "*.domain" list entry, or an error saying what is wrong with it.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSpace(d)
	wild := strings.HasPrefix(d, "*.")
	if wild {
		d = d[2:]
	}
	d = strings.TrimSuffix(d, ".")
	j, err := jid.New("", d, "")
	switch {
	case err != nil:
		return "", fmt.Errorf("%q is not a valid domain name: %w", d, err)
	case d == "" || strings.HasPrefix(d, ".") || strings.Contains(d, ".."):
		return "", fmt.Errorf("%q is not a valid domain name: empty label", d)
	}
	out := j.Domainpart()
	if wild {
		out = "*." + out
	}
	return out, nil
}

// RouteTarget splits a routes value into host:port and whether it is
// direct TLS ("tls://host:port").
func RouteTarget(v string) (addr string, directTLS bool, err error) {
	addr, directTLS = strings.CutPrefix(v, "tls://")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, err
	}
	if host == "" {
		return "", false, fmt.Errorf("missing host")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", false, fmt.Errorf("port %q is not a number between 1 and 65535", port)
	}
	return addr, directTLS, nil
}

// validate checks the s2s section.
func (c *S2S) validate(v *checker) {
	seen := make(map[string]string)
	for _, l := range []struct {
		key   string
		addrs []string
	}{{"s2s.listen", c.Listen}, {"s2s.listen_tls", c.ListenTLS}} {
		for i, a := range l.addrs {
			p := fmt.Sprintf("%s[%d]", l.key, i)
			if err := checkListenAddr(a); err != nil {
				v.fail(p, "%q: %v", a, err)
				continue
			}
			if other, dup := seen[a]; dup && !strings.HasSuffix(a, ":0") {
				v.fail(p, "%q is already used by %s", a, other)
				continue
			}
			seen[a] = p
		}
	}
	if c.Enabled && len(c.Listen) == 0 && len(c.ListenTLS) == 0 {
		// Outbound-only federation cannot work: dialback peers call back.
		v.fail("s2s.listen", "federation is enabled but s2s.listen and s2s.listen_tls are both empty")
	}
	v.oneOf("s2s.mode", c.Mode, FederationOpen, FederationAllowlist, FederationDenylist)
	domains := make([]string, 0, len(c.Routes))
	for d := range c.Routes {
		domains = append(domains, d)
	}
	sort.Strings(domains) // errors in a stable order
	for _, d := range domains {
		p := "s2s.routes." + d
		n, err := NormalizeDomain(d)
		switch {
		case err != nil:
			v.fail(p, "%v", err)
			continue
		case strings.HasPrefix(n, "*."):
			v.fail(p, "a route names one domain; wildcards are not allowed")
			continue
		case n != d:
			v.fail(p, "%q is not in canonical form; write %q", d, n)
			continue
		}
		if _, _, err := RouteTarget(c.Routes[d]); err != nil {
			v.fail(p, "%q: want host:port or tls://host:port: %v", c.Routes[d], err)
		}
	}
	checkList := func(key string, list []string, other map[string]string) map[string]string {
		seen := make(map[string]string, len(list))
		for i, d := range list {
			p := fmt.Sprintf("%s[%d]", key, i)
			n, err := NormalizeDomain(d)
			switch {
			case err != nil:
				v.fail(p, "%v", err)
				continue
			case n != d:
				v.fail(p, "%q is not in canonical form; write %q", d, n)
				continue
			}
			if first, dup := seen[d]; dup {
				v.fail(p, "%q is already listed as %s", d, first)
				continue
			}
			if o, both := other[d]; both {
				v.fail(p, "%q is also listed in %s", d, o)
				continue
			}
			seen[d] = p
		}
		return seen
	}
	allow := checkList("s2s.allow", c.Allow, nil)
	checkList("s2s.deny", c.Deny, allow)
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"s2s.connect_timeout", c.ConnectTimeout}, {"s2s.handshake_timeout", c.HandshakeTimeout},
		{"s2s.queue_timeout", c.QueueTimeout}, {"s2s.idle_timeout", c.IdleTimeout},
	} {
		v.positive(d.key, d.val)
	}
	v.between("s2s.queue_size", c.QueueSize, 1, 1_000_000)
	v.atLeast("s2s.max_inbound", c.MaxInbound, 0)
	v.atLeast("s2s.rate_limit", c.RateLimit, 0)
	if c.DialbackSecret != "" && len(c.DialbackSecret) < MinDialbackSecret {
		v.fail("s2s.dialback_secret", "must be at least %d characters (or empty to generate one)", MinDialbackSecret)
	}
}
