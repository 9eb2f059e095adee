package remote

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the lookup answers, the retried removals of moved sessions,
// the reconciliation and the redelivery hook (refill.go, registers.go).
var (
	mLookupUnanswered = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_remote_lookup_unanswered_total",
		Help: "Uids a Lookup could not answer (owner down or restarting, or still in its fill window).",
	})
	mForgets = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_remote_forget_total",
		Help: "Removals of moved sessions from their old register owner, by event (failed: retried later; dropped: the retry queue was full or the old owner stayed away too long).",
	}, []string{"event"})
	mReconciled = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_remote_reconciled_sessions_total",
		Help: "Sessions the periodic reconciliation fixed on the registers, by action (dropped: listed without a connection here or on a register that does not own the uid; restored: held here but missing from its owner).",
	}, []string{"action"})
	mRedeliver = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_remote_redeliver_total",
		Help: "Calls of the OnRefilled hook (the room re-pushing stored messages after a refill), by result (ok, error).",
	}, []string{"result"})

	mForgetFailed  = mForgets.WithLabelValues("failed")
	mForgetDropped = mForgets.WithLabelValues("dropped")
)
