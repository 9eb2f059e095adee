package register

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are process-wide: several stores in one process (tests) add up.
var (
	metricDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_register_room_dropped_sessions_total",
		Help: "Sessions removed because their room instance was gone for good (the room reaper).",
	})
	metricSessions = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_register_sessions",
		Help: "Online sessions held by the register.",
	})
	registersVec = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_register_registers_total",
		Help: "Register calls by result: new (uid was offline), replaced (another connection of the uid was replaced), refreshed (same connection again).",
	}, []string{"result"})
	unregistersVec = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_register_unregisters_total",
		Help: "Unregister calls by result: removed, stale (the uid is held by a newer connection, kept), missing (uid offline).",
	}, []string{"result"})

	// Resolved once so the hot path does no label lookup.
	metricRegisters   = children(registersVec, resultNew, resultReplaced, resultRefreshed, resultAdded)
	metricUnregisters = children(unregistersVec, resultRemoved, resultStale, resultMissing)
)

func children(v *prometheus.CounterVec, results ...string) map[string]prometheus.Counter {
	m := make(map[string]prometheus.Counter, len(results))
	for _, r := range results {
		m[r] = v.WithLabelValues(r)
	}
	return m
}
