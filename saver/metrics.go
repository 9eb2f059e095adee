package saver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are process-wide: several services in one process (tests) add up,
// and the pending gauge shows the last store that reported.
var (
	metricSaved = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_saved_total",
		Help: "Unicast (uid, message) entries saved.",
	})
	metricBroadcasts = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_broadcasts_saved_total",
		Help: "Broadcast messages saved.",
	})
	metricAcked = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_acked_total",
		Help: "Message ids ACKed that took effect (unicast deleted or broadcast recorded).",
	})
	metricLoaded = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_loaded_total",
		Help: "Messages returned by loads.",
	})
	metricExpired = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_expired_total",
		Help: "Entries and broadcasts dropped at their TTL by the sweeper.",
	})
	metricErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_saver_errors_total",
		Help: "Failed store operations by op.",
	}, []string{"op"})
	metricPending = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_saver_pending",
		Help: "Unicast entries stored and not yet ACKed or expired.",
	})
	metricDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lcpush_saver_op_duration_seconds",
		Help:    "Store operation latency by op (durable writes include the fsync).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1},
	}, []string{"op"})
)

// Operation names, the op label values.
const (
	opSave          = "save"
	opSaveBroadcast = "save_broadcast"
	opLoad          = "load"
	opAck           = "ack"
	opExpire        = "expire"
	opStats         = "stats"
)

// opMetrics holds the label children of one op, resolved once.
type opMetrics struct {
	errors   prometheus.Counter
	duration prometheus.Observer
}

var ops = func() map[string]opMetrics {
	m := map[string]opMetrics{}
	for _, op := range []string{opSave, opSaveBroadcast, opLoad, opAck, opExpire, opStats} {
		m[op] = opMetrics{errors: metricErrors.WithLabelValues(op), duration: metricDuration.WithLabelValues(op)}
	}
	return m
}()
