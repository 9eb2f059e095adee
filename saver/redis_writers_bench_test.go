package saver

import (
	"strconv"
	"testing"
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
			benchSaveAck(b, newRedisEnv(b).open(b, RedisOptions{DurableShards: w, Limits: Limits{MaxLoads: -1}}))
		})
	}
}
