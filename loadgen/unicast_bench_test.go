package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/system"
)

// BenchmarkUnicastE2E is one push end to end in the all-in-one server
// (issue 16, "Fewer allocations per push"): POST /v1/apps/1/push over a
// real loopback keep-alive connection (the load tool's allocation-free
// pushConn), the center's handler, the store (QoS 1: saved, then ACKed by
// the client), the register lookup, the room's write and the client
// reading it (the load tool's allocation-free epoll client). Both ends are
// allocation-free, so B/op and allocs/op are the server's per push.
//
//	go test -run '^$' -bench UnicastE2E -benchmem ./loadgen/
func BenchmarkUnicastE2E(b *testing.B) {
	for _, tc := range []struct {
		store string
		qos   int
	}{
		{"memory", 1},
		{"memory", 0},
		{"bolt", 1},
	} {
		b.Run("store="+tc.store+"/qos="+strconv.Itoa(tc.qos), func(b *testing.B) {
			benchUnicastE2E(b, tc.store, tc.qos)
		})
	}
}

// unicastBenchConns is how many clients the pushes go round.
const unicastBenchConns = 64

func benchUnicastE2E(b *testing.B, store string, qos int) {
	sys := systest.Start(b, BenchConfig(1000, ""), func(o *system.Options) { o.Store = store })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load, err := StartLoad(ctx, LoadConfig{
		Rooms: []string{sys.RoomAddr()}, N: unicastBenchConns, App: 1, Secret: demoSecret, HB: 300,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer load.Close()
	testkit.WaitFor(b, "the clients to log in", 10*time.Second, func() bool {
		return load.Stats().Authed == unicastBenchConns
	})
	pc, err := newPushConn(&Target{API: "http://" + sys.CenterAddr(), App: 1, APIKey: demoAPIKey})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	pay := payload(256, time.Time{}, 0)
	uid := []byte("lg-")
	push := func(i int) {
		stampPayload(pay, time.Now())
		uid = strconv.AppendInt(uid[:3], int64(i%unicastBenchConns), 10)
		online, err := pc.push(ctx, uid, pay, qos)
		if err != nil || online != 1 {
			b.Fatalf("push %d: online %d, %v", i, online, err)
		}
	}
	// Warm up: the API connection, the room's buffers, the store's maps.
	for i := range 2 * unicastBenchConns {
		push(i)
	}
	before := load.Stats().Pushes
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		push(n)
		n++
	}
	b.StopTimer()
	want := before + int64(n)
	testkit.WaitFor(b, fmt.Sprint(n, " pushes delivered"), 10*time.Second, func() bool {
		return load.Stats().Pushes >= want
	})
}

// BenchmarkHTTPFloor is net/http's own share of BenchmarkUnicastE2E: the
// same request on the same keep-alive client, answered by a handler that
// reads the body, sets Content-Type and writes a push answer, and does
// nothing else. Its B/op is the floor of a push served by net/http.
func BenchmarkHTTPFloor(b *testing.B) {
	answer := []byte(`{"msg_id":"1","online":1,"stored":1}` + "\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(answer)
	}))
	defer srv.Close()
	pc, err := newPushConn(&Target{API: srv.URL, App: 1, APIKey: demoAPIKey})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	pay, uid := payload(256, time.Now(), 0), []byte("lg-1")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pc.push(ctx, uid, pay, 1); err != nil {
			b.Fatal(err)
		}
	}
}
