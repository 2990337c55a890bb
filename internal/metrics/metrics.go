// Package metrics is hostnetd's Prometheus metrics: what it holds (object
// counts), how fast it answers (API request latency by route and status),
// what the kernel costs it (operation latency, objects applied, nftables
// batch sizes), how often the kernel drifted and was repaired, and each
// endpoint's traffic (the counters of its host-side device).
//
// The rest of the daemon knows nothing of Prometheus: the server calls
// ObserveRequest, the service hands its events to ObserveEvent, the
// reconciler's host is wrapped by InstrumentHost, and the counts and
// traffic are read at scrape time through a Source. The metrics are
// served on a listener of their own (Serve), opt-in, never on the API's
// socket.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane"
)

// Inventory is what the daemon holds, read at scrape time.
type Inventory struct {
	Networks   []api.Network
	Endpoints  []api.Endpoint
	Namespaces []api.Namespace
}

// Source supplies what is read at scrape time. A nil field is left out.
type Source struct {
	// Inventory reads the objects held.
	Inventory func(ctx context.Context) (Inventory, error)
	// LinkCounters reads the counters of the host namespace's devices
	// whose names start with prefix (dataplane.Linux.LinkCounters).
	LinkCounters func(ctx context.Context, prefix string) (map[string]dataplane.LinkCounters, error)
	// Followers returns the number of clients following the events.
	Followers func() int
	// Build is the daemon's version, for hostnet_build_info.
	Build string
}

// ScrapeTimeout bounds what one scrape reads of the store and the kernel.
const ScrapeTimeout = 5 * time.Second

// Metrics holds hostnetd's metrics in a registry of their own.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	apiRequests   *prometheus.HistogramVec
	kernelOps     *prometheus.HistogramVec
	kernelObjects *prometheus.CounterVec
	nftBatch      prometheus.Histogram
	reconciles    *prometheus.HistogramVec
	driftFound    prometheus.Counter
	driftRepaired prometheus.Counter
	events        *prometheus.CounterVec
}

// Latency buckets: API calls and kernel operations take from tens of
// microseconds (a read) to seconds (a big batch on a loaded host).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New returns the metrics, with the Go runtime's and the process's, and
// the collector of what src reads at scrape time.
func New(src Source, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.Default()
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: log}
	m.apiRequests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hostnet_api_request_duration_seconds", Help: "Time hostnetd took to answer API requests, by method, route and HTTP status.",
		Buckets: latencyBuckets,
	}, []string{"method", "route", "code"})
	m.kernelOps = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hostnet_kernel_operation_duration_seconds", Help: "Time the kernel operations of the reconciler took, by operation (apply, sync_firewall, observe, firewall_drift, delete_flows) and result.",
		Buckets: latencyBuckets,
	}, []string{"operation", "result"})
	m.kernelObjects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hostnet_kernel_objects_applied_total", Help: "Kernel objects the reconciler ensured or removed, by kind (link, address, route, nft element, ...) and change (ensure, remove).",
	}, []string{"kind", "change"})
	m.nftBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hostnet_nftables_batch_objects", Help: "nftables objects (sets, maps, chains, rules, elements) sent in one batch.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	})
	m.reconciles = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hostnet_reconcile_duration_seconds", Help: "Time the self-repair passes (a light check, or a full pass) took, by result.",
		Buckets: latencyBuckets,
	}, []string{"result"})
	m.driftFound = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hostnet_reconcile_drift_found_total", Help: "Differences between the kernel and the intent that self-repair found.",
	})
	m.driftRepaired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hostnet_reconcile_drift_repaired_total", Help: "Differences between the kernel and the intent that self-repair repaired.",
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hostnet_events_total", Help: "Events recorded (hostnet events), by object type and action.",
	}, []string{"type", "action"})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hostnet_build_info", Help: "hostnetd's build: always 1.",
		ConstLabels: prometheus.Labels{"version": src.Build, "goversion": runtime.Version()},
	})
	build.Set(1)
	if src.Followers != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hostnet_event_followers", Help: "Clients following the events (GET /events?follow=1).",
		}, func() float64 { return float64(src.Followers()) }))
	}
	m.reg.MustRegister(m.apiRequests, m.kernelOps, m.kernelObjects, m.nftBatch, m.reconciles, m.driftFound, m.driftRepaired, m.events, build,
		&inventoryCollector{src: src, log: log},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry of the metrics, for tests and handlers.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn), Timeout: 2 * ScrapeTimeout})
}

// ObserveRequest records an API request (server.Options.ObserveRequest).
func (m *Metrics) ObserveRequest(method, route string, status int, took time.Duration) {
	m.apiRequests.WithLabelValues(method, route, strconv.Itoa(status)).Observe(took.Seconds())
}

// ObserveReconcile records a self-repair pass.
func (m *Metrics) ObserveReconcile(took time.Duration, err error) {
	m.reconciles.WithLabelValues(result(err)).Observe(took.Seconds())
}

// ObserveEvent counts an event (service.Observe), and the drift that the
// daemon's own events report: a repair and the collection of an endpoint
// whose namespace is gone are drift found and repaired, a failed repair
// drift found.
func (m *Metrics) ObserveEvent(ev api.Event) {
	m.events.WithLabelValues(ev.Type, ev.Action).Inc()
	if ev.Type != api.EventTypeDaemon {
		return
	}
	switch ev.Action {
	case "repair", "collect":
		m.driftFound.Inc()
		m.driftRepaired.Inc()
	case "fail":
		m.driftFound.Inc()
	}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Listen opens the metrics listener on addr (host:port): opened before
// serving, a bad or taken address fails the daemon's start.
func (m *Metrics) Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	return l, nil
}

// Serve serves /metrics on l until ctx ends.
func (m *Metrics) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "hostnetd serves its metrics at /metrics", http.StatusNotFound)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 3 * ScrapeTimeout, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}
