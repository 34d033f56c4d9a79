package config

// Policy configures boundary policy (policy/).
type Policy struct{}

// policyDefaults returns the defaults of the policy section.
func policyDefaults() Policy { return Policy{} }

// validate checks the policy section.
func (c *Policy) validate(v *checker) {}
