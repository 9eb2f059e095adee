package saver

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// benchStores are the implementations under benchmark.
var benchStores = []struct {
	name string
	open func(b *testing.B) Store
}{
	{"memory", func(b *testing.B) Store { return NewMemory() }},
	{"bolt", func(b *testing.B) Store {
		st, err := OpenBolt(filepath.Join(b.TempDir(), "saver.db"))
		if err != nil {
			b.Fatal(err)
		}
		return st
	}},
}

// benchParallelism: callers per CPU. Stores see many concurrent callers
// (center requests, room ACK workers); Bolt batches them into shared fsyncs.
const benchParallelism = 32

// BenchmarkSave saves a unicast message for one uid per op from many
// goroutines, per payload size.
func BenchmarkSave(b *testing.B) {
	for _, bs := range benchStores {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("%s/payload=%d", bs.name, size), func(b *testing.B) {
				st := bs.open(b)
				defer st.Close()
				payload := make([]byte, size)
				var next atomic.Uint64
				b.SetBytes(int64(size))
				b.SetParallelism(benchParallelism)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					uids := make([]string, 1)
					for pb.Next() {
						id := next.Add(1)
						uids[0] = "user-" + strconv.FormatUint(id%10000, 10)
						m := msg(id, 1, 0)
						m.Payload = payload
						if err := st.Save(bg, m, uids); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkSaveMulticast saves one message for 100 uids per op.
func BenchmarkSaveMulticast(b *testing.B) {
	uids := make([]string, 100)
	for i := range uids {
		uids[i] = "user-" + strconv.Itoa(i)
	}
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			st := bs.open(b)
			defer st.Close()
			var next atomic.Uint64
			b.SetParallelism(benchParallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := st.Save(bg, msg(next.Add(1), 1, future()), uids); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// benchApps are the apps a benchmark ACK acts for (a connection bound to one app).
var benchApps = []uint32{1}

// BenchmarkAck ACKs one stored message per op from many goroutines.
func BenchmarkAck(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			// Enough users that none holds more than half its InboxCap:
			// past it the oldest entries go, and their ACKs find nothing.
			users := uint64(max(1000, b.N/(DefaultInboxCap/2)+1))
			uids := make([]string, users)
			for i := range uids {
				uids[i] = "user-" + strconv.Itoa(i)
			}
			st := bs.open(b)
			defer st.Close()
			// Message k is stored for every user; op i ACKs message i/users+1 of user i%users.
			for k := 0; k <= b.N/int(users); k++ {
				if err := st.Save(bg, msg(uint64(k+1), 1, future()), uids); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Uint64
			b.SetParallelism(benchParallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ids := make([]uint64, 1)
				for pb.Next() {
					i := next.Add(1) - 1
					ids[0] = i/users + 1
					if n, err := st.Ack(bg, uids[i%users], benchApps, ids); err != nil || n != 1 {
						b.Fatalf("ack: %d %v", n, err)
					}
				}
			})
		})
	}
}

// BenchmarkAckUnknown ACKs ids the store does not hold (a client flooding
// junk ACKs): it must cost no commit, so no fsync in Bolt.
func BenchmarkAckUnknown(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			st := bs.open(b)
			defer st.Close()
			if err := st.Save(bg, msg(1, 1, future()), []string{"flooder"}); err != nil {
				b.Fatal(err)
			}
			var next atomic.Uint64
			b.SetParallelism(benchParallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ids := make([]uint64, 1)
				for pb.Next() {
					ids[0] = 1000 + next.Add(1)
					if n, err := st.Ack(bg, "flooder", benchApps, ids); err != nil || n != 0 {
						b.Fatalf("ack: %d %v", n, err)
					}
				}
			})
		})
	}
}

// BenchmarkLoad loads a user's 20 pending messages plus 2 broadcasts.
func BenchmarkLoad(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			st := bs.open(b)
			defer st.Close()
			uids := make([]string, 1000)
			for i := range uids {
				uids[i] = "user-" + strconv.Itoa(i)
			}
			for k := 1; k <= 20; k++ {
				if err := st.Save(bg, msg(uint64(k*10), 1, future()), uids); err != nil {
					b.Fatal(err)
				}
			}
			for _, id := range []uint64{55, 155} {
				if err := st.SaveBroadcast(bg, msg(id, 1, future())); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				apps := []uint32{1}
				for pb.Next() {
					msgs, err := st.Load(bg, uids[next.Add(1)%1000], apps, 0)
					if err != nil || len(msgs) != 22 {
						b.Fatalf("load: %d %v", len(msgs), err)
					}
				}
			})
		})
	}
}

// BenchmarkBroadcastAckStream is a stream of QoS 1 broadcasts that every
// one of uids ACKs (one op: a broadcast saved and ACKed by all). The
// uids' broadcast state is their cursors: state-B/uid, the bytes of cursor
// records per uid at the end, stays the same whatever b.N (compare
// -benchtime=100x with -benchtime=1000x: only the uvarint of Cur grows),
// where the per-(uid, broadcast) records before grew with every broadcast
// (Bolt: a backs key of 8+len(uid) bytes per uid and broadcast).
func BenchmarkBroadcastAckStream(b *testing.B) {
	const uids, workers = 200, 16
	for _, bs := range benchStores {
		b.Run(fmt.Sprintf("%s/uids=%d", bs.name, uids), func(b *testing.B) {
			st := bs.open(b)
			defer st.Close()
			names := make([]string, uids)
			for i := range names {
				names[i] = "user-" + strconv.Itoa(i)
			}
			// The ACK workers, stopped (and waited for) before the store closes.
			type ack struct {
				uid string
				id  uint64
			}
			work := make(chan ack)
			var wg sync.WaitGroup
			var failed atomic.Value
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for a := range work {
						if n, err := st.Ack(bg, a.uid, []uint32{1}, []uint64{a.id}); err != nil || n != 1 {
							failed.Store(fmt.Errorf("ack %s %d = %d %v", a.uid, a.id, n, err))
						}
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				id := uint64(i + 1)
				if err := st.SaveBroadcast(bg, msg(id, 1, 0)); err != nil {
					b.Fatal(err)
				}
				for _, uid := range names {
					work <- ack{uid, id}
				}
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cursorBytes(b, st))/uids, "state-B/uid")
		})
	}
}

// cursorBytes is what st holds of broadcast cursors: encoded cursors
// (Memory), keys and values of cursor records (Bolt).
func cursorBytes(b *testing.B, st Store) int {
	n := 0
	switch s := st.(type) {
	case *Memory:
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, apps := range s.cursors {
			for _, c := range apps {
				n += len(c.appendTo(nil))
			}
		}
	case *Bolt:
		err := s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketBcur).ForEach(func(k, v []byte) error {
				n += len(k) + len(v)
				return nil
			})
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return n
}
