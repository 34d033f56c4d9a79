package config

import (
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// MinComponentSecret is the shortest inline component secret accepted. The
// XEP-0114 handshake sends SHA-1(stream id + secret) in clear text, so
// anyone who sees one handshake can try guesses offline: a short secret
// would not survive that.
const MinComponentSecret = 16

// Components configures the XEP-0114 component host (transports/component):
// external gateways such as biboumi, Slidge or Spectrum 2 connect to it and
// serve a domain of their own. Every such domain is in the transport zone:
// its traffic crosses the company border and passes the boundary.
type Components struct {
	// Listen are the component listeners, default ["127.0.0.1:5347"].
	// Nothing is bound while Transports is empty. The protocol has no
	// encryption: keep these on loopback or a private network.
	Listen []string `yaml:"listen"`
	// HandshakeTimeout runs from TCP accept to a successful handshake;
	// default 10s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// PingInterval is the idle time after which the server pings a
	// component (XEP-0199); default 2m.
	PingInterval Duration `yaml:"ping_interval"`
	// IdleTimeout is the time a component has to send anything after that
	// ping before its stream is closed with connection-timeout; default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Transports are the components allowed to connect; default none.
	Transports []Component `yaml:"transports"`
}

// Component is one external component (a transport) and its credentials.
type Component struct {
	// Domain is the component's domain (the 'to' of its stream header).
	Domain string `yaml:"domain"`
	// Secret is the shared secret of the handshake, at least
	// MinComponentSecret bytes. Exactly one of Secret and SecretFile is set.
	Secret string `yaml:"secret"`
	// SecretFile names a file holding the secret (one line; the trailing
	// newline is ignored). The server reads it at start-up.
	SecretFile string `yaml:"secret_file"`
	// Name and Type describe the transport in service discovery: the
	// identity gateway/<type> (XEP-0100), e.g. type "irc". The server
	// answers disco#info with them while the component is not connected.
	Name string `yaml:"name"`
	Type string `yaml:"type"`
}

// componentsDefaults returns the component host defaults.
func componentsDefaults() Components {
	return Components{
		Listen:           []string{"127.0.0.1:5347"},
		HandshakeTimeout: Duration(10 * time.Second),
		PingInterval:     Duration(2 * time.Minute),
		IdleTimeout:      Duration(60 * time.Second),
		// Empty, not nil: default.yaml says "transports: []", and the
		// parsed default must equal this value.
		Transports: []Component{},
	}
}

// validate checks the components section.
func (c *Components) validate(v *checker) {
	seenAddr := make(map[string]string)
	for i, a := range c.Listen {
		p := fmt.Sprintf("components.listen[%d]", i)
		if err := checkListenAddr(a); err != nil {
			v.fail(p, "%q: %v", a, err)
			continue
		}
		if other, dup := seenAddr[a]; dup && !strings.HasSuffix(a, ":0") {
			v.fail(p, "%q is already used by %s", a, other)
			continue
		}
		seenAddr[a] = p
	}
	if len(c.Transports) > 0 && len(c.Listen) == 0 {
		v.fail("components.listen", "no listeners, but components.transports lists %d component(s)", len(c.Transports))
	}
	v.positive("components.handshake_timeout", c.HandshakeTimeout)
	v.positive("components.ping_interval", c.PingInterval)
	v.positive("components.idle_timeout", c.IdleTimeout)

	seen := make(map[string]int, len(c.Transports))
	for i, t := range c.Transports {
		p := fmt.Sprintf("components.transports[%d]", i)
		if d, ok := checkComponentDomain(v, p+".domain", t.Domain); ok {
			if first, dup := seen[d]; dup {
				v.fail(p+".domain", "%q is already listed as components.transports[%d]", d, first)
			}
			seen[d] = i
		}
		switch {
		case t.Secret == "" && t.SecretFile == "":
			v.fail(p+".secret", "set secret or secret_file")
		case t.Secret != "" && t.SecretFile != "":
			v.fail(p+".secret_file", "set secret or secret_file, not both")
		case t.Secret != "" && len(t.Secret) < MinComponentSecret:
			v.fail(p+".secret", "must be at least %d characters (try: openssl rand -hex 32)", MinComponentSecret)
		case t.SecretFile != "" && strings.TrimSpace(t.SecretFile) != t.SecretFile:
			v.fail(p+".secret_file", "%q has leading or trailing spaces", t.SecretFile)
		}
		if t.Type != "" && !isToken(t.Type) {
			v.fail(p+".type", "%q must be a lowercase token such as irc or telegram (XEP-0100 gateway type)", t.Type)
		}
	}
}

// checkComponentDomain validates a component domain: a bare, canonical
// domain name (a component serves a whole domain, never an address in one).
func checkComponentDomain(v *checker, path, d string) (string, bool) {
	if d == "" {
		v.fail(path, "must not be empty")
		return "", false
	}
	j, err := jid.Parse(d)
	switch {
	case err != nil:
		v.fail(path, "%q is not a valid domain name: %v", d, err)
		return "", false
	case j.Localpart() != "" || j.Resourcepart() != "":
		v.fail(path, "%q must be a domain name, not an address", d)
		return "", false
	case j.Domainpart() != d:
		v.fail(path, "%q is not in canonical form; write %q", d, j.Domainpart())
		return "", false
	case strings.HasPrefix(d, ".") || strings.Contains(d, ".."):
		v.fail(path, "%q is not a valid domain name: empty label", d)
		return "", false
	}
	return d, true
}

func isToken(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s != ""
}
