package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMAMParse(t *testing.T) {
	c, err := Parse([]byte("mam:\n  enabled: false\n  default: roster\n  retention: 0s\n  max_page_size: 1000\n  file: /var/lib/gatehouse/history.db\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := MAM{Enabled: false, Default: MAMRoster, Retention: 0, MaxPageSize: 1000, File: "/var/lib/gatehouse/history.db"}
	if c.MAM != want {
		t.Fatalf("got %+v, want %+v", c.MAM, want)
	}
	c, err = Parse([]byte("mam:\n  retention: 720h\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.MAM.Retention.D() != 720*time.Hour || !c.MAM.Enabled || c.MAM.Default != MAMAlways || c.MAM.File != "mam.db" {
		t.Fatalf("partial section lost defaults: %+v", c.MAM)
	}
}

func TestMAMValidation(t *testing.T) {
	tests := []struct {
		doc, path, msg string
	}{
		{"mam:\n  default: sometimes", "mam.default", "not one of always, roster, never"},
		{"mam:\n  retention: -1h", "mam.retention", "must be 0"},
		{"mam:\n  max_page_size: 0", "mam.max_page_size", "between 1 and 1000"},
		{"mam:\n  max_page_size: 1001", "mam.max_page_size", "between 1 and 1000"},
		{"mam:\n  file: \"\"", "mam.file", "must not be empty"},
		{"mam:\n  file: gatehouse.db", "mam.file", "main database"},
		{"mam:\n  file: ./gatehouse.db", "mam.file", "main database"},
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
