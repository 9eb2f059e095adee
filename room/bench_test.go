package room

import (
	"fmt"
	"github.com/lcpush/lcpush/pkg/config"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// BenchmarkPushFanout measures one Push to n connected clients over real
// loopback connections, until every frame has been read by the clients.
func BenchmarkPushFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("conns=%d/payload=%d", n, size), func(b *testing.B) {
				benchFanout(b, n, size, false)
			})
		}
	}
}

// BenchmarkBroadcastFanout is BenchmarkPushFanout through Broadcast: the
// room walks its own connections of the app, no target list.
func BenchmarkBroadcastFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("conns=%d/payload=%d", n, size), func(b *testing.B) {
				benchFanout(b, n, size, true)
			})
		}
	}
}

func benchFanout(b *testing.B, n, size int, broadcast bool) {
	e := startEnv(b, envOpt{room: func(c *Config) { c.Queue = 4096 }, cfg: liftPerIP})
	var read atomic.Int64
	var wg sync.WaitGroup
	targets := make([]push.Target, n)
	for i := range targets {
		uid := fmt.Sprintf("bench-%d", i)
		c, _ := e.login(1, uid)
		targets[i] = push.Target{UID: uid}
		_ = c.NetConn().SetReadDeadline(time.Time{}) // login left one
		wg.Add(1)
		go func() { // the client: read and count bytes
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				k, err := c.NetConn().Read(buf)
				read.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer func() { // stop the readers before the env's cleanup waits on them
		for i := range targets {
			if s := e.room.idx.get(targets[i].UID, 0); s != nil {
				_, _ = e.room.Kick(b.Context(), targets[i].UID, 0, nil, push.KickAdmin, "")
			}
		}
	}()
	msg := push.Message{ID: 1, App: 1, QoS: push.QoS1, Payload: make([]byte, size)}
	frameLen := int64(len(proto.AppendPush(nil, 1, true, 1, msg.Payload)))
	b.SetBytes(int64(size * n))
	b.ReportAllocs()
	var want int64
	inflight := make(chan struct{}, 64)
	for b.Loop() {
		if broadcast { // Broadcast waits for its writes: keep 64 in flight
			inflight <- struct{}{}
			msg.ID++ // one task per id: a repeated id would write nothing
			if msg.ID%(maxBcastFinished/2) == 0 {
				// The table keeps finished tasks bcastMinKeep (a resume
				// may still ask): a run of more than maxBcastFinished
				// broadcasts in less would be refused. Age them instead.
				ageFinished(e.room, bcastMinKeep)
			}
			m := msg
			go func() {
				defer func() { <-inflight }()
				if k, err := e.room.Broadcast(b.Context(), m, 0); err != nil || k != n {
					b.Errorf("Broadcast = %d, %v; want %d", k, err, n)
				}
			}()
			want += int64(n) * frameLen
			continue
		}
		found, err := e.room.Push(b.Context(), msg, targets)
		if err != nil {
			b.Fatal(err)
		}
		want += int64(found) * frameLen
		waitRead(b, &read, want-frameLen*int64(n)*64) // keep at most ~64 pushes in flight
	}
	waitRead(b, &read, want)
}

func waitRead(b *testing.B, read *atomic.Int64, want int64) {
	deadline := time.Now().Add(20 * time.Second)
	for read.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("clients read %d of %d bytes; slow-consumer closes: %v", read.Load(), want, counterValue(mCloses.WithLabelValues(closeSlow)))
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// BenchmarkPushLone measures a lone push: Push to one client, then wait
// until the client has read it, so that nothing queues behind it. It is the
// latency a push gets when the room is not busy.
func BenchmarkPushLone(b *testing.B) {
	e := startEnv(b, envOpt{cfg: liftPerIP})
	c, _ := e.login(1, "lone")
	_ = c.NetConn().SetReadDeadline(time.Time{})
	msg := push.Message{ID: 1, App: 1, Payload: make([]byte, 64)}
	frame := proto.AppendPush(nil, 1, false, 1, msg.Payload)
	buf := make([]byte, len(frame))
	targets := []push.Target{{UID: "lone"}}
	b.ReportAllocs()
	for b.Loop() {
		if n, err := e.room.Push(b.Context(), msg, targets); n != 1 || err != nil {
			b.Fatalf("Push = %d, %v", n, err)
		}
		if _, err := io.ReadFull(c.NetConn(), buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexGet measures the lookup Push does per target, from many
// goroutines at once, with 100k connections indexed.
func BenchmarkIndexGet(b *testing.B) {
	var x index
	x.init()
	const n = 100000
	uids := make([]string, n)
	for i := range uids {
		uids[i] = fmt.Sprintf("user-%d", i)
		s := &connState{id: uint64(i + 1), uid: uids[i]}
		apps := []uint32{1}
		s.apps.Store(&apps)
		x.add(s)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s := x.get(uids[i%n], 0)
			if s == nil || !s.hasApp(1) {
				b.Fatal("not found")
			}
			i += 7919
		}
	})
}

// liftPerIP lifts the per-IP caps and connect rate: a benchmark's clients
// all come from 127.0.0.1.
func liftPerIP(c *config.Config) {
	c.Room.MaxConnsPerIP, c.Room.MaxUnauthedPerIP, c.Room.ConnectRatePerIP = 100000, 100000, -1
}
