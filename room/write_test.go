package room

import (
	"context"
	"fmt"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/push"
)

// TestPushCoalesced holds every loop while thousands of pushes queue up, so
// that one flush carries them all: each connection must get exactly its
// frames, in push order, whether copied into one write (c1, c4) or sent by
// writev in several chunks (c2, c3: more than maxIOV frames), and a frame whose app was unbound after Push
// but before the flush must not go out.
func TestPushCoalesced(t *testing.T) {
	e := startEnv(t, envOpt{})
	uids := []string{"c1", "c2", "c3", "c4"}
	clients := make([]*testkit.Conn, len(uids))
	for i, uid := range uids {
		clients[i], _ = e.login(1, uid)
	}
	s1 := e.room.idx.get("c1", 0)

	// Hold every loop; c1's loop binds app 2 first and unbinds it just
	// before the flush can run.
	release := make(chan struct{})
	held := make(chan struct{}, 8)
	loops := e.room.allLoops()
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if l == s1.loop {
				s1.addApp(2)
			}
			held <- struct{}{}
			<-release
			if l == s1.loop {
				s1.removeApp(2)
			}
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	for range loops {
		<-held
	}

	const n = 2500
	big := make([]byte, 200)    // c2 and c3 get more than maxCopyWrite: writev
	gone := make([]byte, 2<<10) // the queue holds more than maxFlushBytes: two segments
	all := []push.Target{{UID: "c1"}, {UID: "c2"}, {UID: "c3"}, {UID: "c4"}}
	want := make(map[string][]uint64)
	for id := uint64(1); id <= n; id++ {
		var msg push.Message
		var targets []push.Target
		switch {
		case id%2 == 1: // app 1 to everyone
			msg, targets = push.Message{ID: id, App: 1, QoS: push.QoS1, Payload: []byte("all")}, all
			for _, uid := range uids {
				want[uid] = append(want[uid], id)
			}
		case id%4 == 0: // app 2 to c1, unbound before the flush
			msg, targets = push.Message{ID: id, App: 2, Payload: gone}, all[:1]
		default: // app 1 to c2 and c3
			msg, targets = push.Message{ID: id, App: 1, Payload: big}, all[1:3]
			want["c2"] = append(want["c2"], id)
			want["c3"] = append(want["c3"], id)
		}
		found, err := e.room.Push(t.Context(), msg, targets)
		if err != nil || found != len(targets) {
			t.Fatalf("Push %d = %d, %v; want %d", id, found, err, len(targets))
		}
	}
	s1.loop.push.mu.Lock()
	queued := len(s1.loop.push.q)
	s1.loop.push.mu.Unlock()
	if queued != n || !s1.loop.push.scheduled.Load() {
		t.Fatalf("c1's loop has %d batches queued (scheduled %v), want %d waiting for one flush", queued, s1.loop.push.scheduled.Load(), n)
	}

	before := counterValue(mPushes)
	close(release)
	total := 0
	for i, uid := range uids {
		c := clients[i]
		for k, id := range want[uid] {
			got, _, f := c.ExpectPush()
			if got != id {
				t.Fatalf("%s frame %d: id %d (app %d), want %d", uid, k, got, f.App, id)
			}
		}
		c.ExpectQuiet(0)
		total += len(want[uid])
	}
	if len(want["c2"]) <= maxIOV {
		t.Fatalf("test should give c2 more than %d frames", maxIOV)
	}
	if got := counterValue(mPushes) - before; got != float64(total) {
		t.Fatalf("pushes counted %v, want %d", got, total)
	}
	for _, l := range loops {
		if b := l.backlog.Load(); b != 0 {
			t.Fatalf("loop %d backlog %d after the flush", l.idx, b)
		}
	}
}

func TestFlushSegment(t *testing.T) {
	batch := func(conns, payload int) *pushBatch {
		return &pushBatch{conns: make([]*connState, conns), msg: push.Message{Payload: make([]byte, payload)}}
	}
	wide := &pushBatch{all: true, msg: push.Message{Payload: make([]byte, 10)}}
	cases := []struct {
		name string
		q    []*pushBatch
		want int
	}{
		{"one", []*pushBatch{batch(1, 10)}, 1},
		{"small ones", []*pushBatch{batch(10, 10), batch(10, 10), batch(10, 10)}, 3},
		{"one too many refs alone", []*pushBatch{batch(maxFlushRefs+1, 10), batch(1, 10)}, 1},
		{"refs bound", []*pushBatch{batch(maxFlushRefs/2, 10), batch(maxFlushRefs/2, 10), batch(1, 10)}, 2},
		{"bytes bound", []*pushBatch{batch(1, maxFlushBytes/2), batch(1, maxFlushBytes/2), batch(1, 10)}, 1},
		{"one too big alone", []*pushBatch{batch(1, 2*maxFlushBytes), batch(1, 10)}, 1},
		{"app-wide counts the loop's conns", []*pushBatch{wide, wide, wide}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := segment(tc.q, maxFlushRefs/2); got != tc.want {
				t.Fatalf("segment = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestPushLoneAfterStream checks that the flag protocol never strands a
// batch: many pushes from several goroutines, each client gets them all.
func TestPushLoneAfterStream(t *testing.T) {
	e := startEnv(t, envOpt{})
	const workers, per = 4, 300
	clients := make([]*testkit.Conn, workers)
	for i := range clients {
		clients[i], _ = e.login(1, fmt.Sprintf("w%d", i))
	}
	done := make(chan error, workers)
	for w := range workers {
		go func() {
			tg := []push.Target{{UID: fmt.Sprintf("w%d", w)}}
			for k := range per {
				if _, err := e.room.Push(context.Background(), push.Message{ID: uint64(k + 1), App: 1, Payload: []byte("x")}, tg); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		for k := range per {
			if id, _, _ := c.ExpectPush(); id != uint64(k+1) {
				t.Fatalf("frame %d: id %d", k, id)
			}
		}
		c.ExpectQuiet(0)
	}
	// A lone push after the stream still goes out without anything else
	// waking the loop.
	if _, err := e.room.Push(t.Context(), push.Message{ID: 9999, App: 1}, []push.Target{{UID: "w0"}}); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := clients[0].ExpectPush(); id != 9999 {
		t.Fatalf("lone push id %d", id)
	}
}
