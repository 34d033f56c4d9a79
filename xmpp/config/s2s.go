package config

// S2S configures federation (s2s/).
type S2S struct{}

// s2sDefaults returns the defaults of the s2s section.
func s2sDefaults() S2S { return S2S{} }

// validate checks the s2s section.
func (c *S2S) validate(v *checker) {}
