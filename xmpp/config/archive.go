package config

import (
	"path/filepath"
	"time"
)

// Values of archive.on_archive_failure and archive.sync.
const (
	ArchiveRefuse     = "refuse"
	ArchiveAllow      = "allow"
	ArchiveSyncFull   = "full"
	ArchiveSyncNormal = "normal"
)

// Archive configures the compliance archive (logging/archive): the
// company's record of every crossing, written before the stanza goes on.
// It is always on; these keys choose where it lives, what else it records
// and what happens when it cannot record.
type Archive struct {
	// File is the archive database, relative to data_dir unless absolute;
	// default "archive.db". It must not be the main database.
	File string `yaml:"file"`
	// AnchorFile receives the chain head periodically (one JSON line each),
	// relative to data_dir unless absolute; default "archive.anchor".
	AnchorFile string `yaml:"anchor_file"`
	// AnchorInterval is how often the chain head is anchored; default 1m.
	AnchorInterval Duration `yaml:"anchor_interval"`
	// OnArchiveFailure is refuse (default: a crossing that cannot be
	// recorded is refused with resource-constraint) or allow (it is
	// delivered unrecorded and an error is logged).
	OnArchiveFailure string `yaml:"on_archive_failure"`
	// Internal also records messages between local accounts; default false.
	Internal bool `yaml:"internal"`
	// Presence also records availability presence that crosses (and, with
	// Internal, internal presence); default false. Subscription requests
	// and answers are always recorded.
	Presence bool `yaml:"presence"`
	// Retention is how long rows are kept; the server prunes older rows
	// daily, sparing legal holds. 0 (default) keeps everything forever.
	Retention Duration `yaml:"retention"`
	// Sync is full (default: every commit is fsync'd) or normal (a power
	// cut may lose the last commits; a crash of the process loses nothing).
	Sync string `yaml:"sync"`
	// MaxBatch caps the rows committed in one transaction; default 1024.
	MaxBatch int `yaml:"max_batch"`
	// LockTimeout is how long a commit waits for a lock held by another
	// process (a reviewer's write, the CLI) before the crossing fails;
	// default 5s.
	LockTimeout Duration `yaml:"lock_timeout"`
}

// archiveDefaults returns the archive defaults.
func archiveDefaults() Archive {
	return Archive{
		File:             "archive.db",
		AnchorFile:       "archive.anchor",
		AnchorInterval:   Duration(time.Minute),
		OnArchiveFailure: ArchiveRefuse,
		Sync:             ArchiveSyncFull,
		MaxBatch:         1024,
		LockTimeout:      Duration(5 * time.Second),
	}
}

// validate checks the archive section.
func (a *Archive) validate(v *checker) {
	switch f := filepath.Clean(a.File); {
	case a.File == "":
		v.fail("archive.file", "must not be empty")
	case f == "gatehouse.db" || f == ".":
		v.fail("archive.file", "%q is the main database; use a file of its own such as \"archive.db\"", a.File)
	}
	if a.AnchorFile != "" && filepath.Clean(a.AnchorFile) == filepath.Clean(a.File) {
		v.fail("archive.anchor_file", "must differ from archive.file")
	}
	if a.AnchorInterval < Duration(time.Second) {
		v.fail("archive.anchor_interval", "must be at least 1s, got %s", a.AnchorInterval)
	}
	v.oneOf("archive.on_archive_failure", a.OnArchiveFailure, ArchiveRefuse, ArchiveAllow)
	v.oneOf("archive.sync", a.Sync, ArchiveSyncFull, ArchiveSyncNormal)
	if a.Retention < 0 {
		v.fail("archive.retention", "must be 0 (keep forever) or a positive duration such as \"61320h\", got %s", a.Retention)
	}
	v.between("archive.max_batch", a.MaxBatch, 1, 65536)
	if a.LockTimeout < Duration(10*time.Millisecond) {
		v.fail("archive.lock_timeout", "must be at least 10ms, got %s", a.LockTimeout)
	}
}

// Path resolves name (archive.file or anchor_file) against dataDir.
func (a *Archive) Path(dataDir, name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dataDir, name)
}
