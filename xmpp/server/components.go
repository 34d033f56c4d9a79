package server

import "context"

// listenComponents binds the XEP-0114 component listeners (issue 7).
// Called from Listen.
func (s *Server) listenComponents() error { return nil }

// serveComponents accepts components until ctx ends; called from Run.
func (s *Server) serveComponents(ctx context.Context) {}

// shutdownComponents closes component streams; called from Run after c2s
// shut down and before the archive closes.
func (s *Server) shutdownComponents(ctx context.Context) {}
