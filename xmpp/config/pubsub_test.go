package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPubSubUploadParse(t *testing.T) {
	c, err := Parse([]byte("hosts: [example.com]\npubsub:\n  create: none\n  max_items: 10\nupload:\n  enabled: true\n  listen: 0.0.0.0:5443\n  public_url: https://files.example.com/up\n  quota: 0\n  slot_lifetime: 1m\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.PubSub.Create != PubSubCreateNone || c.PubSub.MaxItems != 10 || !c.PubSub.Enabled || c.PubSub.File != "pubsub.db" {
		t.Fatalf("pubsub %+v", c.PubSub)
	}
	if got := c.PubSub.ServiceDomain(c.Hosts); got != "pubsub.example.com" {
		t.Fatalf("pubsub domain %q", got)
	}
	u := c.Upload
	if !u.Enabled || u.Listen != "0.0.0.0:5443" || u.Quota != 0 || u.SlotLifetime.D() != time.Minute || u.MaxFileSize != 100<<20 {
		t.Fatalf("upload %+v", u)
	}
	if got := u.ServiceDomain(c.Hosts); got != "upload.example.com" {
		t.Fatalf("upload domain %q", got)
	}
}

func TestPubSubUploadValidation(t *testing.T) {
	tests := []struct {
		doc, path, msg string
	}{
		{"pubsub:\n  domain: localhost", "pubsub.domain", "hosted domain"},
		{"pubsub:\n  domain: \"a..b\"", "pubsub.domain", "not a valid domain"},
		{"pubsub:\n  domain: PubSub.Example.com", "pubsub.domain", "canonical form"},
		{"pubsub:\n  create: anyone", "pubsub.create", "not one of local, none"},
		{"pubsub:\n  max_items: 0", "pubsub.max_items", "between 1 and 1000"},
		{"pubsub:\n  max_item_bytes: 10", "pubsub.max_item_bytes", "between 1024"},
		{"pubsub:\n  file: mam.db", "pubsub.file", "another database"},
		{"upload:\n  domain: localhost", "upload.domain", "hosted domain"},
		{"upload:\n  enabled: true\n  listen: nowhere", "upload.listen", "missing port"},
		{"upload:\n  public_url: ftp://x.example", "upload.public_url", "must start with https://"},
		{"upload:\n  public_url: https://x.example/?a=b", "upload.public_url", "without query"},
		{"upload:\n  dir: .", "upload.dir", "directory of its own"},
		{"upload:\n  max_file_size: 0", "upload.max_file_size", "at least 1 byte"},
		{"upload:\n  quota: -1", "upload.quota", "0 (no quota)"},
		{"upload:\n  slot_lifetime: 0s", "upload.slot_lifetime", "between 1s and 24h"},
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
