package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_dispatcher_requests_total",
		Help: "Dispatch requests by HTTP status code.",
	}, []string{"code"})
	netRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_dispatcher_answers_by_net_total",
		Help: "Successful dispatch answers by client network type.",
	}, []string{"net"})
	transportAnswers = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_dispatcher_answers_by_transport_total",
		Help: "Successful dispatch answers by transport (tcp, ws, tls, wss).",
	}, []string{"transport"})
	retries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_dispatcher_retries_total",
		Help: "Dispatch requests that reported a retry or failed addresses.",
	})
)
