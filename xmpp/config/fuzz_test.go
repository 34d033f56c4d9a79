package config

import (
	"errors"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// an *Error carrying one of the sentinels, and that an accepted
// configuration is valid and survives a marshal/parse round trip.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("hosts: [Example.COM]\nc2s: {listen: ['[::1]:0'], ping_interval: 1m}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnknownKey) &&
				!errors.Is(err, ErrType) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		c2, err := Parse(out, "round-trip")
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out)
		}
		emptyNil(c)
		emptyNil(c2)
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}

// emptyNil makes nil and empty lists compare equal.
func emptyNil(c *Config) {
	for _, p := range []*[]string{&c.Hosts, &c.C2S.Listen, &c.C2S.ListenTLS} {
		if len(*p) == 0 {
			*p = nil
		}
	}
}
