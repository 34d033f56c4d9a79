package config

// Archive configures the compliance archive (logging/archive).
type Archive struct{}

// archiveDefaults returns the archive defaults.
func archiveDefaults() Archive { return Archive{} }

// validate checks the archive section.
func (a *Archive) validate(v *checker) {}
