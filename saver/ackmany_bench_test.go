package saver

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// BenchmarkBroadcastAckMany: a QoS 1 broadcast's ACKs from every uid, as
// the room sends them: "ack8" one Ack per uid, 8 calls in flight (the room
// before AckMany), "ackmany" AckMany calls of up to push.MaxAckEntries
// entries. One op is one broadcast; ns/ack and allocs/ack are per ACK.
func BenchmarkBroadcastAckMany(b *testing.B) {
	const uids = 2000
	names := make([]string, uids)
	for i := range names {
		names[i] = "user-" + strconv.Itoa(i)
	}
	apps := []uint32{1}
	for _, bs := range benchStores {
		for _, mode := range []string{"ack8", "ackmany"} {
			b.Run(fmt.Sprintf("%s/%s/uids=%d", bs.name, mode, uids), func(b *testing.B) {
				st := bs.open(b)
				defer st.Close()
				reqs := make([]push.AckReq, uids)
				ids := make([]uint64, uids)
				for i := range reqs {
					reqs[i] = push.AckReq{UID: names[i], Apps: apps, IDs: ids[i : i+1]}
				}
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					id := uint64(i + 1)
					if err := st.SaveBroadcast(bg, msg(id, 1, 0)); err != nil {
						b.Fatal(err)
					}
					for j := range ids {
						ids[j] = id
					}
					switch mode {
					case "ackmany":
						for lo := 0; lo < uids; lo += push.MaxAckEntries {
							hi := min(lo+push.MaxAckEntries, uids)
							if n, err := st.AckMany(bg, reqs[lo:hi]); err != nil || n != hi-lo {
								b.Fatalf("ack many = %d %v", n, err)
							}
						}
					default:
						var wg sync.WaitGroup
						per := uids / 8
						for w := 0; w < uids; w += per {
							wg.Go(func() {
								for _, r := range reqs[w:min(w+per, uids)] {
									if n, err := st.Ack(bg, r.UID, r.Apps, r.IDs); err != nil || n != 1 {
										b.Errorf("ack = %d %v", n, err)
										return
									}
								}
							})
						}
						wg.Wait()
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*uids), "ns/ack")
			})
		}
	}
}
