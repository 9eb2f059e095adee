package saver

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/pkg/push"
)

// Detecting that Redis lost data. The {meta} hash holds the epoch (a random
// token) and a fingerprint of the Redis servers (the replication ids of the
// masters, which change when a master restarts without its data or a
// replica is promoted). A missing hash (FLUSHALL, restart without
// persistence) or a changed fingerprint (failover) starts a new epoch: every
// saver sees it within EpochEvery, users are then reloaded from MySQL one
// by one at their next Load, and broadcasts are restored at once.

// checkEpoch reads the current epoch, starting a new one if Redis lost its
// data or its servers changed.
func (r *RedisStore) checkEpoch(ctx context.Context) error {
	res, err := scriptEpoch.Run(ctx, r.rc, []string{r.k.meta()}, r.fingerprint(ctx), newEpochToken()).Result()
	if err != nil {
		return redisErr(err)
	}
	l, err := replyList(res)
	if err != nil || len(l) < 2 {
		return cmpErr(nil, err)
	}
	ep, started := asString(l[0]), asInt(l[1]) == 1
	old := r.epoch.Load()
	if old != nil && *old == ep {
		return nil
	}
	r.epoch.Store(&ep)
	if old == nil && !started {
		return nil // opening on an epoch that other savers share
	}
	r.restore.Store(true)
	r.wantRecount()
	r.cursorIndexFor(ep) // read the cursor log now, before the reloads ask
	metricEpochChanges.Inc()
	r.log.Warn("saver: new redis epoch: redis lost or replaced its data; users reload from mysql at their next load",
		"epoch", ep, "started_here", started)
	return nil
}

// fingerprint names the Redis masters' data sets: their replication ids,
// sorted. "" when unknown (INFO refused, or a client type without masters
// to ask): then only a missing {meta} starts an epoch.
func (r *RedisStore) fingerprint(ctx context.Context) string {
	var mu sync.Mutex
	var ids []string
	get := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "master_replid:"); ok {
				mu.Lock()
				ids = append(ids, v)
				mu.Unlock()
				return nil
			}
		}
		return errors.New("no master_replid")
	}
	var err error
	switch c := r.rc.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, get)
	case *redis.Client:
		err = get(ctx, c)
	default:
		return ""
	}
	if err != nil || len(ids) == 0 {
		return ""
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// syncBroadcasts brings the cache in step with Redis (one HGET when nothing
// changed) and, with restore, restores Redis's broadcasts from MySQL when
// they were lost (only the watcher does: no caller waits for MySQL). It
// reports whether the cache changed. While a restore is pending (MySQL
// down), the cache keeps what it had and only adds what Redis has.
// Broadcasts found without a seq (stored by the previous version) get one
// here, in id order, and MySQL gets it through the queue.
func (r *RedisStore) syncBroadcasts(ctx context.Context, restore bool) (bool, error) {
	v, err := r.broadcastVersion(ctx)
	if err != nil {
		return false, err
	}
	if v == 0 {
		r.restore.Store(true) // no broadcast hash at all: lost, or never made
	}
	if restore && r.restore.Load() {
		if err := r.restoreBroadcasts(ctx); err != nil {
			r.log.Warn("saver: broadcasts not restored from mysql yet", "err", err)
		} else {
			r.restore.Store(false)
			if v, err = r.broadcastVersion(ctx); err != nil {
				return false, err
			}
		}
	}
	pending := r.restore.Load()
	if !pending && v == r.bc.version() {
		return false, nil
	}
	for attempt := 0; ; attempt++ {
		msgs, seqs, last, ver, err := r.readBroadcasts(ctx)
		if err != nil {
			return false, err
		}
		var unseq []uint64
		byID := map[uint64]*push.Message{}
		for i := range msgs {
			if m := &msgs[i]; seqs[m.ID] == 0 {
				unseq = append(unseq, m.ID)
				byID[m.ID] = m
			}
		}
		if len(unseq) > 0 && attempt == 0 {
			slices.Sort(unseq)
			if err := r.sequence(ctx, unseq, byID); err != nil {
				r.log.Warn("saver: broadcasts of the previous version not given seqs yet", "err", err)
			}
			continue // read again, with the seqs
		}
		if pending {
			for _, m := range msgs {
				r.bc.putSeq(m, seqs[m.ID])
			}
		} else {
			r.bc.replace(msgs, seqs, ver, last)
		}
		return true, nil
	}
}

// readBroadcasts reads {bc} and {bc}:q in one transaction (one slot):
// every seq up to last is then in the result, or gone.
func (r *RedisStore) readBroadcasts(ctx context.Context) (msgs []push.Message, seqs map[uint64]uint64, last uint64, ver int64, err error) {
	var all, qs *redis.MapStringStringCmd
	_, err = r.rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, r.k.broadcasts())
		qs = p.HGetAll(ctx, r.k.broadcastSeqs())
		return nil
	})
	if err != nil {
		return nil, nil, 0, 0, redisErr(err)
	}
	seqs = map[uint64]uint64{}
	for f, val := range qs.Val() {
		n, perr := strconv.ParseUint(val, 10, 64)
		switch {
		case perr != nil:
		case f == "s":
			last = n
		default:
			if id, ok := parseID8(f); ok {
				seqs[id] = n
			}
		}
	}
	msgs = make([]push.Message, 0, len(all.Val()))
	for f, val := range all.Val() {
		if f == "v" {
			ver, _ = strconv.ParseInt(val, 10, 64)
			continue
		}
		if len(f) != 9 || f[0] != 'm' {
			continue
		}
		id, _ := parseID8(f[1:])
		m, derr := decodeValueOwned(id, []byte(val))
		if derr != nil {
			r.log.Warn("saver: corrupt broadcast skipped", "id", id, "err", derr)
			continue
		}
		m.Broadcast = true
		msgs = append(msgs, m)
	}
	return msgs, seqs, last, ver, nil
}

