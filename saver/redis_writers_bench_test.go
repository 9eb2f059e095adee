package saver

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// benchWriterCounts are the MySQL writer counts (RedisOptions.DurableShards)
// of the sweep in docs/benchmarks.md ("Saver on Redis").
var benchWriterCounts = []int{1, 2, 4, 8, 16}

// BenchmarkRedisSaveAckWriters is BenchmarkRedisSaveAck in its default mode
// (sync, pipelined) with 1 to 16 MySQL writers: a save waits for the group
// commit of its writer, so fewer writers make bigger commits.
//
//	go test -run '^$' -bench 'BenchmarkRedisSaveAckWriters' -benchtime 3s -count 3 ./saver/
func BenchmarkRedisSaveAckWriters(b *testing.B) {
	for _, w := range benchWriterCounts {
		b.Run("writers="+strconv.Itoa(w), func(b *testing.B) {
			st := newRedisEnv(b).open(b, RedisOptions{DurableShards: w, Limits: Limits{MaxLoads: -1}})
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
