package coordinator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	callbacks = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_callbacks_total",
		Help: "Callback POST attempts by app, kind (upstream, status) and result (ok, error).",
	}, []string{"app", "kind", "result"})
	drops = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_drops_total",
		Help: "Callbacks dropped by app and reason (queue_full, retries, no_callback, shutdown).",
	}, []string{"app", "reason"})
	latency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lcpush_coordinator_callback_seconds",
		Help:    "Duration of callback POSTs by kind.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	}, []string{"kind"})
	queued = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_coordinator_queued",
		Help: "Callbacks waiting to be sent or retried, all apps.",
	})
	kicks = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_kicks_total",
		Help: "Kicks routed to rooms by result (kicked, gone, error).",
	}, []string{"result"})
)
