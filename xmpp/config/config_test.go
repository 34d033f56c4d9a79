package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestEmptyDocumentsGiveDefaults(t *testing.T) {
	for _, doc := range []string{"", "\n", "# only a comment\n", "{}", "---\n", "~"} {
		c, err := Parse([]byte(doc), "t.yaml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		if !reflect.DeepEqual(c, defaults()) {
			t.Errorf("Parse(%q) = %+v, want defaults", doc, c)
		}
	}
}

func TestDefaultValues(t *testing.T) {
	c := Default()
	if !reflect.DeepEqual(c, defaults()) {
		t.Fatalf("embedded default.yaml differs from the coded defaults:\n got %+v\nwant %+v", c, defaults())
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"hosts", c.Hosts, []string{"localhost"}},
		{"data_dir", c.DataDir, "./data"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"log.file", c.Log.File, ""},
		{"tls.cert_file", c.TLS.CertFile, ""},
		{"tls.key_file", c.TLS.KeyFile, ""},
		{"tls.min_version", c.TLS.MinVersion, "1.2"},
		{"c2s.listen", c.C2S.Listen, []string{"127.0.0.1:5222"}},
		{"c2s.listen_tls", c.C2S.ListenTLS, []string{"127.0.0.1:5223"}},
		{"c2s.resource_conflict", c.C2S.ResourceConflict, "replace"},
		{"c2s.handshake_timeout", c.C2S.HandshakeTimeout.D(), 30 * time.Second},
		{"c2s.ping_interval", c.C2S.PingInterval.D(), 4 * time.Minute},
		{"c2s.idle_timeout", c.C2S.IdleTimeout.D(), 60 * time.Second},
		{"c2s.keepalive_interval", c.C2S.KeepaliveInterval.D(), 60 * time.Second},
		{"c2s.max_connections_per_ip", c.C2S.MaxConnectionsPerIP, 100},
		{"c2s.sm_enabled", c.C2S.SMEnabled, true},
		{"c2s.sm_resume_timeout", c.C2S.SMResumeTimeout.D(), 5 * time.Minute},
		{"c2s.sm_max_unacked", c.C2S.SMMaxUnacked, 1000},
		{"c2s.sm_request_every", c.C2S.SMRequestEvery, 5},
		{"c2s.csi_enabled", c.C2S.CSIEnabled, true},
		{"c2s.csi_max_held", c.C2S.CSIMaxHeld, 100},
		{"auth.scram_iterations", c.Auth.SCRAMIterations, 4096},
		{"auth.allow_plain", c.Auth.AllowPlain, true},
		{"auth.max_attempts", c.Auth.MaxAttempts, 3},
		{"auth.throttle.free", c.Auth.Throttle.Free, 5},
		{"auth.throttle.base", c.Auth.Throttle.Base.D(), time.Second},
		{"auth.throttle.max", c.Auth.Throttle.Max.D(), 5 * time.Minute},
		{"auth.throttle.forget", c.Auth.Throttle.Forget.D(), 15 * time.Minute},
		{"limits.max_stanza_bytes", c.Limits.MaxStanzaBytes, 262144},
		{"limits.max_depth", c.Limits.MaxDepth, 32},
		{"limits.send_queue", c.Limits.SendQueue, 2000},
		{"limits.send_queue_bytes", c.Limits.SendQueueBytes, 8 << 20},
		{"offline.max_per_user", c.Offline.MaxPerUser, 1000},
		{"server.name", c.Server.Name, "Gatehouse"},
		{"server.hide_os", c.Server.HideOS, false},
		{"components.listen", c.Components.Listen, []string{"127.0.0.1:5347"}},
		{"components.handshake_timeout", c.Components.HandshakeTimeout.D(), 10 * time.Second},
		{"components.ping_interval", c.Components.PingInterval.D(), 2 * time.Minute},
		{"components.idle_timeout", c.Components.IdleTimeout.D(), 60 * time.Second},
		{"components.transports", len(c.Components.Transports), 0},
		{"mam.enabled", c.MAM.Enabled, true},
		{"mam.default", c.MAM.Default, "always"},
		{"mam.retention", c.MAM.Retention.D(), 365 * 24 * time.Hour},
		{"mam.max_page_size", c.MAM.MaxPageSize, 100},
		{"mam.file", c.MAM.File, "mam.db"},
		{"muc.enabled", c.MUC.Enabled, true},
		{"muc.domain", c.MUC.Domain, ""},
		{"muc.file", c.MUC.File, "muc.db"},
		{"muc.create", c.MUC.Create, "local"},
		{"muc.max_occupants", c.MUC.MaxOccupants, 200},
		{"muc.history", c.MUC.History, 20},
		{"muc.archive", c.MUC.Archive, true},
		{"muc.archive_file", c.MUC.ArchiveFile, "muc_archive.db"},
		{"muc.archive_retention", c.MUC.ArchiveRetention.D(), 365 * 24 * time.Hour},
		{"pubsub.enabled", c.PubSub.Enabled, true},
		{"pubsub.domain", c.PubSub.Domain, ""},
		{"pubsub.create", c.PubSub.Create, "local"},
		{"pubsub.file", c.PubSub.File, "pubsub.db"},
		{"pubsub.max_items", c.PubSub.MaxItems, 256},
		{"pubsub.max_item_bytes", c.PubSub.MaxItemBytes, 262144},
		{"pubsub.max_nodes", c.PubSub.MaxNodes, 1000},
		{"upload.enabled", c.Upload.Enabled, true},
		{"upload.domain", c.Upload.Domain, ""},
		{"upload.listen", c.Upload.Listen, "127.0.0.1:5443"},
		{"upload.public_url", c.Upload.PublicURL, ""},
		{"upload.dir", c.Upload.Dir, "upload"},
		{"upload.max_file_size", c.Upload.MaxFileSize, int64(100 << 20)},
		{"upload.quota", c.Upload.Quota, int64(1 << 30)},
		{"upload.slot_lifetime", c.Upload.SlotLifetime.D(), 5 * time.Minute},
		{"web.enabled", c.Web.Enabled, false},
		{"web.listen", c.Web.Listen, "127.0.0.1:5281"},
		{"web.public_url", c.Web.PublicURL, ""},
		{"web.websocket_path", c.Web.WebSocketPath, "/xmpp-websocket"},
		{"web.origins", len(c.Web.Origins), 0},
		{"push.enabled", c.Push.Enabled, true},
		{"push.max_per_user", c.Push.MaxPerUser, 10},
		{"push.include_body", c.Push.IncludeBody, false},
		{"push.file", c.Push.File, "push.db"},
		{"external_services", len(c.ExternalServices), 0},
		{"adhoc.admins", len(c.Adhoc.Admins), 0},
		{"register.enabled", c.Register.Enabled, false},
		{"register.max_per_ip", c.Register.MaxPerIP, 3},
		{"register.window", c.Register.Window.D(), time.Hour},
		{"register.min_password_length", c.Register.MinPasswordLength, 8},
		{"archive.file", c.Archive.File, "archive.db"},
		{"archive.anchor_file", c.Archive.AnchorFile, "archive.anchor"},
		{"archive.anchor_interval", c.Archive.AnchorInterval.D(), time.Minute},
		{"archive.on_archive_failure", c.Archive.OnArchiveFailure, "refuse"},
		{"archive.internal", c.Archive.Internal, false},
		{"archive.presence", c.Archive.Presence, false},
		{"archive.retention", c.Archive.Retention.D(), time.Duration(0)},
		{"archive.sync", c.Archive.Sync, "full"},
		{"archive.max_batch", c.Archive.MaxBatch, 1024},
		{"archive.lock_timeout", c.Archive.LockTimeout.D(), 5 * time.Second},
		{"admin.socket", c.Admin.Socket, "admin.sock"},
		{"admin.http_listen", c.Admin.HTTPListen, ""},
		{"admin.token_file", c.Admin.TokenFile, ""},
		{"metrics.listen", c.Metrics.Listen, ""},
		{"directory.enabled", c.Directory.Enabled, false},
		{"directory.url", c.Directory.URL, ""},
		{"directory.start_tls", c.Directory.StartTLS, false},
		{"directory.ca_file", c.Directory.CAFile, ""},
		{"directory.insecure", c.Directory.Insecure, false},
		{"directory.bind_dn", c.Directory.BindDN, ""},
		{"directory.bind_password_file", c.Directory.BindPasswordFile, ""},
		{"directory.base_dn", c.Directory.BaseDN, ""},
		{"directory.user_filter", c.Directory.UserFilter, "(&(objectClass=inetOrgPerson)(uid=%s))"},
		{"directory.username_attr", c.Directory.UsernameAttr, "uid"},
		{"directory.disabled_filter", c.Directory.DisabledFilter, ""},
		{"directory.group_base_dn", c.Directory.GroupBaseDN, ""},
		{"directory.group_filter", c.Directory.GroupFilter, "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"},
		{"directory.group_name_attr", c.Directory.GroupNameAttr, "cn"},
		{"directory.member_attrs", len(c.Directory.MemberAttrs), 2},
		{"directory.manager_attr", c.Directory.ManagerAttr, "manager"},
		{"directory.shared_roster_groups", len(c.Directory.SharedRosterGroups), 0},
		{"directory.vcard.full_name", c.Directory.VCard.FullName, "cn"},
		{"directory.vcard.given", c.Directory.VCard.Given, "givenName"},
		{"directory.vcard.family", c.Directory.VCard.Family, "sn"},
		{"directory.vcard.title", c.Directory.VCard.Title, "title"},
		{"directory.vcard.department", c.Directory.VCard.Department, "ou"},
		{"directory.vcard.phone", c.Directory.VCard.Phone, "telephoneNumber"},
		{"directory.vcard.email", c.Directory.VCard.Email, "mail"},
		{"directory.vcard.photo", c.Directory.VCard.Photo, "jpegPhoto"},
		{"directory.auth", c.Directory.Auth, "scram_cache"},
		{"directory.scram_cache_ttl", c.Directory.SCRAMCacheTTL.D(), 24 * time.Hour},
		{"directory.refresh", c.Directory.Refresh.D(), 5 * time.Minute},
		{"directory.timeout", c.Directory.Timeout.D(), 10 * time.Second},
		{"directory.pool_size", c.Directory.PoolSize, 4},
	}
	for _, tc := range checks {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestDefaultReturnsFreshCopies(t *testing.T) {
	a := Default()
	a.Hosts[0] = "changed.example"
	a.C2S.Listen = append(a.C2S.Listen, "127.0.0.1:1")
	if b := Default(); b.Hosts[0] != "localhost" || len(b.C2S.Listen) != 1 {
		t.Fatalf("Default shares state between calls: %+v", b)
	}
	y := DefaultYAML()
	y[0] = 'X'
	if DefaultYAML()[0] == 'X' {
		t.Fatal("DefaultYAML returns the embedded slice itself")
	}
}

// yamlPaths lists the key paths of a struct type from its yaml tags.
func yamlPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		p := tag
		if prefix != "" {
			p = prefix + "." + tag
		}
		if f.Type.Kind() == reflect.Struct {
			out = append(out, yamlPaths(f.Type, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestDefaultYAMLMentionsEveryKey(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(DefaultYAML(), &doc); err != nil {
		t.Fatal(err)
	}
	idx := newKeyIndex(&doc)
	paths := yamlPaths(reflect.TypeOf(Config{}), "")
	if len(paths) != 160 {
		t.Errorf("found %d keys, the test table above lists 160: update it", len(paths))
	}
	for _, p := range paths {
		i, ok := idx.byPath[p]
		if !ok {
			t.Errorf("default.yaml does not set %s", p)
			continue
		}
		// Every key is documented: a comment sits above it or above the
		// block of keys it belongs to.
		lines := strings.Split(string(DefaultYAML()), "\n")
		documented := false
		for l := idx.keys[i].keyLine - 2; l >= 0; l-- {
			s := strings.TrimSpace(lines[l])
			if strings.HasPrefix(s, "#") {
				documented = true
				break
			}
			if s == "" || strings.HasSuffix(s, ":") {
				break
			}
		}
		if !documented {
			t.Errorf("default.yaml: %s (line %d) has no comment", p, idx.keys[i].keyLine)
		}
	}
}

func TestParseValues(t *testing.T) {
	doc := `
hosts: [Example.COM., chat.example.org]
data_dir: /var/lib/gatehouse
log: {level: debug, format: json, file: /var/log/gatehouse.log}
tls:
  cert_file: /etc/gatehouse/cert.pem
  key_file: /etc/gatehouse/key.pem
  min_version: "1.3"
c2s:
  listen: ["[::]:5222", "0.0.0.0:5222"]
  listen_tls: []
  resource_conflict: rename
  handshake_timeout: 1m30s
  ping_interval: 10m
  idle_timeout: 500ms
  keepalive_interval: 2m
  max_connections_per_ip: 0
auth: {scram_iterations: 600000, allow_plain: false, max_attempts: 10}
limits: {max_stanza_bytes: 10000, max_depth: 8, send_queue: 1, send_queue_bytes: 10000}
offline: {max_per_user: 0}
server: {name: Corp XMPP, hide_os: true}
`
	c, err := Parse([]byte(doc), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Hosts:   []string{"example.com", "chat.example.org"},
		DataDir: "/var/lib/gatehouse",
		Log:     Log{Level: "debug", Format: "json", File: "/var/log/gatehouse.log"},
		TLS:     TLS{CertFile: "/etc/gatehouse/cert.pem", KeyFile: "/etc/gatehouse/key.pem", MinVersion: "1.3"},
		C2S: C2S{
			Listen:              []string{"[::]:5222", "0.0.0.0:5222"},
			ListenTLS:           []string{},
			ResourceConflict:    "rename",
			HandshakeTimeout:    Duration(90 * time.Second),
			PingInterval:        Duration(10 * time.Minute),
			IdleTimeout:         Duration(500 * time.Millisecond),
			KeepaliveInterval:   Duration(2 * time.Minute),
			MaxConnectionsPerIP: 0,
			// Keys the document leaves out keep their defaults.
			SMEnabled: true, SMResumeTimeout: Duration(5 * time.Minute), SMMaxUnacked: 1000, SMRequestEvery: 5,
			CSIEnabled: true, CSIMaxHeld: 100,
		},
		Auth: Auth{SCRAMIterations: 600000, AllowPlain: false, MaxAttempts: 10,
			Throttle: AuthThrottle{Free: 5, Base: Duration(time.Second), Max: Duration(5 * time.Minute), Forget: Duration(15 * time.Minute)}},
		Limits:  Limits{MaxStanzaBytes: 10000, MaxDepth: 8, SendQueue: 1, SendQueueBytes: 10000},
		Offline: Offline{MaxPerUser: 0},
		Server:  ServerInfo{Name: "Corp XMPP", HideOS: true},
		// Sections the document leaves out keep their defaults.
		Components:       componentsDefaults(),
		S2S:              s2sDefaults(),
		MAM:              mamDefaults(),
		MUC:              mucDefaults(),
		PubSub:           pubsubDefaults(),
		Upload:           uploadDefaults(),
		Web:              webDefaults(),
		Push:             pushDefaults(),
		ExternalServices: []ExternalService{},
		Adhoc:            Adhoc{Admins: []string{}},
		Register:         registerDefaults(),
		Policy:           policyDefaults(),
		Archive:          archiveDefaults(),
		Admin:            adminDefaults(),
		Directory:        directoryDefaults(),
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

func TestPartialSectionKeepsOtherDefaults(t *testing.T) {
	c, err := Parse([]byte("c2s:\n  ping_interval: 1m\nauth:\n  max_attempts: 5\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.C2S.PingInterval = Duration(time.Minute)
	want.Auth.MaxAttempts = 5
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		path string // Error.Path
		line int    // Error.Line
		msg  string // substring of the message
	}{
		{"no hosts", "hosts: []", "hosts", 1, "at least one host"},
		{"bad host", "hosts:\n  - localhost\n  - foo bar", "hosts[1]", 3, "not a valid domain name"},
		{"host with at", "hosts: [a@b]", "hosts[0]", 1, "not a valid domain name"},
		{"empty label", "hosts: [a..b]", "hosts[0]", 1, "empty label"},
		{"empty host", "hosts: ['']", "hosts[0]", 1, "not a valid domain name"},
		{"duplicate host", "hosts: [a.example, A.example]", "hosts[1]", 1, `already listed as hosts[0]`},
		{"empty data dir", "data_dir: ''", "data_dir", 1, "must not be empty"},
		{"log level", "log:\n  level: verbose", "log.level", 2, `"verbose" is not one of debug, info, warn, error`},
		{"log format", "log:\n  format: xml", "log.format", 2, "not one of text, json"},
		{"cert without key", "tls:\n  cert_file: c.pem", "tls.key_file", 1, "must be set when tls.cert_file is set"},
		{"key without cert", "tls:\n  key_file: k.pem", "tls.cert_file", 1, "must be set when tls.key_file is set"},
		{"min version", "tls:\n  min_version: '1.1'", "tls.min_version", 2, `"1.1" is not one of 1.2, 1.3`},
		{"no listeners", "c2s:\n  listen: []\n  listen_tls: []", "c2s.listen", 2, "no listeners"},
		{"listen no port", "c2s:\n  listen:\n    - 127.0.0.1", "c2s.listen[0]", 3, "missing port in address"},
		{"listen empty port", "c2s:\n  listen: ['127.0.0.1:']", "c2s.listen[0]", 2, "missing port number"},
		{"listen port range", "c2s:\n  listen: ['127.0.0.1:70000']", "c2s.listen[0]", 2, "not a number between 0 and 65535"},
		{"listen named port", "c2s:\n  listen: ['127.0.0.1:xmpp']", "c2s.listen[0]", 2, "not a number"},
		{"listen_tls bad", "c2s:\n  listen_tls: ['::1:5223']", "c2s.listen_tls[0]", 2, "too many colons"},
		{"listen duplicate", "c2s:\n  listen: [':5222']\n  listen_tls: [':5222']", "c2s.listen_tls[0]", 3, "already used by c2s.listen[0]"},
		{"resource conflict", "c2s:\n  resource_conflict: kick", "c2s.resource_conflict", 2, "not one of replace, refuse, rename"},
		{"handshake timeout zero", "c2s:\n  handshake_timeout: 0s", "c2s.handshake_timeout", 2, "positive duration"},
		{"ping negative", "c2s:\n  ping_interval: -1m", "c2s.ping_interval", 2, "positive duration"},
		{"keepalive zero", "c2s:\n  keepalive_interval: 0s", "c2s.keepalive_interval", 2, "positive duration"},
		{"max conns", "c2s:\n  max_connections_per_ip: -1", "c2s.max_connections_per_ip", 2, "at least 0"},
		{"sm resume negative", "c2s:\n  sm_resume_timeout: -1s", "c2s.sm_resume_timeout", 2, "between 0s and 24h0m0s"},
		{"sm resume long", "c2s:\n  sm_resume_timeout: 25h", "c2s.sm_resume_timeout", 2, "between 0s and 24h0m0s"},
		{"sm max unacked", "c2s:\n  sm_max_unacked: 0", "c2s.sm_max_unacked", 2, "between 1 and 100000"},
		{"sm request every", "c2s:\n  sm_max_unacked: 10\n  sm_request_every: 11", "c2s.sm_request_every", 3, "between 1 and 10"},
		{"csi max held", "c2s:\n  csi_max_held: 0", "c2s.csi_max_held", 2, "between 1 and 10000"},
		{"web listen", "web:\n  enabled: true\n  listen: nope", "web.listen", 3, "missing port"},
		{"web public url", "web:\n  public_url: http://x.example", "web.public_url", 2, "must start with https://"},
		{"web path", "web:\n  websocket_path: /.well-known/x", "web.websocket_path", 2, "not be under /.well-known/"},
		{"web origin", "web:\n  origins: [\"https://x.example\"]", "web.origins[0]", 2, "without scheme"},
		{"push max", "push:\n  max_per_user: 0", "push.max_per_user", 2, "between 1 and 100"},
		{"extdisco port", "external_services:\n  - {type: stun, host: h, port: 0}", "external_services[0].port", 2, "between 1 and 65535"},
		{"extdisco creds", "external_services:\n  - {type: turn, host: h, port: 1, secret: s, username: u}", "external_services[0].secret", 2, "not both"},
		{"adhoc admin", "adhoc:\n  admins: [example.com]", "adhoc.admins[0]", 2, "bare JID"},
		{"register window", "register:\n  window: 0s", "register.window", 2, "between 1s and 168h"},
		{"register rate", "register:\n  max_per_ip: 0", "register.max_per_ip", 2, "between 1 and 1000"},
		{"scram low", "auth:\n  scram_iterations: 4095", "auth.scram_iterations", 2, "between 4096 and 10000000"},
		{"scram high", "auth:\n  scram_iterations: 10000001", "auth.scram_iterations", 2, "between 4096"},
		{"attempts zero", "auth:\n  max_attempts: 0", "auth.max_attempts", 2, "between 1 and 10"},
		{"attempts high", "auth:\n  max_attempts: 11", "auth.max_attempts", 2, "between 1 and 10"},
		{"stanza small", "limits:\n  max_stanza_bytes: 9999", "limits.max_stanza_bytes", 2, "at least 10000"},
		{"depth low", "limits:\n  max_depth: 2", "limits.max_depth", 2, "between 8 and 1024"},
		{"depth high", "limits:\n  max_depth: 5000", "limits.max_depth", 2, "between 8 and 1024"},
		{"send queue", "limits:\n  send_queue: 0", "limits.send_queue", 2, "at least 1"},
		{"queue bytes", "limits:\n  send_queue_bytes: 1000", "limits.send_queue_bytes", 2, "at least limits.max_stanza_bytes (262144)"},
		// The offending value is a default: the line is that of its section.
		{"queue bytes via stanza", "\nlimits:\n  max_stanza_bytes: 9000000", "limits.send_queue_bytes", 2, "got 8388608"},
		{"offline", "offline:\n  max_per_user: -5", "offline.max_per_user", 2, "at least 0"},
		{"server name", "server:\n  name: '  '", "server.name", 2, "must not be empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "gh.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not wrap ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not *Error", err)
			}
			if e.Path != tc.path || e.Line != tc.line || e.File != "gh.yaml" || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("got %+v (%v), want path %s line %d msg containing %q", e, err, tc.path, tc.line, tc.msg)
			}
			wantPrefix := "config: gh.yaml:" + strconv.Itoa(tc.line) + ": " + tc.path + ": "
			if !strings.HasPrefix(err.Error(), wantPrefix) {
				t.Fatalf("message %q does not start with %q", err.Error(), wantPrefix)
			}
		})
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.C2S.Listen = []string{"nope"}
	c.Auth.MaxAttempts = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("%v does not wrap ErrInvalid", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`config: c2s.listen[0]: "nope": address nope: missing port in address`,
		"config: auth.max_attempts: must be between 1 and 10, got 0",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not contain %q", msg, want)
		}
	}
}

func TestValidateRejectsNonCanonicalHost(t *testing.T) {
	c := Default()
	c.Hosts = []string{"Example.COM"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), `hosts[0]: "Example.COM" is not in canonical form; write "example.com"`) {
		t.Fatalf("got %v", err)
	}
}

func TestHostsNormalised(t *testing.T) {
	tests := []struct{ in, want string }{
		{"localhost", "localhost"},
		{"Example.COM", "example.com"},
		{"example.org.", "example.org"},
		{"xn--bcher-kva.de", "bücher.de"},
		{"ÉXAMPLE.net", "éxample.net"},
		{"127.0.0.1", "127.0.0.1"},
		{"'[::1]'", "[::1]"},
	}
	for _, tc := range tests {
		c, err := Parse([]byte("hosts: ["+tc.in+"]"), "t.yaml")
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if c.Hosts[0] != tc.want {
			t.Errorf("%s -> %q, want %q", tc.in, c.Hosts[0], tc.want)
		}
	}
}

func TestUnquotedMinVersion(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		c, err := Parse([]byte("tls:\n  min_version: "+v+"\n"), "t.yaml")
		if err != nil || c.TLS.MinVersion != v {
			t.Errorf("min_version: %s -> %+v, %v", v, c, err)
		}
	}
}

func TestNullKeepsScalarDefaults(t *testing.T) {
	// yaml.v3 leaves scalars alone on null but clears lists.
	c, err := Parse([]byte("c2s:\n  idle_timeout:\n  max_connections_per_ip: ~\n  listen:\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.C2S.IdleTimeout.D() != time.Minute || c.C2S.MaxConnectionsPerIP != 100 || len(c.C2S.Listen) != 0 {
		t.Fatalf("got %+v", c.C2S)
	}
}

func TestSeveralErrorsReported(t *testing.T) {
	_, err := Parse([]byte("log:\n  level: loud\nauth:\n  max_attempts: 99\n"), "t.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"t.yaml:2: log.level:", "t.yaml:4: auth.max_attempts:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		doc  string
		line int
		path string
		key  string
	}{
		{"hostz: [a]", 1, "hostz", "hostz"},
		{"hosts: [localhost]\n\nc2s:\n  listen: [':5222']\n  listen_tl: [':5223']\n", 5, "c2s.listen_tl", "listen_tl"},
		{"log:\n  level: info\n  colour: true\n", 3, "log.colour", "colour"},
		{"server: {name: x, hide: true}", 1, "server.hide", "hide"},
		{"tls:\n  certfile: a.pem\n", 2, "tls.certfile", "certfile"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.doc), "gatehouse.yaml")
		if !errors.Is(err, ErrUnknownKey) {
			t.Errorf("%q: got %v, want ErrUnknownKey", tc.doc, err)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Line != tc.line || e.Path != tc.path || e.File != "gatehouse.yaml" {
			t.Errorf("%q: got %+v, want line %d path %s", tc.doc, e, tc.line, tc.path)
			continue
		}
		want := "config: gatehouse.yaml:" + strconv.Itoa(tc.line) + ": " + tc.path + `: unknown key "` + tc.key + `"`
		if err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	}
}

func TestSyntaxAndTypeErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		kind error
		line int
		msg  string
	}{
		{"bad indent", "hosts:\n  - a\n b: c\n", ErrSyntax, 2, "did not find expected key"},
		{"tab", "log:\n\tlevel: info\n", ErrSyntax, 2, "cannot start any token"},
		{"unclosed flow", "hosts: [a, b\n", ErrSyntax, 0, ""},
		{"two documents", "hosts: [a]\n---\nhosts: [b]\n", ErrSyntax, 2, "more than one YAML document"},
		{"string for int", "auth:\n  max_attempts: three\n", ErrType, 2, "cannot unmarshal"},
		{"list for string", "data_dir: [a]\n", ErrType, 1, "cannot unmarshal"},
		{"scalar for section", "c2s: yes\n", ErrType, 1, "cannot unmarshal"},
		{"top level list", "- a\n", ErrType, 1, "cannot unmarshal"},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", ErrType, 3, "already defined at line 2"},
		{"bool", "auth:\n  allow_plain: maybe\n", ErrType, 2, "cannot unmarshal"},
		{"duration number", "c2s:\n  ping_interval: 30\n", ErrType, 2, `duration "30" needs a unit`},
		{"duration junk", "c2s:\n  idle_timeout: soon\n", ErrType, 2, `invalid duration "soon"`},
		{"duration map", "c2s:\n  idle_timeout: {a: 1}\n", ErrType, 2, "must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "g.yaml")
			if !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want %v", err, tc.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not *Error", err)
			}
			if tc.line != 0 && e.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", e.Line, tc.line, err)
			}
			if e.File != "g.yaml" || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got %+v, want message containing %q", e, tc.msg)
			}
			if e.Line > 0 && !strings.HasPrefix(err.Error(), "config: g.yaml:"+strconv.Itoa(e.Line)+": ") {
				t.Errorf("message %q lacks file:line", err)
			}
		})
	}
}

