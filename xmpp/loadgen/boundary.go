package loadgen

import (
	"context"
	"errors"
)

// ErrNeedsTransport is returned by the boundary scenario until a transport
// component host exists to send to.
var ErrNeedsTransport = errors.New("loadgen: the boundary scenario needs a transport component (issue 7); not implemented yet")

// BoundaryConfig is the boundary scenario: messages from local users to
// an outside address served by a component, with archive and policy on,
// measuring crossings/s and the latency the boundary adds compared with
// internal messaging. It is defined so the command line and the bench
// script can name it; it runs once a component host exists (issue 7).
type BoundaryConfig struct {
	Component string // the component's domain
	Pairs     int
	Rates     []int
}

// Boundary always returns ErrNeedsTransport for now.
func Boundary(ctx context.Context, t *Target, cfg BoundaryConfig) error {
	return ErrNeedsTransport
}
