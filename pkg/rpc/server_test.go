package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"github.com/lcpush/lcpush/internal/testkit"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// With the workers busy and the queue full, a request is answered
// CodeOverloaded at once.
func TestServerQueueFull(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{Workers: 1, QueueLen: 2})
	c := newClient(t, ts.Addr(), nil)
	errs := make(chan error, 3)
	go func() { errs <- c.Call(ctxTimeout(t, 5*time.Second), mBlock, nil, nil) }()
	testkit.WaitFor(t, "the worker to be busy", 3*time.Second, func() bool { return ts.running.Load() == 1 })
	for i := 0; i < 2; i++ {
		go func() { errs <- c.Call(ctxTimeout(t, 5*time.Second), mBlock, nil, nil) }()
	}
	testkit.WaitFor(t, "the queue to fill", 3*time.Second, func() bool { return ts.pool.Len() == 2 })
	start := time.Now()
	err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil)
	var re *Error
	if !errors.As(err, &re) || re.Code != CodeOverloaded || !errors.Is(err, push.ErrOverloaded) {
		t.Fatalf("err = %v, want a remote CodeOverloaded", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("overloaded answer took %v", d)
	}
	close(ts.release)
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Shutdown lets the calls in flight finish and their replies reach the
// client; a new call is turned away at once; then everything stops.
func TestShutdownDrains(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{Workers: 4, QueueLen: 16})
	c := newClient(t, ts.Addr(), nil)
	const n = 10 // 4 running, 6 queued
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := []byte("drained")
			var got Bytes
			err := c.Call(ctxTimeout(t, 10*time.Second), mSleep, sleepReq(150, want), &got)
			if err == nil && !bytes.Equal(got, want) {
				err = errors.New("wrong reply")
			}
			errs <- err
		}()
	}
	testkit.WaitFor(t, "calls in flight", 3*time.Second, func() bool {
		return ts.running.Load() == 4 && ts.pool.Len() == n-4
	})
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	testkit.WaitFor(t, "the client to see GoAway", 3*time.Second, func() bool { return !c.Ready() })
	start := time.Now()
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("call during drain: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("call during drain took %v", d)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("in-flight call: %v", err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := ts.Shutdown(context.Background()); err != nil { // idempotent
		t.Fatal(err)
	}
}

// A Shutdown whose ctx ends cancels the handlers and closes at once.
func TestShutdownTimeout(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{})
	c := newClient(t, ts.Addr(), nil)
	errs := make(chan error, 1)
	go func() { errs <- c.Call(context.Background(), mBlock, nil, nil) }()
	testkit.WaitFor(t, "the call to run", 3*time.Second, func() bool { return ts.running.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-errs; err == nil {
		t.Fatal("a canceled call succeeded")
	}
}

// rawFrame builds a frame by hand.
func rawFrame(kind uint8, id uint64, body []byte) []byte {
	b := appendHeader(nil, header{kind: kind, method: mEcho, id: id})
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-lenSize))
	return b
}

// A connection that sends a bad frame is closed; the others go on.
func TestBadFrameClosesOnlyThatConn(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{MaxFrame: 64 << 10})
	c := newClient(t, ts.Addr(), nil)
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"length over max", []byte{0x7F, 0xFF, 0xFF, 0xFF, 1}},
		{"length under header", []byte{0, 0, 0, 3, 1, 0, 0}},
		{"unknown kind", rawFrame(9, 1, nil)},
		{"reply from a client", rawFrame(kindReply, 1, []byte("x"))},
		{"good then garbage", append(rawFrame(kindRequest, 1, []byte("ok")), 0xFF, 0xFF, 0xFF, 0xFF)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", ts.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			// The server closes the connection (after answering what was good).
			_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.Copy(io.Discard, nc); err != nil {
				t.Fatalf("connection not closed by the server: %v", err)
			}
			var got Bytes
			want := []byte("still fine")
			if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, (*Bytes)(&want), &got); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("other connection: %q, %v", got, err)
			}
		})
	}
}

// A raw client sees the replies of pipelined requests and GoAway; the
// frames of one batch arrive whole.
func TestRawPipelining(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{})
	nc, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.(*net.TCPConn).SetReadBuffer(64 << 10) // never read: the server must stall
	var batch []byte
	for id := uint64(1); id <= 50; id++ {
		batch = append(batch, rawFrame(kindRequest, id, binary.BigEndian.AppendUint64(nil, id))...)
	}
	if _, err := nc.Write(batch); err != nil {
		t.Fatal(err)
	}
	fr := newFrameReader(nc, 4096, DefaultMaxFrame)
	seen := map[uint64]bool{}
	for len(seen) < 50 {
		h, body, err := fr.next()
		if err != nil {
			t.Fatal(err)
		}
		if h.kind != kindReply || binary.BigEndian.Uint64(body) != h.id || seen[h.id] {
			t.Fatalf("bad reply %+v %x", h, body)
		}
		seen[h.id] = true
	}
	go func() { _ = ts.Shutdown(context.Background()) }()
	h, _, err := fr.next()
	if err != nil || h.kind != kindGoAway {
		t.Fatalf("want GoAway, got %+v %v", h, err)
	}
}

func TestServerMisuse(t *testing.T) {
	srv, _ := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	srv.Handle(1, func(context.Context, []byte, *Reply) error { return nil })
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("duplicate", func() { srv.Handle(1, func(context.Context, []byte, *Reply) error { return nil }) })
	mustPanic("nil", func() { srv.Handle(2, nil) })
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustPanic("after start", func() { srv.Handle(3, func(context.Context, []byte, *Reply) error { return nil }) })
	if err := srv.Start(context.Background()); err == nil {
		t.Fatal("second Start accepted")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	never, _ := NewServer(ServerConfig{})
	if err := never.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A client that never reads its replies stalls only its own connection:
// the writer's timeout closes it, and the server's other clients go on.
func TestSlowReaderClosed(t *testing.T) {
	checkGoroutines(t)
	// QueueLen above the 40 requests: every one gets its 1 MiB reply (none
	// is refused as overloaded), so the replies always outgrow what the two
	// kernels can buffer, however slowly the workers run.
	ts := startServer(t, ServerConfig{WriteTimeout: 200 * time.Millisecond, MaxFrame: 2 << 20, Workers: 2, QueueLen: 64})
	// One connection: with the default two, the second may be accepted
	// after `before` is read, and the count never comes back to it.
	c := newClient(t, ts.Addr(), func(cfg *ClientConfig) { cfg.MaxFrame = 2 << 20; cfg.Conns = 1 })
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	conns := func() int {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns)
	}
	before := conns()
	nc, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.(*net.TCPConn).SetReadBuffer(64 << 10) // never read: the server must stall
	var batch []byte
	for id := uint64(1); id <= 40; id++ {
		b := appendHeader(nil, header{kind: kindRequest, method: mBig, id: id})
		b = append(b, *bigReq(1 << 20)...)
		binary.BigEndian.PutUint32(b, uint32(len(b)-lenSize))
		batch = append(batch, b...)
	}
	// The write blocks once the server stops reading, and fails when it
	// closes the connection: neither is what is tested.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = nc.Write(batch)
	}()
	defer func() { _ = nc.Close(); <-wrote }()
	testkit.WaitFor(t, "the raw connection to be served", 3*time.Second, func() bool { return conns() == before+1 })
	testkit.WaitFor(t, "the stalled connection to be closed", 10*time.Second, func() bool { return conns() == before })
	var got Bytes
	want := []byte("others unaffected")
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, (*Bytes)(&want), &got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%q, %v", got, err)
	}
}