func TestTypeErrorPath(t *testing.T) {
	_, err := Parse([]byte("c2s:\n  handshake_timeout: 10\n"), "g.yaml")
	var e *Error
	if !errors.As(err, &e) || e.Path != "c2s.handshake_timeout" {
		t.Fatalf("got %+v", e)
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"30s", 30 * time.Second, false},
		{"4m", 4 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"250ms", 250 * time.Millisecond, false},
		{`"45s"`, 45 * time.Second, false},
		{"30", 0, true},
		{"1.5", 0, true},
		{"'30'", 0, true},
		{"30 s", 0, true},
		{"true", 0, true},
		{"[1s]", 0, true},
	}
	for _, tc := range tests {
		var v struct {
			D Duration `yaml:"d"`
		}
		err := yaml.Unmarshal([]byte("d: "+tc.in), &v)
		if tc.err {
			if err == nil {
				t.Errorf("%s: no error, got %v", tc.in, v.D)
			}
			continue
		}
		if err != nil || v.D.D() != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.in, v.D, err, tc.want)
		}
	}
}

func TestDurationMarshal(t *testing.T) {
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
	}{Duration(90 * time.Second)})
	if err != nil || string(out) != "d: 1m30s\n" {
		t.Fatalf("got %q, %v", out, err)
	}
	if s := Duration(4 * time.Minute).String(); s != "4m0s" {
		t.Fatalf("String = %q", s)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c := Default()
	c.Hosts = append(c.Hosts, "example.com")
	c.C2S.IdleTimeout = Duration(1500 * time.Millisecond)
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(out, "marshalled")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(c, c2) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(good, []byte("hosts: [example.com]\nlog: {format: json}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hosts[0] != "example.com" || c.Log.Format != "json" || c.Log.Level != "info" {
		t.Fatalf("got %+v", c)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("hosts: [example.com]\nc2s:\n  lisen: [':5222']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if !errors.Is(err, ErrUnknownKey) || !strings.HasPrefix(err.Error(), "config: "+bad+":3: c2s.lisen: ") {
		t.Fatalf("got %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, ErrRead) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrRead) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	doc := "a: &a [x, x, x, x, x, x, x, x, x]\n" +
		"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
		"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n" +
		"f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n" +
		"hosts: *g\n"
	if _, err := Parse([]byte(doc), "bomb.yaml"); err == nil {
		t.Fatal("alias bomb accepted")
	}
}
