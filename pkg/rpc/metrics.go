package rpc

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are process-wide (summed over every client and server in the
// process) and their label values are resolved once here, so that counting
// on the hot path is one atomic add and never allocates.
var (
	clientCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_rpc_client_calls_total",
		Help: "Calls made by RPC clients, by result.",
	}, []string{"result"})
	clientLate = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_rpc_client_late_replies_total",
		Help: "Replies that arrived after their call gave up (deadline or cancel) and were dropped.",
	})
	clientDials = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_rpc_client_dials_total",
		Help: "Connection attempts by RPC clients, by result.",
	}, []string{"result"})

	serverCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_rpc_server_calls_total",
		Help: "Requests received by RPC servers, by result.",
	}, []string{"result"})
	serverConns = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_rpc_server_conns",
		Help: "Open connections on RPC servers.",
	})
	serverBadFrames = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_rpc_server_bad_frames_total",
		Help: "Connections closed because the peer sent a malformed or oversized frame.",
	})

	writes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_rpc_writes_total",
		Help: "Write syscalls on RPC connections; calls divided by writes is the batching factor.",
	}, []string{"side"})
	writeBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_rpc_write_bytes_total",
		Help: "Bytes written on RPC connections.",
	}, []string{"side"})
)

var (
	mCallOK          = clientCalls.WithLabelValues("ok")
	mCallRemoteErr   = clientCalls.WithLabelValues("remote_error")
	mCallOverloaded  = clientCalls.WithLabelValues("overloaded")
	mCallUnavailable = clientCalls.WithLabelValues("unavailable")
	mCallConnLost    = clientCalls.WithLabelValues("conn_lost")
	mCallCanceled    = clientCalls.WithLabelValues("canceled")
	mCallOther       = clientCalls.WithLabelValues("other")
	mDialOK          = clientDials.WithLabelValues("ok")
	mDialErr         = clientDials.WithLabelValues("error")

	mSrvOK          = serverCalls.WithLabelValues("ok")
	mSrvErr         = serverCalls.WithLabelValues("error")
	mSrvOverloaded  = serverCalls.WithLabelValues("overloaded")
	mSrvUnknown     = serverCalls.WithLabelValues("unknown_method")
	mSrvExpired     = serverCalls.WithLabelValues("expired")
	mSrvUnavailable = serverCalls.WithLabelValues("unavailable")
)

// ioMetrics count the writes of one side.
type ioMetrics struct {
	writes, bytes prometheus.Counter
}

var (
	clientIO = &ioMetrics{writes.WithLabelValues("client"), writeBytes.WithLabelValues("client")}
	serverIO = &ioMetrics{writes.WithLabelValues("server"), writeBytes.WithLabelValues("server")}
)
