package config

import (
	"path/filepath"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// Bounds of the muc section.
const (
	// MaxMUCOccupants caps muc.max_occupants: every groupchat message is
	// copied to each occupant on the sender's goroutine.
	MaxMUCOccupants = 10000
	// MaxMUCHistory caps muc.history: the history is sent as a burst on
	// join and must fit the client's send queue (limits.send_queue).
	MaxMUCHistory = 1000
)

// Who may create rooms (muc.create).
const (
	MUCCreateLocal  = "local"  // accounts of the hosted domains
	MUCCreateAnyone = "anyone" // also federated users and transport users
)

// MUC configures group chat (XEP-0045, xmpp/mod/muc).
type MUC struct {
	// Enabled serves the group chat service; default true.
	Enabled bool `yaml:"enabled"`
	// Domain is the service's address; "" means "conference." followed by
	// the first hosted domain. It is in the local zone.
	Domain string `yaml:"domain"`
	// File is the rooms database (persistent rooms, their configuration
	// and affiliations), relative to data_dir unless absolute. Default
	// "muc.db".
	File string `yaml:"file"`
	// Create says who may create rooms: local (default) or anyone.
	Create string `yaml:"create"`
	// MaxOccupants is the most occupants a room may have (its owner can set
	// a lower limit). Default 200.
	MaxOccupants int `yaml:"max_occupants"`
	// History is how many messages a room keeps for new occupants (owners
	// can lower it per room). Default 20.
	History int `yaml:"history"`
	// Archive keeps room messages for XEP-0313 queries to the room, in
	// ArchiveFile; rooms can turn it off (muc#roomconfig_enablelogging).
	// Default true.
	Archive bool `yaml:"archive"`
	// ArchiveFile is the room archive database. Default "muc_archive.db".
	ArchiveFile string `yaml:"archive_file"`
	// ArchiveRetention is how long room messages are kept; 0 keeps them
	// forever. Default 8760h.
	ArchiveRetention Duration `yaml:"archive_retention"`
}

func mucDefaults() MUC {
	return MUC{
		Enabled:          true,
		File:             "muc.db",
		Create:           MUCCreateLocal,
		MaxOccupants:     200,
		History:          20,
		Archive:          true,
		ArchiveFile:      "muc_archive.db",
		ArchiveRetention: Duration(365 * 24 * time.Hour),
	}
}

// ServiceDomain returns the group chat service's domain for hosts.
func (c *MUC) ServiceDomain(hosts []string) string {
	if c.Domain != "" || len(hosts) == 0 {
		return c.Domain
	}
	return "conference." + hosts[0]
}

func (c *MUC) validate(v *checker, all *Config) {
	hosts := all.Hosts
	if c.Domain != "" {
		j, err := jid.New("", c.Domain, "")
		switch {
		case err != nil:
			v.fail("muc.domain", "%q is not a valid domain name: %v", c.Domain, err)
		case j.Domainpart() != c.Domain:
			v.fail("muc.domain", "%q is not in canonical form; write %q", c.Domain, j.Domainpart())
		}
		for _, h := range hosts {
			if strings.EqualFold(h, c.Domain) {
				v.fail("muc.domain", "%q is a hosted domain; the group chat service needs a domain of its own", c.Domain)
			}
		}
	}
	v.oneOf("muc.create", c.Create, MUCCreateLocal, MUCCreateAnyone)
	v.between("muc.max_occupants", c.MaxOccupants, 1, MaxMUCOccupants)
	v.between("muc.history", c.History, 0, MaxMUCHistory)
	if c.ArchiveRetention < 0 {
		v.fail("muc.archive_retention", "must be 0 (keep forever) or a positive duration such as \"720h\", got %s", c.ArchiveRetention)
	}
	// Each database has its own single writer and migrations table.
	taken := map[string]bool{"gatehouse.db": true, ".": true, filepath.Clean(all.MAM.File): true, filepath.Clean(all.Archive.File): true}
	for _, f := range []struct{ key, val string }{{"muc.file", c.File}, {"muc.archive_file", c.ArchiveFile}} {
		switch {
		case f.val == "":
			v.fail(f.key, "must not be empty")
		case taken[filepath.Clean(f.val)]:
			v.fail(f.key, "%q is another database of the server; use a file of its own", f.val)
		}
	}
	if filepath.Clean(c.File) == filepath.Clean(c.ArchiveFile) {
		v.fail("muc.archive_file", "must differ from muc.file")
	}
}
