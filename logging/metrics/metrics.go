// Package metrics exposes the server's operational figures to Prometheus:
// connections by kind, stanzas routed by zone, boundary decisions by
// verdict and rule, compliance-archive commit latency, queue depths and
// authentication failures. Each server has its own registry (no global
// state), served on a loopback address.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gatehouse/xmpp/router"
)

const namespace = "gatehouse"

// Metrics is one server's set of collectors.
type Metrics struct {
	Registry *prometheus.Registry

	routed    [3][3]prometheus.Counter // [src zone][dst zone]
	decisions *prometheus.CounterVec
	boundErr  prometheus.Counter
	commit    prometheus.Histogram

	srv *http.Server
}

var zoneNames = [3]string{"local", "remote", "transport"}

func zoneIndex(z router.Zone) int {
	switch z {
	case router.ZoneRemote:
		return 1
	case router.ZoneTransport:
		return 2
	}
	return 0
}

// New creates the collectors, with the Go runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: namespace}))
	m := &Metrics{Registry: reg}
	routed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "stanzas_routed_total",
		Help: "Stanzas routed, by the zone they came from and the zone they went to.",
	}, []string{"from", "to"})
	for i, s := range zoneNames {
		for j, d := range zoneNames {
			m.routed[i][j] = routed.WithLabelValues(s, d)
		}
	}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "boundary_decisions_total",
		Help: "Boundary crossings decided, by verdict (allow, deny) and policy rule (empty: no rule matched).",
	}, []string{"verdict", "rule"})
	m.boundErr = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "boundary_errors_total",
		Help: "Crossings refused because the boundary failed (e.g. the archive could not commit).",
	})
	m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "archive_commit_seconds",
		Help:    "Compliance archive group-commit latency.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	reg.MustRegister(routed, m.decisions, m.boundErr, m.commit)
	return m
}

// Routed implements router.Observer.
func (m *Metrics) Routed(src, dst router.Zone) { m.routed[zoneIndex(src)][zoneIndex(dst)].Inc() }

// Decided implements router.Observer.
func (m *Metrics) Decided(d router.Decision, err error) {
	if err != nil {
		m.boundErr.Inc()
		return
	}
	v := "allow"
	if d.Verdict == router.Deny {
		v = "deny"
	}
	m.decisions.WithLabelValues(v, d.Rule).Inc()
}

// ArchiveCommit records one archive commit's latency.
func (m *Metrics) ArchiveCommit(d time.Duration) { m.commit.Observe(d.Seconds()) }

// Gauge registers a gauge read at scrape time, e.g. connections of a kind.
func (m *Metrics) Gauge(name, help string, labels prometheus.Labels, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: name, Help: help, ConstLabels: labels}, f))
}

// Counter registers a counter read at scrape time from a running total.
func (m *Metrics) Counter(name, help string, labels prometheus.Labels, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: name, Help: help, ConstLabels: labels}, f))
}

// Listen serves /metrics on addr, which must be a loopback address.
func (m *Metrics) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		_ = ln.Close()
		return nil, fmt.Errorf("metrics: %s is not a loopback address", addr)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.srv.Serve(ln) }()
	return ln, nil
}

// Shutdown stops serving.
func (m *Metrics) Shutdown(ctx context.Context) error {
	if m.srv == nil {
		return nil
	}
	if err := m.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
