package config

// MAM configures message archive for users (xmpp/mod/mam).
type MAM struct{}

// mamDefaults returns the defaults of the mam section.
func mamDefaults() MAM { return MAM{} }

// validate checks the mam section.
func (c *MAM) validate(v *checker) {}
