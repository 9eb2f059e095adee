package sdk

import (
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

// event is one entry of the callback queue: a message, a state change or a
// kick, kept in the order the connection produced them.
type event struct {
	kind     uint8
	msg      Message
	state    State
	kick     KickError
	redirect *redirectError
}

const (
	evMessage uint8 = iota
	evState
	evKick
	evRedirect
)

// startBackground starts the callback goroutine and the ACK flusher once.
// c.mu must be held.
func (c *Client) startBackground() {
	if c.bgStarted {
		return
	}
	c.bgStarted = true
	c.deliverWG.Add(1)
	go c.deliver()
	c.ackWG.Add(1)
	go c.flushLoop()
}

// emit queues ev for the callback goroutine; it blocks while the queue is
// full, which is how a slow handler slows the reader. False after Close.
func (c *Client) emit(ev event) bool {
	select {
	case c.events <- ev:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// setState records s and reports it to OnState when it changed.
func (c *Client) setState(s State) {
	c.mu.Lock()
	changed := c.state != s && !c.closed
	if changed {
		c.state = s
	}
	c.mu.Unlock()
	if changed && c.cfg.OnState != nil {
		c.emit(event{kind: evState, state: s})
	}
}

// deliver runs every callback, one at a time, in queue order.
func (c *Client) deliver() {
	defer c.deliverWG.Done()
	defer close(c.msgs)
	defer c.reportClosed()
	for {
		select {
		case <-c.ctx.Done():
			c.reportKicks()
			return
		case ev := <-c.events:
			switch ev.kind {
			case evMessage:
				if !c.deliverMessage(ev.msg) {
					return
				}
			case evState:
				c.callback(func() { c.cfg.OnState(ev.state) })
			case evKick:
				c.reportKick(ev.kick) // even when Close came meanwhile
			case evRedirect:
				c.callback(func() { c.cfg.OnRedirect(ev.redirect.addrs, int(ev.redirect.after/time.Millisecond)) })
			}
		}
	}
}

// reportKicks runs OnKick for a KICK still queued at Close, so that a
// client closed right after a final kick still learns why (messages and
// states still queued are dropped).
func (c *Client) reportKicks() {
	for {
		select {
		case ev := <-c.events:
			if ev.kind == evKick {
				c.reportKick(ev.kick)
			}
		default:
			return
		}
	}
}

func (c *Client) reportKick(k KickError) {
	if c.cfg.OnKick != nil {
		c.inCallback.Store(true)
		defer c.inCallback.Store(false)
		c.cfg.OnKick(k.Code, k.Reason)
	}
}

// reportClosed is the last callback of a client.
func (c *Client) reportClosed() {
	c.mu.Lock()
	c.state = StateClosed
	c.mu.Unlock()
	if c.cfg.OnState != nil {
		c.inCallback.Store(true)
		defer c.inCallback.Store(false)
		c.cfg.OnState(StateClosed)
	}
}

// callback runs f unless the client is closing. The flag, raised before
// the check, lets Close skip waiting for this goroutine when f itself (or a
// callback already under way) is what calls Close.
func (c *Client) callback(f func()) bool {
	c.inCallback.Store(true)
	defer c.inCallback.Store(false)
	if c.ctx.Err() != nil {
		return false
	}
	f()
	return true
}

// deliverMessage hands m to the application and then queues its ACK.
func (c *Client) deliverMessage(m Message) bool {
	if c.cfg.OnMessage != nil {
		if !c.callback(func() { c.cfg.OnMessage(m) }) {
			return false
		}
	} else {
		select {
		case c.msgs <- m:
		case <-c.ctx.Done():
			return false
		}
	}
	if m.QoS1 && !c.cfg.ManualAck {
		c.queueAcks(m.ID)
	}
	return true
}

// Ack acknowledges QoS 1 messages. Needed only with ManualAck; the ids are
// sent in batches on the current (or next) connection.
func (c *Client) Ack(ids ...uint64) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	c.queueAcks(ids...)
	return nil
}

// ackQueue holds ids waiting to be sent; the flusher sends them one frame
// per ackBatch ids, at most ackDelay after the first one was queued.
type ackQueue struct {
	mu   sync.Mutex
	ids  []uint64
	kick chan struct{} // something was queued
	full chan struct{} // a whole batch is ready
}

func (q *ackQueue) init() {
	q.kick = make(chan struct{}, 1)
	q.full = make(chan struct{}, 1)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Client) queueAcks(ids ...uint64) {
	if len(ids) == 0 {
		return
	}
	c.dedup.markAcked(ids)
	q := &c.acks
	q.mu.Lock()
	q.ids = append(q.ids, ids...)
	if over := len(q.ids) - maxPendingAcks; over > 0 {
		// No connection for a long time: forget the oldest. The server
		// redelivers them, and a redelivered, already acked id is ACKed again.
		q.ids = append(q.ids[:0], q.ids[over:]...)
	}
	n := len(q.ids)
	q.mu.Unlock()
	signal(q.kick)
	if n >= ackBatch {
		signal(q.full)
	}
}

// flushLoop is the ACK flusher goroutine.
func (c *Client) flushLoop() {
	defer c.ackWG.Done()
	q := &c.acks
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			c.flushAcks()
			return
		case <-q.kick:
		}
		timer.Reset(ackDelay)
		select {
		case <-timer.C:
		case <-q.full:
			timer.Stop()
		case <-c.ctx.Done():
			timer.Stop()
			c.flushAcks()
			return
		}
		c.flushAcks()
	}
}

// flushAcks sends every queued id on the current connection. Ids that could
// not be written stay queued for the next connection.
func (c *Client) flushAcks() {
	s := c.current()
	if s == nil {
		return
	}
	q := &c.acks
	q.mu.Lock()
	ids := q.ids
	q.ids = nil
	q.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), ackBatch)
		batch := ids[:n]
		if err := s.send(func(dst []byte) []byte { return proto.AppendAck(dst, 0, batch) }); err != nil {
			q.mu.Lock()
			q.ids = append(ids, q.ids...)
			if over := len(q.ids) - maxPendingAcks; over > 0 {
				q.ids = q.ids[over:]
			}
			q.mu.Unlock()
			return
		}
		ids = ids[n:]
	}
	// A batch signal raised while we were sending is already served.
	select {
	case <-q.full:
	default:
	}
}

// dedup remembers the last size message ids and whether each was acked.
type dedup struct {
	mu   sync.Mutex
	ring []uint64
	next int
	n    int
	seen map[uint64]bool // id -> acked
}

func newDedup(size int) *dedup {
	return &dedup{ring: make([]uint64, size), seen: make(map[uint64]bool, size)}
}

// add records id; fresh is false for a duplicate, and acked tells whether
// the first copy was already acknowledged.
func (d *dedup) add(id uint64) (fresh, acked bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if acked, ok := d.seen[id]; ok {
		return false, acked
	}
	if d.n == len(d.ring) {
		delete(d.seen, d.ring[d.next])
	} else {
		d.n++
	}
	d.ring[d.next] = id
	d.next = (d.next + 1) % len(d.ring)
	d.seen[id] = false
	return true, false
}

func (d *dedup) markAcked(ids []uint64) {
	d.mu.Lock()
	for _, id := range ids {
		if _, ok := d.seen[id]; ok {
			d.seen[id] = true
		}
	}
	d.mu.Unlock()
}
