package server

import "context"

// setupS2S builds the federation subsystem and installs it as the router's
// remote deliverer (issue 6). Called from New.
func (s *Server) setupS2S(ctx context.Context) error { return nil }

// listenS2S binds the s2s listeners; called from Listen.
func (s *Server) listenS2S() error { return nil }

// serveS2S accepts inbound s2s streams until ctx ends; called from Run.
func (s *Server) serveS2S(ctx context.Context) {}

// shutdownS2S closes s2s streams; called from Run after c2s shut down and
// before the archive closes.
func (s *Server) shutdownS2S(ctx context.Context) {}
