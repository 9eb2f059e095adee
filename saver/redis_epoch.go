package saver

import (
	"context"
	"errors"
	"slices"
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
	res, err := scriptEpoch.Run(ctx, r.rc, []string{r.k.meta()}, r.fingerprint(ctx), newToken()).Result()
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
	all, err := r.rc.HGetAll(ctx, r.k.broadcasts()).Result()
	if err != nil {
		return false, redisErr(err)
	}
	msgs := make([]push.Message, 0, len(all))
	for f, val := range all {
		if len(f) != 9 || f[0] != 'm' {
			continue
		}
		id, _ := parseID8(f[1:])
		m, err := decodeValueOwned(id, []byte(val))
		if err != nil {
			r.log.Warn("saver: corrupt broadcast skipped", "id", id, "err", err)
			continue
		}
		m.Broadcast = true
		msgs = append(msgs, m)
	}
	if pending {
		for _, m := range msgs {
			r.bc.put(m)
		}
	} else {
		r.bc.replace(msgs, v)
	}
	return true, nil
}

func (r *RedisStore) broadcastVersion(ctx context.Context) (int64, error) {
	v, err := r.rc.HGet(ctx, r.k.broadcasts(), "v").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, redisErr(err)
}

// restoreBroadcasts copies the live broadcasts of MySQL into Redis (those
// Redis has stay as they are), after this process's queued broadcasts are
// written.
func (r *RedisStore) restoreBroadcasts(ctx context.Context) error {
	if err := r.dur.barrierUID(ctx, ""); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, r.o.ReadTimeout)
	defer cancel()
	msgs, err := r.dur.loadBroadcasts(rctx, time.Now().Unix())
	if err != nil {
		return mysqlErr(err)
	}
	args := make([]any, 0, 2*len(msgs))
	for i := range msgs {
		args = append(args, id8(msgs[i].ID), string(appendValue(nil, &msgs[i])))
	}
	res, err := scriptBroadcastRestore.Run(ctx, r.rc, []string{r.k.broadcasts()}, args...).Result()
	if err != nil {
		return redisErr(err)
	}
	if l, err := replyList(res); err == nil && len(l) == 2 && asInt(l[1]) > 0 {
		metricBroadcastsRestored.Add(float64(asInt(l[1])))
		r.log.Info("saver: broadcasts restored from mysql", "count", asInt(l[1]))
	}
	return nil
}
