package center

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	statusSkipped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_center_status_skipped_total",
		Help: "QoS 0 pushes and broadcasts accepted without a delivery status record (too many being written, or the store refused).",
	})
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_requests_total",
		Help: "API requests by endpoint and HTTP status code.",
	}, []string{"endpoint", "code"})
	latency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lcpush_center_request_seconds",
		Help:    "API request duration by endpoint.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
	}, []string{"endpoint"})
	pushes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_pushes_total",
		Help: "Accepted push requests (unicast and multicast) by QoS.",
	}, []string{"qos"})
	deliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_deliveries_total",
		Help: "Targets the rooms reported connected, by kind (push, broadcast, retry: from the lookup retry queue).",
	}, []string{"kind"})
	roomErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_room_errors_total",
		Help: "Failed room calls by operation (push, kick, broadcast; broadcast_retry: a job task found its room unreachable and calls it again).",
	}, []string{"op"})
	depErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_dependency_errors_total",
		Help: "Failed calls to register, saver or the room list, by operation.",
	}, []string{"op"})
	rateLimitedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_center_rate_limited_total",
		Help: "Requests refused with 429 (a full send queue, or broadcast job slots).",
	})
	jobEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_jobs_total",
		Help: "Broadcast jobs by event (started, done, failed, deadline, refused); deadline jobs are counted in failed too.",
	}, []string{"event"})
	jobRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_jobs_refused_total",
		Help: "Broadcast requests refused, by reason: app_slots (the app's max_jobs_per_app), total_slots (max_jobs), rate (below min_broadcast_rate).",
	}, []string{"reason"})
	jobsRunning = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_center_jobs_running",
		Help: "Broadcast jobs this center accepted that still run (holding its job slots).",
	})
)

// Broadcast jobs on the shared board (jobs.go).
var (
	taskEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_job_tasks_total",
		Help: "Broadcast tasks (one room of a job) on this center, by event: claimed (pending), resumed (taken over from a lapsed lease or after a restart), lost (another center took the claim), done, failed.",
	}, []string{"event"})
	jobsFinished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_center_jobs_finished_total",
		Help: "Broadcast jobs this center finished on the board (whichever center ended the last task), by state: done, failed.",
	}, []string{"state"})
)
