package config

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Upload configures HTTP File Upload (XEP-0363, xmpp/mod/upload): the
// upload service hands out slots over XMPP and a built-in HTTPS server
// takes the PUT and serves the GET.
type Upload struct {
	// Enabled serves upload.<domain> and binds Listen. Default true, so
	// file sharing works out of the box on the loopback listener; other
	// machines need Listen and PublicURL set to an address they reach.
	Enabled bool `yaml:"enabled"`
	// Domain is the upload service's address; "" means "upload." followed
	// by the first hosted domain. It is in the local zone.
	Domain string `yaml:"domain"`
	// Listen is the HTTPS listener's address; default "127.0.0.1:5443".
	// It serves the server's TLS certificate (tls section).
	Listen string `yaml:"listen"`
	// PublicURL is the base of the URLs handed out in slots, e.g.
	// "https://upload.example.com" behind a reverse proxy. "" means
	// "https://" + the first hosted domain + ":" + the port of Listen.
	PublicURL string `yaml:"public_url"`
	// Dir holds the uploaded files, relative to data_dir unless absolute.
	// Default "upload".
	Dir string `yaml:"dir"`
	// MaxFileSize is the largest file in bytes; larger slot requests are
	// refused with the limit in the error. Default 104857600 (100 MiB).
	MaxFileSize int64 `yaml:"max_file_size"`
	// Quota is the total bytes one account may have stored; 0 means no
	// quota. Default 1073741824 (1 GiB).
	Quota int64 `yaml:"quota"`
	// SlotLifetime is how long a slot's PUT URL stays valid. Default 5m.
	SlotLifetime Duration `yaml:"slot_lifetime"`
}

func uploadDefaults() Upload {
	return Upload{
		Enabled:      true,
		Listen:       "127.0.0.1:5443",
		Dir:          "upload",
		MaxFileSize:  100 << 20,
		Quota:        1 << 30,
		SlotLifetime: Duration(5 * time.Minute),
	}
}

// ServiceDomain returns the upload service's domain for hosts.
func (c *Upload) ServiceDomain(hosts []string) string {
	if c.Domain != "" || len(hosts) == 0 {
		return c.Domain
	}
	return "upload." + hosts[0]
}

func (c *Upload) validate(v *checker, hosts []string) {
	validateServiceDomain(v, "upload.domain", c.Domain, hosts)
	if c.Enabled {
		if err := checkListenAddr(c.Listen); err != nil {
			v.fail("upload.listen", "%v", err)
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil:
			v.fail("upload.public_url", "not a URL: %v", err)
		case u.Scheme != "https" && u.Scheme != "http":
			v.fail("upload.public_url", "%q must start with https:// (or http:// behind a TLS-terminating proxy)", c.PublicURL)
		case u.Host == "" || u.RawQuery != "" || u.Fragment != "":
			v.fail("upload.public_url", "%q must be scheme://host[:port][/path] without query or fragment", c.PublicURL)
		}
	}
	if strings.TrimSpace(c.Dir) == "" || filepath.Clean(c.Dir) == "." {
		v.fail("upload.dir", "must name a directory of its own, such as \"upload\"")
	}
	if c.MaxFileSize < 1 {
		v.fail("upload.max_file_size", "must be at least 1 byte, got %d", c.MaxFileSize)
	}
	if c.Quota < 0 {
		v.fail("upload.quota", "must be 0 (no quota) or a number of bytes, got %d", c.Quota)
	}
	if c.SlotLifetime < Duration(time.Second) || c.SlotLifetime > Duration(24*time.Hour) {
		v.fail("upload.slot_lifetime", "must be between 1s and 24h, got %s", c.SlotLifetime)
	}
}
