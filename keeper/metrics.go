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
)
