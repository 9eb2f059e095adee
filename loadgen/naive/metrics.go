package naive

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	connsGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_naive_conns", Help: "Open client connections of the baseline server.",
	})
	droppedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_naive_dropped_total", Help: "Frames dropped on a full per-connection queue.",
	})
)
