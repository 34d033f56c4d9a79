package config

// Components configures the XEP-0114 component host (transports/component).
type Components struct{}

// componentsDefaults returns the component host defaults.
func componentsDefaults() Components { return Components{} }

// validate checks the components section.
func (c *Components) validate(v *checker) {}
