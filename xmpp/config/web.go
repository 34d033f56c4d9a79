package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// Web configures the HTTPS listener for client streams over WebSocket
// (RFC 7395, xmpp/websocket) and XEP-0156 host-meta discovery.
type Web struct {
	// Enabled binds Listen. Default false: it needs a port of its own.
	Enabled bool `yaml:"enabled"`
	// Listen is the HTTPS listener's address; default "127.0.0.1:5281".
	// It serves the server's TLS certificate (tls section).
	Listen string `yaml:"listen"`
	// PublicURL is the base URL clients reach the listener at, e.g.
	// "https://chat.example.com" behind a reverse proxy; host-meta
	// advertises PublicURL + WebSocketPath with the wss scheme. "" derives
	// it from each request's Host header and the port of Listen.
	PublicURL string `yaml:"public_url"`
	// WebSocketPath is the WebSocket endpoint; default "/xmpp-websocket".
	WebSocketPath string `yaml:"websocket_path"`
	// Origins are the browser origins (host patterns such as
	// "chat.example.com" or "*.example.com") allowed to open a WebSocket
	// besides the listener's own host; native clients send no Origin and
	// are always allowed. Default none.
	Origins []string `yaml:"origins"`
}

func webDefaults() Web {
	return Web{Listen: "127.0.0.1:5281", WebSocketPath: "/xmpp-websocket", Origins: []string{}}
}

func (c *Web) validate(v *checker) {
	if c.Enabled {
		if err := checkListenAddr(c.Listen); err != nil {
			v.fail("web.listen", "%v", err)
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil:
			v.fail("web.public_url", "not a URL: %v", err)
		case u.Scheme != "https":
			v.fail("web.public_url", "%q must start with https://", c.PublicURL)
		case u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
			v.fail("web.public_url", "%q must be https://host[:port] without path, query or fragment", c.PublicURL)
		}
	}
	if !strings.HasPrefix(c.WebSocketPath, "/") || strings.HasPrefix(c.WebSocketPath, "/.well-known/") {
		v.fail("web.websocket_path", "%q must start with / and not be under /.well-known/", c.WebSocketPath)
	}
	for i, o := range c.Origins {
		if strings.TrimSpace(o) == "" || strings.Contains(o, "://") {
			v.fail(fmt.Sprintf("web.origins[%d]", i), "%q must be a host pattern such as chat.example.com, without scheme", o)
		}
	}
}

// Push configures XEP-0357 push notifications (xmpp/mod/push).
type Push struct {
	// Enabled lets clients register app servers; default true.
	Enabled bool `yaml:"enabled"`
	// MaxPerUser bounds the registrations one account may have; the
	// oldest is replaced. Default 10, range 1..100.
	MaxPerUser int `yaml:"max_per_user"`
	// IncludeBody puts the message body and sender in the notification's
	// summary form. Default false: the app server (and the phone vendor's
	// push service behind it) then sees only that something arrived.
	IncludeBody bool `yaml:"include_body"`
	// File is the registrations database, relative to data_dir unless
	// absolute. Default "push.db".
	File string `yaml:"file"`
}

func pushDefaults() Push { return Push{Enabled: true, MaxPerUser: 10, File: "push.db"} }

func (c *Push) validate(v *checker) {
	v.between("push.max_per_user", c.MaxPerUser, 1, 100)
	if strings.TrimSpace(c.File) == "" {
		v.fail("push.file", "must name a file, such as \"push.db\"")
	}
}

// ExternalService is one XEP-0215 entry (a STUN or TURN server ...).
type ExternalService struct {
	Type      string `yaml:"type"`      // stun, turn, turns ...
	Host      string `yaml:"host"`      // host name or address
	Port      int    `yaml:"port"`      // 1..65535
	Transport string `yaml:"transport"` // udp or tcp; "" leaves it out
	Name      string `yaml:"name"`      // shown to users; optional
	// Username and Password are fixed credentials; or Secret, for the
	// TURN REST scheme (coturn's use-auth-secret): each request gets a
	// username "expiry:user" and an HMAC-SHA1 password valid for TTL.
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	Secret   string   `yaml:"secret"`
	TTL      Duration `yaml:"ttl"` // lifetime of Secret credentials; default 24h
}

// Adhoc configures XEP-0050 ad-hoc commands (xmpp/mod/adhoc).
type Adhoc struct {
	// Admins are the bare JIDs allowed to run the admin commands
	// (XEP-0133 subset: online users, user count, announce, lock and
	// unlock an account). Default none.
	Admins []string `yaml:"admins"`
}

func (c *Adhoc) validate(v *checker) {
	for i, a := range c.Admins {
		j, err := jid.Parse(a)
		if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
			v.fail(fmt.Sprintf("adhoc.admins[%d]", i), "%q must be a bare JID user@domain", a)
		}
	}
}

// Register configures XEP-0077 in-band registration (xmpp/mod/register).
type Register struct {
	// Enabled lets anyone create an account over XMPP. Default false.
	// Password changes by logged-in users are allowed either way.
	Enabled bool `yaml:"enabled"`
	// MaxPerIP accounts may be created from one address per Window.
	// Defaults 3 per 1h.
	MaxPerIP int      `yaml:"max_per_ip"`
	Window   Duration `yaml:"window"`
	// MinPasswordLength applies to new accounts and changed passwords;
	// default 8.
	MinPasswordLength int `yaml:"min_password_length"`
}

func registerDefaults() Register {
	return Register{MaxPerIP: 3, Window: Duration(time.Hour), MinPasswordLength: 8}
}

func (c *Register) validate(v *checker) {
	v.between("register.max_per_ip", c.MaxPerIP, 1, 1000)
	if c.Window < Duration(time.Second) || c.Window > Duration(7*24*time.Hour) {
		v.fail("register.window", "must be between 1s and 168h, got %s", time.Duration(c.Window))
	}
	v.between("register.min_password_length", c.MinPasswordLength, 1, 1024)
}

func validateExternalServices(v *checker, list []ExternalService) {
	for i, s := range list {
		k := fmt.Sprintf("external_services[%d]", i)
		if strings.TrimSpace(s.Type) == "" {
			v.fail(k+".type", "must be set (stun, turn, turns ...)")
		}
		if strings.TrimSpace(s.Host) == "" {
			v.fail(k+".host", "must be set")
		}
		if s.Port < 1 || s.Port > 65535 {
			v.fail(k+".port", "must be between 1 and 65535, got %d", s.Port)
		}
		switch s.Transport {
		case "", "udp", "tcp":
		default:
			v.fail(k+".transport", "must be udp or tcp, got %q", s.Transport)
		}
		if s.Secret != "" && (s.Username != "" || s.Password != "") {
			v.fail(k+".secret", "set either secret or username/password, not both")
		}
		if s.TTL < 0 {
			v.fail(k+".ttl", "must not be negative")
		}
	}
}
