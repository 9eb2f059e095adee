package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/lcpush/lcpush/internal/testkit"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

func failReq(code uint64, msg string) *Bytes {
	b := Bytes(wire.AppendString(wire.AppendUvarint(nil, code), msg))
	return &b
}

func bigReq(n int) *Bytes {
	b := Bytes(wire.AppendUvarint(nil, uint64(n)))
	return &b
}

var errNoSession = NewError(CodeUser+1, "no session")

func TestRoundTrip(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{MaxFrame: 256 << 10})
	c := newClient(t, ts.Addr(), func(cfg *ClientConfig) { cfg.MaxFrame = 256 << 10 })
	big := bytes.Repeat([]byte("x"), 200<<10)
	cases := []struct {
		name    string
		method  uint16
		req     Message
		want    []byte
		wantErr []error // every one must match with errors.Is
	}{
		{name: "empty", method: mEcho, req: nil, want: nil},
		{name: "small", method: mEcho, req: &Bytes{1, 2, 3}, want: []byte{1, 2, 3}},
		{name: "larger than the read buffer", method: mEcho, req: (*Bytes)(&big), want: big},
		{name: "request too large", method: mEcho, req: bigBytes(300 << 10), wantErr: []error{ErrTooLarge}},
		{name: "reply too large", method: mBig, req: bigReq(300 << 10), wantErr: []error{ErrTooLarge}},
		{name: "unknown method", method: 999, req: nil, wantErr: []error{ErrUnknownMethod}},
		{name: "remote overloaded", method: mFail, req: failReq(uint64(CodeOverloaded), "busy"),
			wantErr: []error{push.ErrOverloaded, ErrOverloaded}},
		{name: "remote unavailable", method: mFail, req: failReq(uint64(CodeUnavailable), "down"),
			wantErr: []error{push.ErrUnavailable, ErrUnavailable}},
		{name: "service sentinel", method: mFail, req: failReq(uint64(errNoSession.Code), "gone"),
			wantErr: []error{errNoSession}},
		{name: "plain error", method: mFail, req: failReq(0, "oops"), wantErr: []error{NewError(CodeInternal, "")}},
		{name: "malformed request", method: mFail, req: &Bytes{0x80},
			wantErr: []error{ErrBadRequest, wire.ErrMalformed}},
		{name: "handler panic", method: mPanic, wantErr: []error{NewError(CodeInternal, "")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got Bytes
			err := c.Call(ctxTimeout(t, 5*time.Second), tc.method, tc.req, &got)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				if !bytes.Equal(got, tc.want) {
					t.Fatalf("reply %d bytes, want %d", len(got), len(tc.want))
				}
				return
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want errors.Is %v", err, want)
				}
			}
		})
	}
	// The message travels with the code.
	err := c.Call(context.Background(), mFail, failReq(uint64(CodeUser+7), "detail"), nil)
	var re *Error
	if !errors.As(err, &re) || re.Code != CodeUser+7 || re.Msg != "detail" {
		t.Fatalf("err = %#v", err)
	}
}

func bigBytes(n int) *Bytes {
	b := make(Bytes, n)
	return &b
}

// Many callers, handlers that sleep random durations: replies come back out
// of order and each caller must get its own.
func TestConcurrentOutOfOrder(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{Workers: 32})
	c := newClient(t, ts.Addr(), nil)
	const callers, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got Bytes
			for i := 0; i < each; i++ {
				payload := []byte(fmt.Sprintf("caller %d call %d", g, i))
				if err := c.Call(ctxTimeout(t, 10*time.Second), mSleep, sleepReq(rand.IntN(3), payload), &got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, payload) {
					errs <- fmt.Errorf("got %q, want %q", got, payload)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ts.calls.Load() != callers*each {
		t.Fatalf("server ran %d calls", ts.calls.Load())
	}
}

// A call whose deadline passes returns at once; the late reply is dropped,
// and the connection goes on serving the right replies to the right calls.
func TestDeadlineLateReplyDropped(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{})
	c := newClient(t, ts.Addr(), func(cfg *ClientConfig) { cfg.Conns = 1 })
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	var got Bytes
	err := c.Call(ctx, mSleep, sleepReq(300, []byte("late")), &got)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("call returned after %v", d)
	}
	// Calls go on while the late reply is still to come, and after it.
	for i := 0; i < 5; i++ {
		want := []byte(fmt.Sprint("fresh ", i))
		if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, (*Bytes)(&want), &got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	testkit.WaitFor(t, "the late reply", 3*time.Second, func() bool { return c.late.Load() == 1 })
	want := []byte("after")
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, (*Bytes)(&want), &got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %q, %v", got, err)
	}
	// Cancel works like a deadline.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel2() }()
	if err := c.Call(ctx2, mSleep, sleepReq(200, nil), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	// An ended ctx sends nothing.
	before := ts.calls.Load()
	if err := c.Call(ctx2, mEcho, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if ts.calls.Load() != before {
		t.Fatal("a call with an ended ctx was sent")
	}
}

// The deadline travels with the request: a request that waited past it in
// the server's queue is answered without running the handler.
func TestDeadlineSkippedInQueue(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{Workers: 1})
	c := newClient(t, ts.Addr(), nil)
	done := make(chan error, 1)
	go func() { done <- c.Call(ctxTimeout(t, 5*time.Second), mBlock, nil, nil) }()
	testkit.WaitFor(t, "the worker to be busy", 3*time.Second, func() bool { return ts.running.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, mEcho, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(ts.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the late reply", 3*time.Second, func() bool { return c.late.Load() == 1 })
	if n := ts.calls.Load(); n != 1 {
		t.Fatalf("handlers ran %d times, want 1 (the expired request must be skipped)", n)
	}
}

// At the in-flight bound, callers get ErrOverloaded at once, and no
// goroutine or queue grows with them.
func TestClientOverloaded(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{Workers: 4, QueueLen: 1000})
	c := newClient(t, ts.Addr(), func(cfg *ClientConfig) { cfg.MaxInFlight = 8 })
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	const callers = 200
	base := runtime.NumGoroutine()
	var (
		wg                        sync.WaitGroup
		mu                        sync.Mutex
		ok, overloaded, deadlines int
		slowFail                  time.Duration
		peak                      int
	)
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() { // sample the goroutine count while callers are blocked
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			mu.Lock()
			peak = max(peak, runtime.NumGoroutine())
			mu.Unlock()
		}
	}()
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := c.Call(ctx, mSleep, sleepReq(100, nil), nil)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrOverloaded) && errors.Is(err, push.ErrOverloaded):
				overloaded++
				slowFail = max(slowFail, d)
			case errors.Is(err, context.DeadlineExceeded):
				deadlines++
			default:
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	if ok+deadlines > 8*2 || overloaded < callers-8*2 {
		t.Fatalf("ok %d, deadline %d, overloaded %d: the bound of 8 did not hold", ok, deadlines, overloaded)
	}
	if slowFail > 100*time.Millisecond {
		t.Fatalf("ErrOverloaded took %v", slowFail)
	}
	// The callers themselves, the sampler, and nothing per call.
	if limit := base + callers + 1 + 4; peak > limit {
		t.Fatalf("peak goroutines %d > %d (base %d + %d callers)", peak, limit, base, callers)
	}
	if c.InFlight() != 0 {
		t.Fatalf("in flight %d after all calls returned", c.InFlight())
	}
}

