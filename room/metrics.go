package room

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/lcpush/lcpush/pkg/proto"
)

// Metrics are process-wide: several rooms in one process (tests, the single
// binary) add to the same series.
var (
	mConns = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_room_connections",
		Help: "Open client connections (admitted), authenticated or not.",
	})
	mConnsByTransport = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lcpush_room_connections_by_transport",
		Help: "Open client connections (admitted), by client transport: tcp or ws direct, tls or wss behind a trusted proxy (the TLS terminator).",
	}, []string{"transport"})
	mOnline = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "lcpush_room_online",
		Help: "Authenticated sessions.",
	})
	mAuths = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_auths_total",
		Help: "AUTH attempts by result.",
	}, []string{"result"})
	mPushes = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_pushes_written_total",
		Help: "PUSH frames written to clients (live and stored).",
	})
	mPushDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_push_dropped_total",
		Help: "Push deliveries dropped in the room (QoS 1 ones stay stored); reason loop_backlog_broadcast counts app-wide broadcasts to a whole event loop.",
	}, []string{"reason"})
	mCoverFull = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_cover_full_total",
		Help: "Stored broadcasts a load wrote without noting it (the loop's notes were full): the live delivery may send them to that connection again.",
	})
	mSentLost = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_sent_deltas_lost_total",
		Help: "Delivery-status sent notes the store did not take (pool full or store error).",
	})
	mAcks = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_acked_ids_total",
		Help: "Message ids received in ACK frames.",
	})
	mFramesIn = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_frames_in_total",
		Help: "Whole frames received from clients, by op.",
	}, []string{"op"})
	mErrorsSent = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_errors_sent_total",
		Help: "ERROR frames sent, by code.",
	}, []string{"code"})
	mCloses = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_closes_total",
		Help: "Connections closed by the room, by reason (peer closes are \"peer\").",
	}, []string{"reason"})
	mRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_refused_total",
		Help: "Connections refused at accept, by reason.",
	}, []string{"reason"})
	mRateLimited = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_rate_limited_total",
		Help: "Client frames refused with ERROR rate_limited, by op.",
	}, []string{"op"})
	mBackpressure = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_backpressure_total",
		Help: "Times a connection stopped being read because its unread replies passed the reply budget.",
	})
	mRevoked = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_apps_revoked_total",
		Help: "Apps taken from a connection that kept others (a login or kick through that app elsewhere).",
	})
	mAcksDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_acks_dropped_total",
		Help: "ACKed ids given up after the store refused them (they are delivered again), by reason: retry_time, retry_bound, shutdown.",
	}, []string{"reason"})
	mAckRetries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_ack_retries_total",
		Help: "Times a loop's ACK drain waited to retry ACKs the store refused.",
	})
	mRedelivered = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_room_redelivered_total",
		Help: "Stored messages pushed again by Redeliver (after a register re-fill).",
	})
	mBcastTasks = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lcpush_room_broadcast_tasks",
		Help: "Broadcast tasks in the rooms' tables, by state: running, or finished (kept to answer a resumed sub-task).",
	}, []string{"state"})
	mBcastCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_broadcast_calls_total",
		Help: "Broadcast calls by result: started a task, joined a running one, answered by a finished one, or refused (the table full of running tasks).",
	}, []string{"result"})
	mPoolDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lcpush_room_pool_rejected_total",
		Help: "Tasks the full (or closed) worker pool refused, by task.",
	}, []string{"task"})
)

// Close reasons.
const (
	closePeer        = "peer"
	closeProtocol    = "protocol_error"
	closeAuthTimeout = "auth_timeout"
	closeIdle        = "idle"
	closeKick        = "kick"
	closeSlow        = "slow_consumer"
	closeAuthFailed  = "auth_failed"
	closeInbound     = "inbound_overflow"
	closeErrors      = "error_budget" // too many refused frames
	closeHandshake   = "handshake"    // the transport refused the preamble or its address
	closeNoSession   = "no_session"   // a PROXY v2 LOCAL header (health check): served no session
)

// framesIn caches the per-op children so the hot path skips the label lookup.
var framesIn = func() (out [256]prometheus.Counter) {
	names := map[uint8]string{
		proto.OpAuth: "auth", proto.OpPing: "ping", proto.OpAck: "ack",
		proto.OpUpstream: "upstream", proto.OpBind: "bind", proto.OpUnbind: "unbind",
	}
	other := mFramesIn.WithLabelValues("other")
	for i := range out {
		if n, ok := names[uint8(i)]; ok {
			out[i] = mFramesIn.WithLabelValues(n)
		} else {
			out[i] = other
		}
	}
	return out
}()

var mClosePeer = mCloses.WithLabelValues(closePeer)

var (
	mBcastRunning  = mBcastTasks.WithLabelValues("running")
	mBcastFinished = mBcastTasks.WithLabelValues("finished")
	mBcastCallsBy  = map[string]prometheus.Counter{
		callStarted:  mBcastCalls.WithLabelValues(callStarted),
		callJoined:   mBcastCalls.WithLabelValues(callJoined),
		callFinished: mBcastCalls.WithLabelValues(callFinished),
		callRefused:  mBcastCalls.WithLabelValues(callRefused),
	}
)

// mConnsBy caches the children of mConnsByTransport by transport kind.
var mConnsBy = [...]prometheus.Gauge{
	trTCP: mConnsByTransport.WithLabelValues(trNames[trTCP]),
	trWS:  mConnsByTransport.WithLabelValues(trNames[trWS]),
	trTLS: mConnsByTransport.WithLabelValues(trNames[trTLS]),
	trWSS: mConnsByTransport.WithLabelValues(trNames[trWSS]),
}
