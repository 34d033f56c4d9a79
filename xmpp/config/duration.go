package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as a Go duration string such
// as "30s", "4m" or "1h30m". Bare numbers are rejected: a unit is required.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML decodes a duration string. Problems are reported as
// *yaml.TypeError so that they carry the line number like other value errors.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	bad := func(format string, args ...any) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
	}
	if n.Kind != yaml.ScalarNode {
		return bad("a duration must be a string such as \"30s\"")
	}
	if n.ShortTag() != "!!str" {
		return bad("duration %q needs a unit, such as \"30s\" or \"4m\"", n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return bad("invalid duration %q (use a unit, such as \"30s\" or \"4m\")", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML encodes d as a duration string.
func (d Duration) MarshalYAML() (any, error) {
	return time.Duration(d).String(), nil
}
