package config

import (
	"path/filepath"
	"strings"

	"mellium.im/xmpp/jid"
)

// Bounds of the pubsub section.
const (
	// MaxPubSubItems caps pubsub.max_items: a node's items are sent in one
	// reply, which must fit the stanza and send-queue limits.
	MaxPubSubItems = 1000
	// MaxPubSubItemBytes caps pubsub.max_item_bytes (an avatar image is
	// the largest payload clients publish).
	MaxPubSubItemBytes = 16 << 20
)

// Who may create nodes on the pubsub service (pubsub.create).
const (
	PubSubCreateLocal = "local" // accounts of the hosted domains
	PubSubCreateNone  = "none"  // nobody: the service serves no nodes
)

// PubSub configures PEP (XEP-0163, every account's personal pubsub
// service) and the pubsub service (XEP-0060) at its own domain
// (xmpp/mod/pubsub).
type PubSub struct {
	// Enabled serves PEP and the pubsub service; default true.
	Enabled bool `yaml:"enabled"`
	// Domain is the pubsub service's address; "" means "pubsub." followed
	// by the first hosted domain. It is in the local zone.
	Domain string `yaml:"domain"`
	// Create says who may create nodes on the service: local (default) or
	// none. PEP nodes are always created by their account.
	Create string `yaml:"create"`
	// File is the nodes and items database, relative to data_dir unless
	// absolute. Default "pubsub.db".
	File string `yaml:"file"`
	// MaxItems is the most items one node keeps (what "max" means in
	// pubsub#max_items). Default 256.
	MaxItems int `yaml:"max_items"`
	// MaxItemBytes is the largest item payload (serialized). Default
	// 262144; items also have to fit limits.max_stanza_bytes.
	MaxItemBytes int `yaml:"max_item_bytes"`
	// MaxNodes is the most nodes one account may own, in PEP and on the
	// service together counted separately. Default 1000.
	MaxNodes int `yaml:"max_nodes"`
}

func pubsubDefaults() PubSub {
	return PubSub{
		Enabled:      true,
		Create:       PubSubCreateLocal,
		File:         "pubsub.db",
		MaxItems:     256,
		MaxItemBytes: 256 << 10,
		MaxNodes:     1000,
	}
}

// ServiceDomain returns the pubsub service's domain for hosts.
func (c *PubSub) ServiceDomain(hosts []string) string {
	if c.Domain != "" || len(hosts) == 0 {
		return c.Domain
	}
	return "pubsub." + hosts[0]
}

func (c *PubSub) validate(v *checker, hosts []string) {
	validateServiceDomain(v, "pubsub.domain", c.Domain, hosts)
	v.oneOf("pubsub.create", c.Create, PubSubCreateLocal, PubSubCreateNone)
	v.between("pubsub.max_items", c.MaxItems, 1, MaxPubSubItems)
	v.between("pubsub.max_item_bytes", c.MaxItemBytes, 1024, MaxPubSubItemBytes)
	v.between("pubsub.max_nodes", c.MaxNodes, 1, 1_000_000)
	switch clean := filepath.Clean(c.File); {
	case c.File == "":
		v.fail("pubsub.file", "must not be empty")
	case clean == "gatehouse.db" || clean == "." || clean == "mam.db" || clean == "muc.db" || clean == "muc_archive.db" || clean == "archive.db":
		v.fail("pubsub.file", "%q is another database of the server; use a file of its own such as \"pubsub.db\"", c.File)
	}
}

// validateServiceDomain checks the domain of an internal service
// (pubsub.domain, upload.domain): valid, canonical and not a hosted
// domain. "" (derived from the first host) is always fine.
func validateServiceDomain(v *checker, key, domain string, hosts []string) {
	if domain == "" {
		return
	}
	j, err := jid.New("", domain, "")
	switch {
	case err != nil:
		v.fail(key, "%q is not a valid domain name: %v", domain, err)
		return
	case j.Domainpart() != domain:
		v.fail(key, "%q is not in canonical form; write %q", domain, j.Domainpart())
		return
	case strings.HasPrefix(domain, ".") || strings.Contains(domain, ".."):
		v.fail(key, "%q is not a valid domain name: empty label", domain)
		return
	}
	for _, h := range hosts {
		if strings.EqualFold(h, domain) {
			v.fail(key, "%q is a hosted domain; the service needs a domain of its own", domain)
		}
	}
}