// sequence gives a seq to the broadcasts ids (ascending) that have none,
// in Redis, and queues MySQL's copy of them.
func (r *RedisStore) sequence(ctx context.Context, ids []uint64, msgs map[uint64]*push.Message) error {
	args := []any{seqString(r.bc.maxSeq() + 1)}
	for _, id := range ids {
		args = append(args, id8(id))
	}
	res, err := scriptBroadcastSeq.Run(ctx, r.rc, []string{r.k.broadcasts(), r.k.broadcastSeqs()}, args...).Result()
	if err != nil {
		return redisErr(err)
	}
	l, err := replyList(res)
	if err != nil {
		return err
	}
	r.persistSeqs(l[1:], msgs)
	return nil
}

// persistSeqs queues MySQL's copy of broadcasts that were just given seqs
// (pairs id8, seq), from msgs.
func (r *RedisStore) persistSeqs(pairs []any, msgs map[uint64]*push.Message) {
	var rows []drow
	for i := 0; i+1 < len(pairs); i += 2 {
		id, ok := parseID8(asString(pairs[i]))
		seq, err := strconv.ParseUint(asString(pairs[i+1]), 10, 64)
		if !ok || err != nil {
			continue
		}
		m := msgs[id]
		if m == nil {
			continue
		}
		rows = append(rows, drow{op: dBroadcast, id: id, seq: seq, msg: m})
	}
	if len(rows) > 0 {
		r.log.Info("saver: broadcasts of the previous version given seqs", "count", len(rows))
		r.dur.enqueue(rows, true)
	}
}

func (r *RedisStore) broadcastVersion(ctx context.Context) (int64, error) {
	v, err := r.rc.HGet(ctx, r.k.broadcasts(), "v").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, redisErr(err)
}

// restoreBroadcasts copies the live broadcasts of MySQL into Redis (those
// Redis has stay as they are) with their seqs, after this process's queued
// broadcasts are written; rows without a seq get one.
func (r *RedisStore) restoreBroadcasts(ctx context.Context) error {
	if err := r.dur.barrierUID(ctx, ""); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, r.o.ReadTimeout)
	defer cancel()
	rows, top, err := r.dur.loadBroadcasts(rctx, time.Now().Unix())
	if err != nil {
		return mysqlErr(err)
	}
	args := make([]any, 0, 1+3*len(rows))
	args = append(args, seqString(max(top, r.bc.maxSeq())+1))
	msgs := make(map[uint64]*push.Message, len(rows))
	for i := range rows {
		b := &rows[i]
		args = append(args, id8(b.msg.ID), string(appendValue(nil, &b.msg)), seqString(b.seq))
		msgs[b.msg.ID] = &b.msg
	}
	res, err := scriptBroadcastRestore.Run(ctx, r.rc, []string{r.k.broadcasts(), r.k.broadcastSeqs()}, args...).Result()
	if err != nil {
		return redisErr(err)
	}
	l, err := replyList(res)
	if err != nil || len(l) < 2 {
		return cmpErr(nil, err)
	}
	if n := asInt(l[1]); n > 0 {
		metricBroadcastsRestored.Add(float64(n))
		r.log.Info("saver: broadcasts restored from mysql", "count", n)
	}
	r.persistSeqs(l[2:], msgs)
	return nil
}
