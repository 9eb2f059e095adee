package saver

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// counters are this process's share of the pending and parked counts that
// Redis has not seen yet. The counts follow the durable truth (MySQL plus
// the rows queued for it), not Redis's copy: every row queued for MySQL
// carries the change it makes to the counts (cdelta, from the scripts'
// results: an entry added or only replaced, an ACK that found its entry...).
// While the row waits in the queue its change is in q (Stats adds it, so an
// ACK or a save shows at once, and rows queued while MySQL is down count);
// when the row commits the change moves to d under the same lock, and d is
// sent to Redis in a batch every CounterEvery, which keeps a second round
// trip off every Save and Ack. A crash loses at most d, an interval of
// changes; the reconcile (redis_reconcile.go) repairs that drift and any
// other. Moving a change to d only at commit is what lets the reconcile
// take an exact cut of this process's changes against a MySQL snapshot.
type counters struct {
	mu sync.Mutex
	d  [statShards]map[string]int64 // committed, not yet sent to Redis
	q  map[string]int64             // of rows queued, not yet committed

	// flushMu is held for a whole flush: a change taken out of d is in
	// Redis (or back in d) before anyone else reads d and Redis together.
	flushMu sync.Mutex
}

// cdelta is the change one queued row makes to the counts once committed:
// app's pending by pend, app2's by pend2 (a re-save that changed the
// entry's app), parked by park.
type cdelta struct {
	app, app2         uint32
	pend, pend2, park int8
}

// each calls f with every field cd changes.
func (c cdelta) each(f func(field string, delta int64)) {
	if c.pend != 0 {
		f(appField(c.app), int64(c.pend))
	}
	if c.pend2 != 0 {
		f(appField(c.app2), int64(c.pend2))
	}
	if c.park != 0 {
		f(fieldParked, int64(c.park))
	}
}

func newCounters() *counters {
	c := &counters{q: map[string]int64{}}
	for i := range c.d {
		c.d[i] = map[string]int64{}
	}
	return c
}

// add changes a committed count of uid's shard by delta (a change made to
// MySQL directly, not through the queue: the expiry sweep).
func (c *counters) add(uid, field string, delta int64) {
	if delta == 0 {
		return
	}
	s := uidHash(uid) % statShards
	c.mu.Lock()
	c.d[s][field] += delta
	c.mu.Unlock()
}

// queue counts the changes of rows being queued.
func (c *counters) queue(rows []drow) {
	c.mu.Lock()
	for i := range rows {
		rows[i].cd.each(func(f string, d int64) { c.q[f] += d })
	}
	c.mu.Unlock()
}

// commit moves the changes of rows from q to d: applied, their batch
// committed; not applied, the rows were dropped (MySQL refused them, or
// the store closed with them queued) and change nothing.
func (c *counters) commit(rows []drow, applied bool) {
	c.mu.Lock()
	for i := range rows {
		s := uidHash(rows[i].uid) % statShards
		rows[i].cd.each(func(f string, d int64) {
			if c.q[f] -= d; c.q[f] == 0 {
				delete(c.q, f)
			}
			if applied {
				c.d[s][f] += d
			}
		})
	}
	c.mu.Unlock()
}

// local returns the changes Redis does not hold yet: d and q, summed per field.
func (c *counters) local() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.q))
	for f, v := range c.q {
		out[f] += v
	}
	for i := range c.d {
		for f, v := range c.d[i] {
			out[f] += v
		}
	}
	return out
}

// flush sends the committed changes; on failure they are kept for the next flush.
func (c *counters) flush(ctx context.Context, rc redis.UniversalClient, k keyspace) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	return c.flushLocked(ctx, rc, k)
}

func (c *counters) flushLocked(ctx context.Context, rc redis.UniversalClient, k keyspace) error {
	c.mu.Lock()
	var taken [statShards]map[string]int64
	n := 0
	for i := range c.d {
		if len(c.d[i]) > 0 {
			taken[i], c.d[i] = c.d[i], map[string]int64{}
			n++
		}
	}
	c.mu.Unlock()
	if n == 0 {
		return nil
	}
	type sent struct {
		shard int
		field string
		delta int64
		cmd   *redis.IntCmd
	}
	var cmds []sent
	pipe := rc.Pipeline()
	for i, m := range taken {
		for f, d := range m {
			if d != 0 {
				cmds = append(cmds, sent{i, f, d, pipe.HIncrBy(ctx, k.stats(i), f, d)})
			}
		}
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	// A failed increment may still have landed (the reply was lost): then
	// sending it again counts it twice. Either way it is drift bounded by
	// one interval of changes, which the next reconcile repairs; keeping
	// it undercounts less often.
	c.mu.Lock()
	for _, s := range cmds {
		if s.cmd.Err() != nil {
			c.d[s.shard][s.field] += s.delta
		}
	}
	c.mu.Unlock()
	return err
}

// readTotals reads the counts Redis holds, summed over the shards, per field.
func readTotals(ctx context.Context, rc redis.UniversalClient, k keyspace) (map[string]int64, error) {
	pipe := rc.Pipeline()
	shards := make([]*redis.MapStringStringCmd, statShards)
	for i := range shards {
		shards[i] = pipe.HGetAll(ctx, k.stats(i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, c := range shards {
		for f, v := range c.Val() {
			if f == fieldParked || (len(f) > 1 && f[0] == 'a') {
				out[f] += asInt(v)
			}
		}
	}
	return out, nil
}

// snapshot sends the committed changes and reads what Redis holds, with no
// flush in between: with the MySQL writers paused, the result is every
// change this process committed plus Redis's drift, nothing in flight.
func (c *counters) snapshot(ctx context.Context, rc redis.UniversalClient, k keyspace) (map[string]int64, error) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if err := c.flushLocked(ctx, rc, k); err != nil {
		return nil, err
	}
	return readTotals(ctx, rc, k)
}

// totals is what Stats reports: Redis's counts plus the changes this
// process has not sent (committed or queued), read with no flush in
// between, so a change is counted exactly once.
func (c *counters) totals(ctx context.Context, rc redis.UniversalClient, k keyspace) (map[string]int64, error) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if err := c.flushLocked(ctx, rc, k); err != nil {
		return nil, err
	}
	t, err := readTotals(ctx, rc, k)
	if err != nil {
		return nil, err
	}
	for f, v := range c.local() {
		t[f] += v
	}
	return t, nil
}
