// Package config loads and validates the Gatehouse server configuration.
//
// The configuration is a YAML document decoded strictly: unknown keys, wrong
// value types and YAML syntax errors are reported as *Error values that name
// the file and line. Defaults are filled in first (a key left out keeps its
// default), then Validate checks every value and reports each problem with
// its key path, for example "c2s.listen[0]: ...".
//
// The embedded default configuration (default.yaml, see DefaultYAML) is what
// `gatehouse serve` runs with when no file is given; it serves the domain
// "localhost".
//
// This package is a leaf: it must not import other gatehouse packages, and it
// does no I/O other than reading the file handed to Load.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Sentinel errors. Every error returned by Load, Parse and Validate wraps one
// of them (check with errors.Is).
var (
	// ErrSyntax: the file is not well-formed YAML.
	ErrSyntax = errors.New("config: syntax error")
	// ErrUnknownKey: a mapping key that is not part of the configuration.
	ErrUnknownKey = errors.New("config: unknown key")
	// ErrType: a value of the wrong type (a string where a number belongs,
	// a duration without a unit, a duplicated key ...).
	ErrType = errors.New("config: bad value")
	// ErrInvalid: a value that decodes but fails validation.
	ErrInvalid = errors.New("config: invalid value")
	// ErrRead: the file could not be read.
	ErrRead = errors.New("config: cannot read file")
)

// MaxFileSize is the largest configuration file Load accepts.
const MaxFileSize = 1 << 20

// Config is the whole server configuration.
type Config struct {
	Hosts      []string   `yaml:"hosts"`    // hosted domains; default ["localhost"]
	DataDir    string     `yaml:"data_dir"` // default "./data"; relative to the process cwd; --data overrides
	Log        Log        `yaml:"log"`
	TLS        TLS        `yaml:"tls"`
	C2S        C2S        `yaml:"c2s"`
	Auth       Auth       `yaml:"auth"`
	Limits     Limits     `yaml:"limits"`
	Offline    Offline    `yaml:"offline"`
	Server     ServerInfo `yaml:"server"`
	Archive    Archive    `yaml:"archive"`
	Components Components `yaml:"components"`
	S2S        S2S        `yaml:"s2s"`
	Policy     Policy     `yaml:"policy"`
	MAM        MAM        `yaml:"mam"`
	MUC        MUC        `yaml:"muc"`
	PubSub     PubSub     `yaml:"pubsub"`
	Upload     Upload     `yaml:"upload"`
	// Web, Push, ExternalServices, Adhoc and Register: see web.go.
	Web              Web               `yaml:"web"`
	Push             Push              `yaml:"push"`
	ExternalServices []ExternalService `yaml:"external_services"`
	Adhoc            Adhoc             `yaml:"adhoc"`
	Register         Register          `yaml:"register"`
	Admin            Admin             `yaml:"admin"`
	Metrics          Metrics           `yaml:"metrics"`
	Directory        Directory         `yaml:"directory"`
}

// Log configures operational logging.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error, default info
	Format string `yaml:"format"` // text|json, default text
	File   string `yaml:"file"`   // "" = stderr
}

