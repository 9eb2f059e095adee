package saver

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Store+ACK throughput of RedisStore against the real servers, with the
// Redis commands of concurrent callers pipelined (up to 128 per round trip)
// and with every command in its own round trip; saves either wait for
// their MySQL group commit (sync, the default) or not (write-behind,
// SyncWait < 0); ACK deletes reach MySQL in batches either way.
//
//	go test -run '^$' -bench 'BenchmarkRedis' -benchtime 3s ./saver/

var pipelineModes = []struct {
	name     string
	max      int
	syncWait time.Duration
}{
	{"sync/pipelined", 128, 0},
	{"sync/roundtrip-per-cmd", 1, 0},
	{"write-behind/pipelined", 128, -1},
	{"write-behind/roundtrip-per-cmd", 1, -1},
}

// BenchmarkRedisSaveAck: one op saves a message for one user and ACKs it,
// from many goroutines (center requests and room ACK workers at once).
func BenchmarkRedisSaveAck(b *testing.B) {
	for _, mode := range pipelineModes {
		b.Run(mode.name, func(b *testing.B) {
			benchSaveAck(b, newRedisEnv(b).open(b, RedisOptions{Pipeline: mode.max, SyncWait: mode.syncWait, Limits: Limits{MaxLoads: -1}}))
		})
	}
}

// benchSaveAck: one op saves a message for one of 10,000 users and ACKs
// it, from benchParallelism goroutines per CPU; it reports msgs/s.
func benchSaveAck(b *testing.B, st *RedisStore) {
	var next atomic.Uint64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		uids, ids := make([]string, 1), make([]uint64, 1)
		for pb.Next() {
			id := next.Add(1)
			uids[0] = "user-" + strconv.FormatUint(id%10000, 10)
			if err := st.Save(bg, msg(id, 1, future()), uids); err != nil {
				b.Fatal(err)
			}
			ids[0] = id
			if n, err := st.Ack(bg, uids[0], benchApps, ids); err != nil || n != 1 {
				b.Fatalf("ack: %d %v", n, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkRedisMulticastAck: one op saves a message for 100 users, then
// each of them ACKs it.
func BenchmarkRedisMulticastAck(b *testing.B) {
	const users = 100
	uids := make([]string, users)
	for i := range uids {
		uids[i] = fmt.Sprint("user-", i)
	}
	for _, mode := range pipelineModes {
		b.Run(mode.name, func(b *testing.B) {
			st := newRedisEnv(b).open(b, RedisOptions{Pipeline: mode.max, SyncWait: mode.syncWait, Limits: Limits{MaxLoads: -1}})
			var next atomic.Uint64
			b.SetParallelism(4)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ids := make([]uint64, 1)
				for pb.Next() {
					ids[0] = next.Add(1)
					if err := st.Save(bg, msg(ids[0], 1, future()), uids); err != nil {
						b.Fatal(err)
					}
					for _, uid := range uids {
						if _, err := st.Ack(bg, uid, benchApps, ids); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			b.ReportMetric(float64(b.N*users)/time.Since(start).Seconds(), "entries/s")
		})
	}
}

// BenchmarkRedisBroadcastAckStream: one op saves a QoS 1 broadcast that
// 200 users each load and ACK (concurrently, as rooms do). What a user
// keeps does not grow with the broadcasts: the cursor field's bytes in
// Redis are reported per user, and the MySQL rows queued per ACK (cursor
// rows, before the writer folds a batch's rows of one user into one).
func BenchmarkRedisBroadcastAckStream(b *testing.B) {
	st := newRedisEnv(b).open(b, RedisOptions{})
	const users = 200
	uids := make([]string, users)
	for i := range uids {
		uids[i] = "user-" + strconv.Itoa(i)
	}
	apps := []uint32{1}
	before := st.dur.enqueued()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := uint64(i + 1)
		if err := st.SaveBroadcast(bg, msg(id, 1, future())); err != nil {
			b.Fatal(err)
		}
		errs := make(chan error, users)
		for _, uid := range uids {
			go func() {
				if _, err := st.Load(bg, uid, apps, 0); err != nil {
					errs <- err
					return
				}
				n, err := st.Ack(bg, uid, apps, []uint64{id})
				if err == nil && n != 1 {
					err = fmt.Errorf("ack %s %d: %d", uid, id, n)
				}
				errs <- err
			}()
		}
		for range uids {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	var size int64
	for _, uid := range uids {
		size += st.rc.HStrLen(bg, st.k.user(uid), cursorField(1)).Val()
	}
	b.ReportMetric(float64(size)/users, "cursor-bytes/user")
	b.ReportMetric(float64(st.dur.enqueued()-before)/float64(b.N*users), "rows/ack")
}
