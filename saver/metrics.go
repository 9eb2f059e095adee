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
	metricParked = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_saver_parked",
		Help: "Unicast entries parked (loaded MaxLoads times without ACK), as the store last reported.",
	})
	metricParkedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_saver_parked_total",
		Help: "Messages parked after MaxLoads loads without ACK, by kind (unicast, broadcast).",
	}, []string{"kind"})
	metricParkedUnicast   = metricParkedTotal.WithLabelValues("unicast")
	metricParkedBroadcast = metricParkedTotal.WithLabelValues("broadcast")
	metricInboxDropped    = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_inbox_dropped_total",
		Help: "Oldest entries dropped because an inbox went past InboxCap.",
	})
	metricCursorRetries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_cursor_cas_retries_total",
		Help: "RedisStore calls that re-read a user's broadcast cursors because another call changed them first (one per retry; a call that runs out of retries answers unavailable).",
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
	opUserStats     = "user_stats"
	opOpenStatus    = "open_status"
	opAddSent       = "add_sent"
	opStatus        = "status"
	opUserState     = "user_state"
	opEnqueue       = "enqueue"
	opDequeue       = "dequeue"
	opQueued        = "queued"
	opQueueOwners   = "queue_owners"
	opClaim         = "claim"
)

// opMetrics holds the label children of one op, resolved once.
type opMetrics struct {
	errors   prometheus.Counter
	duration prometheus.Observer
}

var ops = func() map[string]opMetrics {
	m := map[string]opMetrics{}
	for _, op := range []string{opSave, opSaveBroadcast, opLoad, opAck, opExpire, opStats, opUserStats,
		opOpenStatus, opAddSent, opStatus, opUserState, opEnqueue, opDequeue, opQueued, opQueueOwners, opClaim} {
		m[op] = opMetrics{errors: metricErrors.WithLabelValues(op), duration: metricDuration.WithLabelValues(op)}
	}
	return m
}()

// Metrics of RedisStore: its durable queue towards MySQL and its recovery
// from a Redis that lost data.
var (
	metricDurableQueue = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_saver_durable_queue",
		Help: "Rows waiting to be written to MySQL.",
	})
	metricDurableCommitted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_durable_committed_total",
		Help: "Rows written to MySQL.",
	})
	metricDurableRetries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_durable_retries_total",
		Help: "MySQL batch writes that failed and will be retried.",
	})
	metricDurableRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_saver_durable_refused_total",
		Help: "Calls refused with ErrUnavailable because the durable queue was full, by op.",
	}, []string{"op"})
	metricDurableDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_saver_durable_dropped_total",
		Help: "Rows never written to MySQL, by reason (rejected: MySQL refused the row itself; closed: still queued at close).",
	}, []string{"reason"})
	metricDurableHealthy = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_saver_durable_healthy",
		Help: "1 while the last MySQL batch write succeeded, 0 while writes are failing.",
	})
	metricRecovered = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_recovered_total",
		Help: "Entries copied back from MySQL into Redis after Redis lost them.",
	})
	metricReloads = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_saver_reloads_total",
		Help: "Per-user reloads of an inbox from MySQL into Redis, by result (ok, failed).",
	}, []string{"result"})
	metricCursorIndexTruncated = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_cursor_index_truncated_total",
		Help: "Recovery indexes of the broadcast cursor log that reached their bound: users past it get ACKed live broadcasts once more.",
	})
	metricCursorLogDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_cursor_log_entries_dropped_total",
		Help: "Ended sessions' broadcast cursors in a cursor log row MySQL refused (too big for max_allowed_packet).",
	})
	metricEpochChanges = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_epoch_changes_total",
		Help: "Times the saver saw Redis wiped or replaced and started a new epoch.",
	})
	metricBroadcastsRestored = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_broadcasts_restored_total",
		Help: "Broadcasts copied back from MySQL into Redis after Redis lost them.",
	})
)
