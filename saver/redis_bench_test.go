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
			st := newRedisEnv(b).open(b, RedisOptions{Pipeline: mode.max, SyncWait: mode.syncWait, Limits: Limits{MaxLoads: -1}})
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
		})
	}
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
