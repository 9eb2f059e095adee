package room

import "github.com/lcpush/lcpush/pkg/config"

// Per-connection limits on client operations (docs/protocol.md, "Limits";
// config room.limits). Every op a client can repeat costs the room something
// (a reply, a store call, a worker task), so each has a token bucket; a
// frame over its limit is refused with ERROR rate_limited, and those ERRORs
// have a bucket of their own (writeError), past which the connection is
// closed.
const (
	maxApps         = 16 // apps bound on one connection
	authInboundSlop = 4  // MaxFrames of pipelined input kept while an AUTH is pending
)

// opLimit is a token bucket's shape: burst tokens, one more every msPerToken.
type opLimit struct {
	burst      uint16
	msPerToken uint32
}

// limitOf turns a configured limit into a bucket shape (validated by
// config: rate 0.001..1000 per second, burst 1..65535).
func limitOf(l config.OpLimit) opLimit {
	return opLimit{burst: uint16(l.Burst), msPerToken: max(uint32(1000/l.Rate), 1)}
}

// bucket is a token bucket in 8 bytes: the zero value is full. Time is the
// room's monotonic clock in milliseconds, truncated to 32 bits: it wraps
// after 49 days, and a wrapped difference can only under-refill a bucket
// whose connection has been idle that long, which the idle timeout forbids.
type bucket struct {
	at   uint32 // ms of the last refill
	used uint16 // tokens taken and not refilled yet
}

// allow takes one token at nowMS and reports whether there was one.
func (b *bucket) allow(l opLimit, nowMS uint32) bool {
	if b.used == 0 {
		b.at = nowMS
	} else if k := (nowMS - b.at) / l.msPerToken; k > 0 {
		if k >= uint32(b.used) {
			b.used, b.at = 0, nowMS
		} else {
			b.used -= uint16(k)
			b.at += k * l.msPerToken
		}
	}
	if b.used >= l.burst {
		return false
	}
	b.used++
	return true
}

// nowMS is the room's monotonic clock in milliseconds, as buckets keep it.
func (r *Room) nowMS() uint32 { return uint32(r.now() / 1e6) }
