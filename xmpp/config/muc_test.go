package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMUCParse(t *testing.T) {
	c, err := Parse([]byte("hosts: [example.com]\nmuc:\n  domain: chat.example.com\n  create: anyone\n  max_occupants: 500\n  history: 0\n  archive: false\n  archive_retention: 0s\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := MUC{Enabled: true, Domain: "chat.example.com", File: "muc.db", Create: MUCCreateAnyone, MaxOccupants: 500,
		History: 0, Archive: false, ArchiveFile: "muc_archive.db", ArchiveRetention: 0}
	if c.MUC != want {
		t.Fatalf("got %+v, want %+v", c.MUC, want)
	}
	if d := c.MUC.ServiceDomain(c.Hosts); d != "chat.example.com" {
		t.Fatalf("service domain %q", d)
	}
	c, err = Parse([]byte("hosts: [example.com, other.example]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := c.MUC.ServiceDomain(c.Hosts); d != "conference.example.com" || c.MUC.ArchiveRetention.D() != 365*24*time.Hour {
		t.Fatalf("defaults: %q %+v", d, c.MUC)
	}
}

func TestMUCValidation(t *testing.T) {
	tests := []struct {
		doc, path, msg string
	}{
		{"muc:\n  domain: \"not a domain@\"", "muc.domain", "not a valid domain"},
		{"muc:\n  domain: Chat.Example.com", "muc.domain", "canonical form"},
		{"muc:\n  domain: localhost", "muc.domain", "hosted domain"},
		{"muc:\n  create: admins", "muc.create", "not one of local, anyone"},
		{"muc:\n  max_occupants: 0", "muc.max_occupants", "between 1 and 10000"},
		{"muc:\n  history: 1001", "muc.history", "between 0 and 1000"},
		{"muc:\n  archive_retention: -1h", "muc.archive_retention", "must be 0"},
		{"muc:\n  file: \"\"", "muc.file", "must not be empty"},
		{"muc:\n  archive_file: gatehouse.db", "muc.archive_file", "another database"},
		{"muc:\n  file: mam.db", "muc.file", "another database"},
		{"muc:\n  archive_file: muc.db", "muc.archive_file", "must differ from muc.file"},
		{"mam:\n  file: history.db\nmuc:\n  file: history.db", "muc.file", "another database"},
		{"muc:\n  archive_file: archive.db", "muc.archive_file", "another database"},
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
