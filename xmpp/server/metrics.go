package server

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/logging/metrics"
)

// setupMetrics creates the Prometheus collectors when metrics.listen is
// set; with it empty nothing is counted (the router's hot path stays
// without an observer).
func (s *Server) setupMetrics() {
	if s.cfg.Metrics.Listen == "" {
		return
	}
	m := metrics.New()
	s.metrics = m
	s.router.SetObserver(m)
	conns := func(kind string, f func() float64) {
		m.Gauge("connections", "Live connections by kind: bound client sessions, s2s links, components.", prometheus.Labels{"kind": kind}, f)
	}
	conns("c2s", func() float64 { return float64(s.table.Count()) })
	conns("s2s", func() float64 {
		n := 0
		if svc := s.S2S(); svc != nil {
			for _, l := range svc.Links() {
				if l.State == "up" {
					n++
				}
			}
		}
		return float64(n)
	})
	conns("component", func() float64 {
		if h := s.ComponentHost(); h != nil {
			return float64(len(h.Links()))
		}
		return 0
	})
	m.Gauge("c2s_queue_depth", "Stanzas waiting to be written to client sessions (all sessions together).", nil, func() float64 {
		n := 0
		for _, ss := range s.table.All() {
			n += ss.Queued()
		}
		return float64(n)
	})
	m.Gauge("s2s_queue_depth", "Stanzas waiting for outbound federation links to come up.", nil, func() float64 {
		n := 0
		if svc := s.S2S(); svc != nil {
			for _, l := range svc.Links() {
				n += l.Queue
			}
		}
		return float64(n)
	})
	m.Counter("auth_failures_total", "Failed client SASL authentication attempts.", nil, func() float64 {
		return float64(s.c2s.AuthFailures())
	})
}

// Metrics returns the collectors (nil when metrics are off).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// listenMetrics binds the /metrics endpoint.
func (s *Server) listenMetrics() error {
	if s.metrics == nil {
		return nil
	}
	ln, err := s.metrics.Listen(s.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.metricsAddr = ln.Addr().String()
	s.log.WithField("addr", s.metricsAddr).Info("metrics listening")
	return nil
}

// MetricsAddr is the bound metrics address ("" when off).
func (s *Server) MetricsAddr() string { return s.metricsAddr }

func (s *Server) shutdownMetrics(ctx context.Context) {
	if s.metrics != nil {
		_ = s.metrics.Shutdown(ctx)
	}
}
