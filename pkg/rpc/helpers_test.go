package rpc

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

// Methods of the test server.
const (
	mEcho  uint16 = 1 // replies with the request
	mSleep uint16 = 2 // request: uvarint ms, payload; sleeps, then echoes the payload
	mFail  uint16 = 3 // request: uvarint code, message; returns that *Error (code 0: a plain error)
	mPanic uint16 = 4
	mBlock uint16 = 5 // waits on testServer.release (or ctx), then echoes
	mBig   uint16 = 6 // request: uvarint n; replies with n bytes
)

// testServer is a Server with the test methods and counters.
type testServer struct {
	*Server
	running atomic.Int64 // handlers running now
	calls   atomic.Int64 // handlers started
	release chan struct{}
}

func startServer(t *testing.T, cfg ServerConfig) *testServer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, release: make(chan struct{})}
	enter := func() func() {
		ts.calls.Add(1)
		ts.running.Add(1)
		return func() { ts.running.Add(-1) }
	}
	srv.Handle(mEcho, func(_ context.Context, req []byte, rep *Reply) error {
		defer enter()()
		_, err := rep.Write(req)
		return err
	})
	srv.Handle(mSleep, func(ctx context.Context, req []byte, rep *Reply) error {
		defer enter()()
		r := wire.NewReader(req)
		ms := r.Uvarint()
		if r.Err() != nil {
			return r.Err()
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := rep.Write(req[len(req)-r.Len():])
		return err
	})
	srv.Handle(mFail, func(_ context.Context, req []byte, rep *Reply) error {
		defer enter()()
		r := wire.NewReader(req)
		code, msg := r.Uvarint(), r.String()
		if err := r.Done(); err != nil {
			return err
		}
		if code == 0 {
			return errors.New(msg)
		}
		return NewError(uint32(code), msg)
	})
	srv.Handle(mPanic, func(context.Context, []byte, *Reply) error {
		defer enter()()
		panic("boom")
	})
	srv.Handle(mBlock, func(ctx context.Context, req []byte, rep *Reply) error {
		defer enter()()
		select {
		case <-ts.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := rep.Write(req)
		return err
	})
	srv.Handle(mBig, func(_ context.Context, req []byte, rep *Reply) error {
		defer enter()()
		r := wire.NewReader(req)
		n := r.Uvarint()
		if r.Err() != nil {
			return r.Err()
		}
		_, err := rep.Write(make([]byte, n))
		return err
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ts
}

func newClient(t *testing.T, addr string, mod func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{Addr: addr, BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sleepReq encodes a mSleep request.
func sleepReq(ms int, payload []byte) *Bytes {
	b := Bytes(append(wire.AppendUvarint(nil, uint64(ms)), payload...))
	return &b
}

// checkGoroutines fails the test if goroutines started during it outlive
// its cleanups. Register it first, so it runs last.
func checkGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("goroutines: %d, %d at start\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
