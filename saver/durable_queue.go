package saver

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// durable is RedisStore's way to MySQL: a bounded queue of row operations,
// split into shards by uid (so one user's operations stay in order) with
// one resident writer each that commits what is queued in batches, in one
// transaction per batch. Saves wait for their rows' commit while MySQL is
// healthy (group commit: concurrent saves share a transaction); while it is
// failing they return once queued, and the writer retries with backoff
// until MySQL is back. When the queue is full, new saves are refused with
// push.ErrUnavailable rather than stored in Redis alone.
type durable struct {
	db    *sql.DB
	t     tables
	log   *slog.Logger
	limit int64        // rows; saves are refused past it, ACKs past twice it
	depth atomic.Int64 // rows queued, all shards

	batchRows    int
	batchBytes   int
	writeTimeout time.Duration

	shards []*dshard
	wg     sync.WaitGroup

	// cnt gets the count changes of the rows (queued, then committed).
	cnt *counters
	// commitMu is read-held by a writer from its batch's commit until
	// the batch's count changes are in cnt (and by the sweep around its
	// deletes): the reconcile write-holds it for an instant to cut this
	// process's changes exactly against a MySQL snapshot.
	commitMu sync.RWMutex
	// backsLeft: the previous version's broadcast_ack table still has
	// rows, which reloads read (checked at open and after each sweep).
	backsLeft atomic.Bool
}

// dop is one kind of row operation.
type dop uint8

const (
	dUpsert    dop = iota + 1 // inbox (uid, id) := msg
	dDelete                   // inbox (uid, id) deleted: ACK, inbox cap
	dPark                     // inbox (uid, id) parked
	dBroadcast                // broadcast id := msg, with its seq
	dCursor                   // broadcast_cursor (uid, app) := cur, if seq (the cursor's write count) is above the row's
	dDeleteIn                 // inbox (uid, id) deleted if its app is one of apps: ACK of an id Redis did not know
	dCursorLog                // broadcast_cursor_log row: data (many uids' cursors), kept until keep (uid "")
)

// States of a broadcast_ack row (the previous version's table: read at a
// reload and deleted with its broadcast, never written).
const (
	backParked = 1
	backAcked  = 2
)

// drow is one row operation.
type drow struct {
	op   dop
	uid  string
	id   uint64
	app  uint32        // dCursor
	seq  uint64        // dBroadcast: its seq; dCursor: the cursor's write count
	cur  *bcursor      // dCursor
	msg  *push.Message // dUpsert, dBroadcast: shared by the rows of one call
	apps []uint32      // dDeleteIn: shared by the rows of one call
	data []byte        // dCursorLog: the encoded cursors
	keep int64         // dCursorLog: unix seconds after which the row covers nothing live
	at   int64         // dCursorLog: unix milliseconds when the cursors were read
	n    int           // dCursorLog: its entries, each counted in the queue's depth like a row
	cd   cdelta        // what the row changes in the counts once committed
}

// weight is what the row counts in the queue's depth (reserve's bound).
func (r *drow) weight() int { return max(r.n, 1) }

// weights sums rows' weights.
func weights(rows []drow) int {
	n := 0
	for i := range rows {
		n += rows[i].weight()
	}
	return n
}

func (r *drow) size() int {
	n := len(r.uid) + 48 + 4*len(r.apps) + len(r.data)
	if r.msg != nil {
		n += len(r.msg.Payload)
	}
	if r.cur != nil {
		n += 12 * len(r.cur.Exc)
	}
	return n
}

// dshard is one FIFO of rows and its writer.
type dshard struct {
	d *durable

	mu       sync.Mutex
	q        []drow
	seq      uint64         // rows ever queued
	done     uint64         // rows ever committed (or dropped)
	perUID   map[string]int // rows queued per uid: the reload barrier
	healthy  bool
	failing  time.Time     // when the current run of failures began
	changed  chan struct{} // closed and replaced on every commit or failure
	stopping bool
	deadline time.Time // when stopping: give up retrying after it

	wake chan struct{} // cap 1: rows were queued, or stop
}

// ticket is how far one shard must commit for a call's rows to be in MySQL.
type ticket struct {
	s   *dshard
	seq uint64
}

func newDurable(db *sql.DB, t tables, log *slog.Logger, o *RedisOptions, cnt *counters) *durable {
	d := &durable{
		db: db, t: t, log: log, limit: int64(o.DurableQueue), cnt: cnt,
		batchRows: o.BatchRows, batchBytes: 4 << 20, writeTimeout: o.WriteTimeout,
	}
	for range o.DurableShards {
		d.shards = append(d.shards, &dshard{d: d, perUID: map[string]int{}, healthy: true,
			changed: make(chan struct{}), wake: make(chan struct{}, 1)})
	}
	metricDurableHealthy.Set(1)
	for _, s := range d.shards {
		d.wg.Go(s.run)
	}
	return d
}

func (d *durable) shard(uid string) *dshard { return d.shards[uidHash(uid)%uint64(len(d.shards))] }

// reserve takes room for n rows; acks may use twice the limit, so that
// ACKs and their deletes keep flowing a while after saves are refused.
func (d *durable) reserve(n int, ack bool) bool {
	limit := d.limit
	if ack {
		limit *= 2
	}
	if d.depth.Add(int64(n)) > limit {
		d.depth.Add(-int64(n))
		return false
	}
	metricDurableQueue.Set(float64(d.depth.Load()))
	return true
}

