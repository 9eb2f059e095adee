package remote

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are process-wide: several Registers or Pools in one process (tests)
// add up.
var (
	mPoolClients = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_remote_pool_clients",
		Help: "RPC clients held by connection pools (one per target address).",
	})
	mRefills = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_remote_refills_total",
		Help: "Register refills after a membership change, by result (ok, error).",
	}, []string{"result"})
	mRefilled = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_remote_refilled_sessions_total",
		Help: "Local sessions re-announced to a register that restarted, joined or took over their uids.",
	})
	mMovedAway = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_remote_moved_sessions_total",
		Help: "Local sessions removed from a register that no longer owns their uid.",
	})
	mNoMember = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_remote_no_member_total",
		Help: "Calls that found no live member of the role they need, by role.",
	}, []string{"role"})
	mReaped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_remote_reaped_sessions_total",
		Help: "Sessions dropped from the registers because their room instance was out of membership for remote.RegistersConfig.ReapRoomsAfter (gone for good).",
	})
	mFailover = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_remote_failovers_total",
		Help: "Calls retried on the next instance of a role after the first was unavailable, by role.",
	}, []string{"role"})

	mRefillOK  = mRefills.WithLabelValues("ok")
	mRefillErr = mRefills.WithLabelValues("error")
)
