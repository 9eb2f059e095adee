package rpc

import (
	"net"
	"runtime"
	"sync"
	"time"
)

// outbox is the queue of encoded frames of one connection, drained by one
// writer goroutine. Producers append whole frames to buf under mu; the writer
// swaps buf for its spare buffer and writes everything queued with one Write,
// so under load many frames share one syscall, and the two buffers are
// reused for the life of the connection.
//
// The client also guards its pending-call table with mu, so that registering
// a call and queueing its frame are one step with respect to a connection
// failure.
type outbox struct {
	mu      sync.Mutex
	buf     []byte // frames queued since the last write
	closing bool   // the writer flushes buf and stops
	dead    bool   // the writer stopped; frames added now are dropped

	spare   []byte        // the writer's buffer; only the writer touches it
	wake    chan struct{} // cap 1: something was queued, or closing was set
	flushed chan struct{} // cap 1: a write finished, or the writer stopped
}

// maxSpare is the largest buffer kept between writes; a burst of big frames
// must not pin its memory for the connection's life.
const maxSpare = 1 << 20

func newOutbox() *outbox {
	return &outbox{wake: make(chan struct{}, 1), flushed: make(chan struct{}, 1)}
}

// addLocked queues one whole frame. The caller holds o.mu.
func (o *outbox) addLocked(frame []byte) {
	if o.dead {
		return
	}
	empty := len(o.buf) == 0
	o.buf = append(o.buf, frame...)
	if empty {
		// The writer either waits for this signal or has not swapped yet
		// (and will take the frame with the others).
		signal(o.wake)
	}
}

// add queues one whole frame.
func (o *outbox) add(frame []byte) {
	o.mu.Lock()
	o.addLocked(frame)
	o.mu.Unlock()
}

// queued returns the bytes waiting for the writer.
func (o *outbox) queued() int {
	o.mu.Lock()
	n := len(o.buf)
	o.mu.Unlock()
	return n
}

// waitRoom blocks until at most limit bytes are queued, or the writer has
// stopped. A server's reader uses it so that a peer that does not read its
// replies stalls itself (TCP backpressure) instead of growing our memory.
func (o *outbox) waitRoom(limit int) {
	for {
		o.mu.Lock()
		ok := len(o.buf) <= limit || o.dead
		o.mu.Unlock()
		if ok {
			return
		}
		<-o.flushed
	}
}

// close asks the writer to write what is queued and stop.
func (o *outbox) close() {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	signal(o.wake)
}

// run is the writer loop. It returns nil after close once everything queued
// was written, or the first write error. Either way the outbox is dead after.
// A write that makes no progress within timeout (between half and all of
// it) fails, so a stuck peer cannot hold the queue forever.
func (o *outbox) run(nc net.Conn, timeout time.Duration, m *ioMetrics) error {
	defer func() {
		o.mu.Lock()
		o.dead = true
		o.buf = nil
		o.mu.Unlock()
		o.spare = nil
		close(o.flushed) // releases waitRoom for good
	}()
	var deadline time.Time // the write deadline set on nc
	for {
		<-o.wake
		// Let the goroutines that are ready to run queue their frames
		// first, so that one write carries them all (measured: 1.6x the
		// calls/s at 256 callers, bench_test.go).
		runtime.Gosched()
		for {
			o.mu.Lock()
			out := o.buf
			o.buf = o.spare[:0]
			closing := o.closing
			o.mu.Unlock()
			if len(out) == 0 {
				o.spare = out
				if closing {
					return nil
				}
				break
			}
			if timeout > 0 {
				// Refreshed at half time rather than per write: moving a
				// deadline costs a runtime timer update.
				if now := time.Now(); deadline.Sub(now) < timeout/2 {
					deadline = now.Add(timeout)
					_ = nc.SetWriteDeadline(deadline)
				}
			}
			if _, err := nc.Write(out); err != nil {
				return err
			}
			m.writes.Inc()
			m.bytes.Add(float64(len(out)))
			if cap(out) > maxSpare {
				out = nil
			}
			o.spare = out
			signal(o.flushed)
			// Loop: frames queued during the write were not signalled
			// (buf was not empty), so take them now.
		}
	}
}

// signal does a non-blocking send on a cap-1 channel.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