// release gives back room reserved and not used.
func (d *durable) release(n int) {
	if n > 0 {
		metricDurableQueue.Set(float64(d.depth.Add(-int64(n))))
	}
}

// enqueue queues rows (room reserved, or forced: deletes that follow a
// Redis change already made) and returns one ticket per shard touched.
func (d *durable) enqueue(rows []drow, forced bool) []ticket {
	if len(rows) == 0 {
		return nil
	}
	if forced {
		d.depth.Add(int64(weights(rows)))
		metricDurableQueue.Set(float64(d.depth.Load()))
	}
	d.cnt.queue(rows) // before a writer can commit them
	var tickets []ticket
	for _, r := range rows {
		s := d.shard(r.uid)
		s.mu.Lock()
		s.q = append(s.q, r)
		s.seq++
		s.perUID[r.uid]++
		seq := s.seq
		s.mu.Unlock()
		found := false
		for i := range tickets {
			if tickets[i].s == s {
				tickets[i].seq, found = seq, true
			}
		}
		if !found {
			tickets = append(tickets, ticket{s, seq})
		}
	}
	for _, t := range tickets {
		select {
		case t.s.wake <- struct{}{}:
		default:
		}
	}
	return tickets
}

// errDurableDown means MySQL writes are failing: what needs MySQL to be
// current (a reload, the sweep) cannot be done now.
var errDurableDown = fmt.Errorf("saver: mysql writes failing: %w", push.ErrUnavailable)

// downAfter is how long a shard's writes must have been failing for it to
// count as down: a deadlock or a dropped connection is retried at once and
// waited for; a server that stays away is not.
const downAfter = time.Second

// await waits until the tickets' rows are committed. With degrade, a shard
// down (or maxWait passing) ends the wait without error: the rows stay
// queued and will be retried. Without it, a shard down is errDurableDown.
func (d *durable) await(ctx context.Context, tickets []ticket, degrade bool, maxWait time.Duration) error {
	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	for _, tk := range tickets {
		for {
			s := tk.s
			s.mu.Lock()
			done, healthy, failing, ch := s.done >= tk.seq, s.healthy, s.failing, s.changed
			s.mu.Unlock()
			if done {
				break
			}
			var recheck *time.Timer
			var recheckC <-chan time.Time
			if !healthy {
				left := downAfter - time.Since(failing)
				if left <= 0 {
					if degrade {
						return nil
					}
					return errDurableDown
				}
				recheck = time.NewTimer(left) // when it would count as down
				recheckC = recheck.C
			}
			var err error
			timedOut := false
			select {
			case <-ch:
			case <-recheckC:
			case <-timeout:
				timedOut = true
			case <-ctx.Done():
				err = ctx.Err()
			}
			if recheck != nil {
				recheck.Stop()
			}
			switch {
			case timedOut && degrade:
				return nil
			case timedOut:
				return errDurableDown
			case err != nil:
				return err
			}
		}
	}
	return nil
}

// barrierUID waits until the rows queued so far for uid are in MySQL, so a
// reload from MySQL sees them (ACKs in particular: a reload must not bring
// back what was just ACKed).
func (d *durable) barrierUID(ctx context.Context, uid string) error {
	s := d.shard(uid)
	s.mu.Lock()
	pending, seq := s.perUID[uid], s.seq
	s.mu.Unlock()
	if pending == 0 {
		return nil
	}
	return d.await(ctx, []ticket{{s, seq}}, false, 0)
}

// barrierAll waits until everything queued so far is in MySQL.
func (d *durable) barrierAll(ctx context.Context) error {
	tickets := make([]ticket, len(d.shards))
	for i, s := range d.shards {
		s.mu.Lock()
		tickets[i] = ticket{s, s.seq}
		s.mu.Unlock()
	}
	return d.await(ctx, tickets, false, 0)
}

// down reports whether a shard's writes have been failing for downAfter:
// MySQL is away, and reads need not try it.
func (d *durable) down() bool {
	for _, s := range d.shards {
		s.mu.Lock()
		down := !s.healthy && time.Since(s.failing) >= downAfter
		s.mu.Unlock()
		if down {
			return true
		}
	}
	return false
}

// queued returns the rows waiting for MySQL.
func (d *durable) queued() int64 { return d.depth.Load() }

// enqueued returns the rows ever queued, all shards: what the store asked
// of MySQL since it opened (tests check that an ACK changing nothing asks
// nothing).
func (d *durable) enqueued() uint64 {
	var n uint64
	for _, s := range d.shards {
		s.mu.Lock()
		n += s.seq
		s.mu.Unlock()
	}
	return n
}

// healthy reports whether every shard's last write succeeded.
func (d *durable) healthy() bool {
	for _, s := range d.shards {
		s.mu.Lock()
		h := s.healthy
		s.mu.Unlock()
		if !h {
			return false
		}
	}
	return true
}

// close lets the writers empty their queues, retrying until deadline, then
// drops what is left (counted and logged) and waits for them.
func (d *durable) close(deadline time.Time) {
	for _, s := range d.shards {
		s.mu.Lock()
		s.stopping, s.deadline = true, deadline
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	d.wg.Wait()
}
