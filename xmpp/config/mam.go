package config

import (
	"path/filepath"
	"time"
)

// Bounds of the mam section.
const (
	// MaxMAMPageSize caps mam.max_page_size: a page is sent as that many
	// stanzas in one burst, and the client's send queue (limits.send_queue,
	// default 2000) must hold it with room to spare.
	MaxMAMPageSize = 1000
)

// MAM preference defaults (XEP-0441 'default' attribute).
const (
	MAMAlways = "always"
	MAMRoster = "roster"
	MAMNever  = "never"
)

// MAM configures the users' own message archive (XEP-0313, xmpp/mod/mam).
// It is not the compliance archive (see Archive).
type MAM struct {
	// Enabled turns archiving and archive queries on; default true.
	Enabled bool `yaml:"enabled"`
	// Default is the archiving preference of a user who has not set one
	// (XEP-0441): always (default), roster or never.
	Default string `yaml:"default"`
	// Retention is how long archived messages are kept; older ones are
	// deleted by a periodic prune. 0 keeps them forever. Default 8760h
	// (365 days).
	Retention Duration `yaml:"retention"`
	// MaxPageSize is the most results one query returns, whatever the
	// client asks for; also the page size when the client sets none.
	// Default 100, range 1..1000.
	MaxPageSize int `yaml:"max_page_size"`
	// File is the archive database, relative to data_dir unless absolute.
	// Default "mam.db". It must not be the main database.
	File string `yaml:"file"`
}

// mamDefaults returns the defaults of the mam section.
func mamDefaults() MAM {
	return MAM{
		Enabled:     true,
		Default:     MAMAlways,
		Retention:   Duration(365 * 24 * time.Hour),
		MaxPageSize: 100,
		File:        "mam.db",
	}
}

// validate checks the mam section.
func (c *MAM) validate(v *checker) {
	v.oneOf("mam.default", c.Default, MAMAlways, MAMRoster, MAMNever)
	if c.Retention < 0 {
		v.fail("mam.retention", "must be 0 (keep forever) or a positive duration such as \"720h\", got %s", c.Retention)
	}
	v.between("mam.max_page_size", c.MaxPageSize, 1, MaxMAMPageSize)
	switch f := filepath.Clean(c.File); {
	case c.File == "":
		v.fail("mam.file", "must not be empty")
	case f == "gatehouse.db" || f == ".":
		// The main database (server.DBFile) has its own migrations table
		// and single writer; sharing the file would make the two fight.
		v.fail("mam.file", "%q is the main database; use a file of its own such as \"mam.db\"", c.File)
	}
}
