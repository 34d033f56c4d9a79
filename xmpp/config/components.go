package config

import (
	"fmt"
	"net"
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
	// Privileges are the XEP-0356 permissions the server grants the
	// component (Slidge and Spectrum 2 use them); default none.
	Privileges Privileges `yaml:"privileges"`
	// Builtin names a transport the server runs itself and connects to its
	// own component listener: "irc" (transports/irc). Secret and
	// SecretFile are optional then (a random secret is made at start).
	Builtin string `yaml:"builtin"`
	// Networks are the IRC networks users of a builtin irc transport may
	// register with.
	Networks []IRCNetwork `yaml:"networks"`
	// PresencePoll is how often a builtin irc transport asks ISON for its
	// users' contacts on networks without MONITOR; default 30s.
	PresencePoll Duration `yaml:"presence_poll"`
}

// Privileges are a component's XEP-0356 permissions.
type Privileges struct {
	// Roster: none, get, set or both. Only items in the component's own
	// domain are ever shown or changed.
	Roster string `yaml:"roster"`
	// Message: none or outgoing (send messages on behalf of users, which
	// come back to them as "sent" carbons).
	Message string `yaml:"message"`
	// Presence: none or managed_entity (a copy of every user's presence).
	Presence string `yaml:"presence"`
	// Version of the protocol the component speaks: 2
	// (urn:xmpp:privilege:2, Slidge; the default) or 1 (Spectrum 2).
	Version int `yaml:"version"`
}

// IRCNetwork is an IRC network a builtin irc transport may connect to.
type IRCNetwork struct {
	// Name identifies the network in addresses (nick%name@domain).
	Name string `yaml:"name"`
	// Address is host:port of the IRC server.
	Address string `yaml:"address"`
	// TLS connects with TLS (the usual port is 6697).
	TLS bool `yaml:"tls"`
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
		t.validateExtras(v, p)
		switch {
		case t.Secret == "" && t.SecretFile == "" && t.Builtin != "":
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

// validateExtras checks the privileges and the builtin transport settings.
func (t *Component) validateExtras(v *checker, p string) {
	oneOf := func(key, val string, ok ...string) {
		if val == "" {
			return
		}
		for _, o := range ok {
			if val == o {
				return
			}
		}
		v.fail(p+".privileges."+key, "%q is not one of %s", val, strings.Join(ok, ", "))
	}
	oneOf("roster", t.Privileges.Roster, "none", "get", "set", "both")
	oneOf("message", t.Privileges.Message, "none", "outgoing")
	oneOf("presence", t.Privileges.Presence, "none", "managed_entity")
	if ver := t.Privileges.Version; ver != 0 && ver != 1 && ver != 2 {
		v.fail(p+".privileges.version", "%d: must be 1 or 2", ver)
	}
	switch t.Builtin {
	case "":
		if len(t.Networks) > 0 {
			v.fail(p+".networks", "only a builtin irc transport has networks")
		}
		return
	case "irc":
	default:
		v.fail(p+".builtin", "%q: the only builtin transport is irc", t.Builtin)
		return
	}
	if t.PresencePoll < 0 {
		v.fail(p+".presence_poll", "must not be negative")
	}
	if len(t.Networks) == 0 {
		v.fail(p+".networks", "a builtin irc transport needs at least one network")
	}
	seen := map[string]bool{}
	for i, n := range t.Networks {
		np := fmt.Sprintf("%s.networks[%d]", p, i)
		if !isToken(n.Name) {
			v.fail(np+".name", "%q must be a lowercase token such as libera", n.Name)
		} else if seen[n.Name] {
			v.fail(np+".name", "%q is listed twice", n.Name)
		}
		seen[n.Name] = true
		if host, port, err := net.SplitHostPort(n.Address); err != nil || host == "" || port == "" {
			v.fail(np+".address", "%q must be host:port", n.Address)
		}
	}
}
