package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestArchiveParse(t *testing.T) {
	doc := "archive:\n  file: /srv/records/archive.db\n  anchor_file: /var/log/gatehouse/anchor\n  on_archive_failure: allow\n  internal: true\n  presence: true\n  retention: 61320h\n  sync: normal\n  max_batch: 64\n  lock_timeout: 250ms\n"
	c, err := Parse([]byte(doc), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Archive{File: "/srv/records/archive.db", AnchorFile: "/var/log/gatehouse/anchor", AnchorInterval: Duration(time.Minute),
		OnArchiveFailure: ArchiveAllow, Internal: true, Presence: true, Retention: Duration(61320 * time.Hour), Sync: ArchiveSyncNormal,
		MaxBatch: 64, LockTimeout: Duration(250 * time.Millisecond)}
	if c.Archive != want {
		t.Fatalf("got %+v, want %+v", c.Archive, want)
	}
	if got := c.Archive.Path("/data", c.Archive.File); got != "/srv/records/archive.db" {
		t.Fatalf("absolute path resolved to %s", got)
	}
	if got := c.Archive.Path("/data", "archive.db"); got != "/data/archive.db" {
		t.Fatalf("relative path resolved to %s", got)
	}
}

func TestArchiveValidation(t *testing.T) {
	tests := []struct {
		doc, path, msg string
	}{
		{"archive:\n  on_archive_failure: ignore", "archive.on_archive_failure", "not one of refuse, allow"},
		{"archive:\n  sync: off", "archive.sync", "not one of full, normal"},
		{"archive:\n  retention: -1h", "archive.retention", "must be 0"},
		{"archive:\n  max_batch: 0", "archive.max_batch", "between 1 and 65536"},
		{"archive:\n  lock_timeout: 1ms", "archive.lock_timeout", "at least 10ms"},
		{"archive:\n  anchor_interval: 10ms", "archive.anchor_interval", "at least 1s"},
		{"archive:\n  file: \"\"", "archive.file", "must not be empty"},
		{"archive:\n  file: ./gatehouse.db", "archive.file", "main database"},
		{"archive:\n  anchor_file: archive.db", "archive.anchor_file", "must differ"},
	}
	for _, tc := range tests {
		t.Run(tc.path+" "+tc.doc, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "t.yaml")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.path+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %s: ...%s", err, tc.path, tc.msg)
			}
		})
	}
}
