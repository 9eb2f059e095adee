package coordinator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	callbacks = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_callbacks_total",
		Help: "Callback POST attempts by app, kind (upstream, status, batch) and result (ok, error).",
	}, []string{"app", "kind", "result"})
	drops = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_drops_total",
		Help: "Callback events dropped by app and reason (queue_full, retries, no_callback, shutdown).",
	}, []string{"app", "reason"})
	batches = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_batches_total",
		Help: "Batched callback POSTs ({\"events\":[...]}) delivered, by app.",
	}, []string{"app"})
	batchEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_batch_events_total",
		Help: "Events delivered in batched POSTs, by app (divided by batches_total: events per batch).",
	}, []string{"app"})
	batchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "lcpush_coordinator_batch_events",
		Help:    "Events per delivered batched POST, all apps.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 8),
	})
	debounced = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_debounced_total",
		Help: "Status events not sent because an offline and an online of one uid fell within status_debounce (two per pair), by app.",
	}, []string{"app"})
	debounceFull = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_debounce_full_total",
		Help: "Offline events sent at once because status_debounce_max offlines were already held, by app.",
	}, []string{"app"})
	latency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lcpush_coordinator_callback_seconds",
		Help:    "Duration of callback POSTs by kind.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	}, []string{"kind"})
	queued = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_coordinator_queued",
		Help: "Callback events waiting to be sent, retried or held by status_debounce, all apps.",
	})
	kicks = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_coordinator_kicks_total",
		Help: "Kicks routed to rooms by result (kicked, gone, error).",
	}, []string{"result"})
)