// With the server gone, calls fail fast; when it comes back on the same
// port the client reconnects by itself.
func TestReconnectAfterRestart(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{})
	addr := ts.Addr()
	c := newClient(t, addr, nil)
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := ts.Shutdown(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "calls to fail fast", 3*time.Second, func() bool {
		start := time.Now()
		err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil)
		return errors.Is(err, ErrUnavailable) && errors.Is(err, push.ErrUnavailable) && time.Since(start) < 50*time.Millisecond
	})
	ts2 := startServer(t, ServerConfig{Addr: addr})
	testkit.WaitFor(t, "the client to reconnect", 5*time.Second, func() bool {
		return c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil) == nil
	})
	if ts2.calls.Load() == 0 {
		t.Fatal("the new server saw no call")
	}
}

// Close fails the calls in flight with ErrClosed and stops every goroutine.
func TestClientClose(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerConfig{})
	c := newClient(t, ts.Addr(), nil)
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() { errs <- c.Call(context.Background(), mBlock, nil, nil) }()
	}
	testkit.WaitFor(t, "the calls to run", 3*time.Second, func() bool { return ts.running.Load() == 4 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	}
	if err := c.Call(context.Background(), mEcho, nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	_ = c.Close() // idempotent
	close(ts.release)
}

// A target that is down from the start: the first calls wait for the first
// dial, then calls fail fast while it stays down.
func TestUnavailableFromStart(t *testing.T) {
	checkGoroutines(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, addr, func(cfg *ClientConfig) { cfg.BackoffMin, cfg.BackoffMax = time.Second, time.Second })
	start := time.Now()
	for i := 0; i < 3; i++ {
		if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("took %v", d)
	}
}

// A server that answers garbage: the calls on that connection fail with
// ErrConnLost and the client dials again.
func TestClientBadFrameFromServer(t *testing.T) {
	checkGoroutines(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted sync.WaitGroup
	conns := make(chan net.Conn, 16)
	accepted.Add(1)
	go func() {
		defer accepted.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- nc
			go func() {
				buf := make([]byte, headerSize)
				if _, err := nc.Read(buf); err != nil {
					return
				}
				_, _ = nc.Write([]byte{0, 0, 0, 1, 9}) // Len below the minimum
			}()
		}
	}()
	defer func() {
		ln.Close()
		accepted.Wait()
		close(conns)
		for nc := range conns {
			nc.Close()
		}
	}()
	c := newClient(t, ln.Addr().String(), func(cfg *ClientConfig) { cfg.Conns = 1 })
	if err := c.Call(ctxTimeout(t, 5*time.Second), mEcho, nil, nil); !errors.Is(err, ErrConnLost) {
		t.Fatalf("err = %v, want ErrConnLost", err)
	}
	testkit.WaitFor(t, "a second dial", 3*time.Second, func() bool { return len(conns) >= 2 })
}

func TestClientConfig(t *testing.T) {
	if _, err := NewClient(ClientConfig{}); err == nil {
		t.Fatal("empty Addr accepted")
	}
}

// A call allocates nothing on the client (the target is at most 2), and with
// a handler that allocates nothing, nothing on the server either: this
// counts the whole process.
func TestCallAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops objects at random under -race")
	}
	checkGoroutines(t)
	srv, _ := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	srv.Handle(mEcho, func(_ context.Context, req []byte, rep *Reply) error {
		_, err := rep.Write(req)
		return err
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	c := newClient(t, srv.Addr(), nil)
	req, resp := Bytes("0123456789abcdef"), make(Bytes, 0, 16)
	ctx := ctxTimeout(t, time.Minute)
	var callErr error
	allocs := testing.AllocsPerRun(2000, func() {
		if err := c.Call(ctx, mEcho, &req, &resp); err != nil {
			callErr = err
		}
	})
	if callErr != nil {
		t.Fatal(callErr)
	}
	if allocs > 2 {
		t.Fatalf("%.2f allocations per call (client and server), want at most 2", allocs)
	}
	t.Logf("%.3f allocations per round trip", allocs)
}
