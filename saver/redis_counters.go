package saver

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// counters are the changes to the pending and parked counts this process
// has made and not yet sent to Redis. The scripts report what they really
// changed (an entry added or only replaced, an ACK that found its entry...),
// so the counts follow what Redis holds; sending them in a batch every
// CounterEvery keeps a second round trip off every Save and Ack. A crash
// loses at most that interval of changes.
type counters struct {
	mu sync.Mutex
	d  [statShards]map[string]int64
}

func newCounters() *counters {
	c := &counters{}
	for i := range c.d {
		c.d[i] = map[string]int64{}
	}
	return c
}

// add changes a count of uid's shard by delta.
func (c *counters) add(uid, field string, delta int64) {
	if delta == 0 {
		return
	}
	s := uidHash(uid) % statShards
	c.mu.Lock()
	c.d[s][field] += delta
	c.mu.Unlock()
}

// flush sends the changes; on failure they are kept for the next flush.
func (c *counters) flush(ctx context.Context, rc redis.UniversalClient, k keyspace) error {
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
	// one interval of changes; keeping it undercounts less often.
	c.mu.Lock()
	for _, s := range cmds {
		if s.cmd.Err() != nil {
			c.d[s.shard][s.field] += s.delta
		}
	}
	c.mu.Unlock()
	return err
}