// TLS configures the server certificate.
type TLS struct {
	// CertFile and KeyFile are PEM files. Both empty: a self-signed
	// certificate is generated in <data_dir>/tls/.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// C2S configures client-to-server connections.
type C2S struct {
	Listen    []string `yaml:"listen"`     // STARTTLS listeners, default ["127.0.0.1:5222"]
	ListenTLS []string `yaml:"listen_tls"` // direct TLS (XEP-0368), default ["127.0.0.1:5223"]
	// ResourceConflict is replace (default), refuse or rename
	// (RFC 6120 §7.7.2.2).
	ResourceConflict string `yaml:"resource_conflict"`
	// HandshakeTimeout runs from TCP accept to a bound resource; default 30s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// PingInterval is the idle time after which the server sends a
	// XEP-0199 ping; default 4m.
	PingInterval Duration `yaml:"ping_interval"`
	// IdleTimeout is the time allowed to answer that ping (any data counts)
	// before the stream is closed with connection-timeout; default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// KeepaliveInterval: a whitespace keepalive is sent when nothing was
	// written for this long; default 60s.
	KeepaliveInterval Duration `yaml:"keepalive_interval"`
	// MaxConnectionsPerIP: default 100; 0 = unlimited.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// SMEnabled offers stream management (XEP-0198); default true.
	SMEnabled bool `yaml:"sm_enabled"`
	// SMResumeTimeout is how long a session whose connection dropped is
	// kept for resumption; default 5m, at most 24h; 0 disables resumption.
	SMResumeTimeout Duration `yaml:"sm_resume_timeout"`
	// SMMaxUnacked: stanzas kept for a client that does not acknowledge
	// them before its session is ended; default 1000.
	SMMaxUnacked int `yaml:"sm_max_unacked"`
	// SMRequestEvery: the server asks for an acknowledgement once this
	// many stanzas are unacknowledged; default 5.
	SMRequestEvery int `yaml:"sm_request_every"`
	// CSIEnabled offers client state indication (XEP-0352); default true.
	CSIEnabled bool `yaml:"csi_enabled"`
	// CSIMaxHeld: presence and chat states held for an inactive client
	// before they are flushed anyway; default 100.
	CSIMaxHeld int `yaml:"csi_max_held"`
}

// Auth configures SASL authentication.
type Auth struct {
	SCRAMIterations int  `yaml:"scram_iterations"` // default 4096, min 4096
	AllowPlain      bool `yaml:"allow_plain"`      // default true (only ever offered over TLS)
	MaxAttempts     int  `yaml:"max_attempts"`     // default 3, range 1..10
	// Throttle slows password guessing per client address and per account
	// across connections (xmpp/auth/throttle).
	Throttle AuthThrottle `yaml:"throttle"`
}

// AuthThrottle is the back-off after failed logins: Free failures, then a
// delay of Base doubling per failure up to Max; forgotten after Forget
// without a failure. Free 0 turns it off.
type AuthThrottle struct {
	Free   int      `yaml:"free"`   // default 5
	Base   Duration `yaml:"base"`   // default 1s
	Max    Duration `yaml:"max"`    // default 5m
	Forget Duration `yaml:"forget"` // default 15m
}

// Limits bounds the resources one connection may use.
type Limits struct {
	MaxStanzaBytes int `yaml:"max_stanza_bytes"` // default 262144 (256 KiB), min 10000
	MaxDepth       int `yaml:"max_depth"`        // default 32 element nesting levels inside a stanza
	// SendQueue: stanzas queued to one connection before it is closed with
	// resource-constraint; default 2000.
	SendQueue      int `yaml:"send_queue"`
	SendQueueBytes int `yaml:"send_queue_bytes"` // default 8 MiB
}

// Offline configures offline message storage.
type Offline struct {
	MaxPerUser int `yaml:"max_per_user"` // default 1000; 0 disables offline storage
}

// ServerInfo configures what the server says about itself.
type ServerInfo struct {
	Name   string `yaml:"name"`    // XEP-0092 name, default "Gatehouse"
	HideOS bool   `yaml:"hide_os"` // leave the os element out of XEP-0092 replies
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns a copy of the embedded, commented default configuration.
func DefaultYAML() []byte {
	return append([]byte(nil), defaultYAML...)
}

// Default returns the parsed embedded default configuration. Each call
// returns a fresh value the caller may modify.
func Default() *Config {
	c, err := Parse(defaultYAML, "default.yaml")
	if err != nil {
		// The embedded file is tested; this is a build defect.
		panic("config: embedded default.yaml is invalid: " + err.Error())
	}
	return c
}

// defaults returns a Config holding every default value. It is what a
// document is decoded over, so that keys left out keep their default.
func defaults() *Config {
	return &Config{
		Hosts:   []string{"localhost"},
		DataDir: "./data",
		Log:     Log{Level: "info", Format: "text"},
		TLS:     TLS{MinVersion: "1.2"},
		C2S: C2S{
			Listen:              []string{"127.0.0.1:5222"},
			ListenTLS:           []string{"127.0.0.1:5223"},
			ResourceConflict:    "replace",
			HandshakeTimeout:    Duration(30 * time.Second),
			PingInterval:        Duration(4 * time.Minute),
			IdleTimeout:         Duration(60 * time.Second),
			KeepaliveInterval:   Duration(60 * time.Second),
			MaxConnectionsPerIP: 100,
			SMEnabled:           true,
			SMResumeTimeout:     Duration(5 * time.Minute),
			SMMaxUnacked:        1000,
			SMRequestEvery:      5,
			CSIEnabled:          true,
			CSIMaxHeld:          100,
		},
		Auth: Auth{SCRAMIterations: 4096, AllowPlain: true, MaxAttempts: 3,
			Throttle: AuthThrottle{Free: 5, Base: Duration(time.Second), Max: Duration(5 * time.Minute), Forget: Duration(15 * time.Minute)}},
		Limits: Limits{
			MaxStanzaBytes: 256 << 10,
			MaxDepth:       32,
			SendQueue:      2000,
			SendQueueBytes: 8 << 20,
		},
		Offline:    Offline{MaxPerUser: 1000},
		Server:     ServerInfo{Name: "Gatehouse"},
		Archive:    archiveDefaults(),
		Components: componentsDefaults(),
		S2S:        s2sDefaults(),
		Policy:     policyDefaults(),
		MAM:        mamDefaults(),
		MUC:        mucDefaults(),
		PubSub:     pubsubDefaults(),
		Upload:     uploadDefaults(),
		Web:        webDefaults(),
		Push:       pushDefaults(),
		// Empty, not nil: what a round trip through YAML gives.
		ExternalServices: []ExternalService{},
		Adhoc:            Adhoc{Admins: []string{}},
		Register:         registerDefaults(),
		Admin:            adminDefaults(),
		Directory:        directoryDefaults(),
	}
}

// Load reads the file at path, decodes it strictly over the defaults,
// normalises the host names and validates the result.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Err: fmt.Errorf("%w: %w", ErrRead, err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Err: fmt.Errorf("%w: %w", ErrRead, err)}
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Err: fmt.Errorf("%w: larger than %d bytes", ErrRead, MaxFileSize)}
	}
	return Parse(data, path)
}

// Parse decodes data like Load; name is used in error messages (usually the
// file name). An empty document yields the defaults.
func Parse(data []byte, name string) (*Config, error) {
	c := defaults()
	tree, err := decode(data, name, c)
	if err != nil {
		return nil, err
	}
	c.normalize()
	if errs := c.validate(); len(errs) > 0 {
		return nil, locate(errs, name, tree)
	}
	return c, nil
}
