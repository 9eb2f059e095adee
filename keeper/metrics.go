package keeper

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricVersions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_keeper_config_versions_total",
		Help: "Configuration versions seen, by result (loaded, refused).",
	}, []string{"result"})
	metricConfigVersion = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_keeper_config_version",
		Help: "ZooKeeper znode version of the configuration running in this process.",
	})
	metricSessions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_keeper_zk_sessions_total",
		Help: "ZooKeeper sessions established; more than one means a session expired and members were re-published.",
	})
	metricSyncErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_keeper_zk_sync_errors_total",
		Help: "ZooKeeper sync passes that failed and were retried.",
	})
	metricMembers = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lcpush_keeper_members",
		Help: "Live members mirrored from ZooKeeper, by role.",
	}, []string{"role"})
	metricFrozen = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_keeper_membership_frozen_total",
		Help: "Times the membership was frozen at its last known list because the ZooKeeper connection or session was lost.",
	})
	metricFrozenNow = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_keeper_membership_frozen",
		Help: "1 while the membership is frozen (no ZooKeeper session), else 0.",
	})
	metricHeld = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_keeper_members_held",
		Help: "Members known before a ZooKeeper outage still listed, within the grace after it, though their znodes are missing.",
	})
	metricOutageRemoved = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_keeper_members_removed_after_outage_total",
		Help: "Members removed because their znodes were still missing when the grace after a ZooKeeper outage ended.",
	})
)
