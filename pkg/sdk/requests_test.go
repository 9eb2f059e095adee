package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

func TestBindUnbind(t *testing.T) {
	srv := newFakeServer(t)
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	fc := srv.accept(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	tests := []struct {
		name   string
		call   func() error
		op     uint8
		app    uint32
		answer func(seq uint32) []byte
		code   string // "" = success
	}{
		{"bind ok", func() error { return c.Bind(ctx, 8, "tok8") }, proto.OpBind, 8,
			func(seq uint32) []byte { return proto.AppendHeader(nil, proto.Header{Op: proto.OpBindOK, Seq: seq}, 0) }, ""},
		{"bind refused", func() error { return c.Bind(ctx, 9, "bad") }, proto.OpBind, 9,
			func(seq uint32) []byte { return proto.AppendError(nil, seq, proto.ErrCodeBadToken, "nope") }, proto.ErrCodeBadToken},
		{"unbind ok", func() error { return c.Unbind(ctx, 8) }, proto.OpUnbind, 8,
			func(seq uint32) []byte {
				return proto.AppendHeader(nil, proto.Header{Op: proto.OpUnbindOK, Seq: seq}, 0)
			}, ""},
		{"unbind not bound", func() error { return c.Unbind(ctx, 10) }, proto.OpUnbind, 10,
			func(seq uint32) []byte { return proto.AppendError(nil, seq, proto.ErrCodeNotBound, "10") }, proto.ErrCodeNotBound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() { errc <- tt.call() }()
			f := fc.take(t, tt.op)
			if f.App != tt.app || f.Seq == 0 {
				t.Fatalf("frame app %d seq %d", f.App, f.Seq)
			}
			if tt.op == proto.OpBind {
				var b proto.Bind
				if err := proto.DecodeJSON(f.Body, &b); err != nil || b.Token == "" {
					t.Fatalf("BIND body %q: %v", f.Body, err)
				}
			} else if len(f.Body) != 0 {
				t.Fatalf("UNBIND body %q", f.Body)
			}
			// An answer to another Seq must not complete this request.
			fc.send(proto.AppendHeader(nil, proto.Header{Op: proto.OpBindOK, Seq: f.Seq + 1000}, 0))
			select {
			case err := <-errc:
				t.Fatalf("request completed by a reply with another Seq: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			fc.send(tt.answer(f.Seq))
			err := <-errc
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if pe := protoErr(err); pe == nil || pe.Code != tt.code {
				t.Fatalf("err %v; want *proto.Error %s", err, tt.code)
			}
		})
	}
	c.mu.Lock()
	binds := len(c.binds)
	c.mu.Unlock()
	if binds != 0 {
		t.Fatalf("%d binds remembered after bind 8, refused 9, unbind 8", binds)
	}
}

func TestUpstream(t *testing.T) {
	srv := newFakeServer(t)
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	fc := srv.accept(t)
	ctx := context.Background()

	if err := c.Upstream(ctx, 7, 3, []byte("fire"), false); err != nil {
		t.Fatal(err)
	}
	f := fc.take(t, proto.OpUpstream)
	typ, payload, err := proto.ParseUpstream(f.Body)
	if err != nil || typ != 3 || string(payload) != "fire" || f.App != 7 || f.Flags&proto.FlagReplyWanted != 0 {
		t.Fatalf("upstream %+v typ %d payload %q err %v", f.Header, typ, payload, err)
	}

	// Two requests with replies answered in reverse order: each gets its own.
	errs := make([]chan error, 2)
	for i := range errs {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- c.Upstream(ctx, 8, uint16(10+i), []byte{byte(i)}, true) }()
	}
	frames := map[uint16]*rxFrame{}
	for range 2 {
		f := fc.take(t, proto.OpUpstream)
		typ, _, _ := proto.ParseUpstream(f.Body)
		if f.Flags&proto.FlagReplyWanted == 0 {
			t.Fatal("REPLY_WANTED not set")
		}
		frames[typ] = f
	}
	fc.send(proto.AppendError(nil, frames[11].Seq, proto.ErrCodeRateLimited, "slow down"))
	if pe := protoErr(<-errs[1]); pe == nil || pe.Code != proto.ErrCodeRateLimited {
		t.Fatalf("second upstream: %v", pe)
	}
	select {
	case err := <-errs[0]:
		t.Fatalf("first upstream completed early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	fc.send(proto.AppendHeader(nil, proto.Header{Op: proto.OpUpstreamOK, Seq: frames[10].Seq}, 0))
	if err := <-errs[0]; err != nil {
		t.Fatalf("first upstream: %v", err)
	}

	if err := c.Upstream(ctx, 7, 1, make([]byte, proto.DefaultMaxLen), false); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge upstream: %v", err)
	}
}

func TestRequestContextAndDisconnect(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.BackoffMin, cfg.BackoffMax = 300*time.Millisecond, 300*time.Millisecond
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := c.Bind(ctx, 8, "t"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered Bind: %v", err)
	}
	testkit.WaitFor(t, "pending cleared", waitTimeout, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.pending) == 0 })

	errc := make(chan error, 1)
	go func() { errc <- c.Upstream(context.Background(), 7, 1, nil, true) }()
	fc.take(t, proto.OpUpstream)
	fc.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrDisconnected) {
			t.Fatalf("err %v; want ErrDisconnected", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("request not failed by the disconnect")
	}
	testkit.WaitFor(t, "disconnected", waitTimeout, func() bool { return c.State() != StateConnected })
	if err := c.Bind(context.Background(), 8, "t"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Bind while disconnected: %v", err)
	}
	if err := c.Upstream(context.Background(), 8, 1, nil, false); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Upstream while disconnected: %v", err)
	}

	// A request pending at Close fails with ErrClosed.
	fc = srv.accept(t)
	testkit.WaitFor(t, "reconnected", waitTimeout, func() bool { return c.State() == StateConnected })
	go func() { errc <- c.Bind(context.Background(), 8, "t") }()
	fc.take(t, proto.OpBind)
	_ = c.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending Bind at Close: %v", err)
	}
	if err := c.Upstream(context.Background(), 8, 1, nil, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Upstream after Close: %v", err)
	}
}

func TestRebindAfterReconnect(t *testing.T) {
	srv := newFakeServer(t)
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	fc := srv.accept(t)
	errc := make(chan error, 1)
	go func() { errc <- c.Bind(context.Background(), 8, "tok8") }()
	f := fc.take(t, proto.OpBind)
	fc.send(proto.AppendHeader(nil, proto.Header{Op: proto.OpBindOK, Seq: f.Seq}, 0))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	fc.Close()
	fc = srv.accept(t)
	f = fc.take(t, proto.OpBind)
	var b proto.Bind
	if err := proto.DecodeJSON(f.Body, &b); err != nil || b.Token != "tok8" || f.App != 8 {
		t.Fatalf("rebind app %d body %q", f.App, f.Body)
	}
	// The token is refused now: the app is forgotten, not retried forever.
	fc.send(proto.AppendError(nil, f.Seq, proto.ErrCodeBadToken, "expired"))
	testkit.WaitFor(t, "binding forgotten", waitTimeout, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.binds) == 0 })
	fc.Close()
	fc = srv.accept(t)
	time.Sleep(20 * time.Millisecond)
	if n := fc.count(proto.OpBind); n != 0 {
		t.Fatalf("%d BINDs after the token was refused", n)
	}
}

func TestSeqSkipsZero(t *testing.T) {
	c := newClient(t, testConfig("127.0.0.1:1"))
	c.seq.Store(^uint32(0) - 1)
	got := []uint32{c.nextSeq(), c.nextSeq(), c.nextSeq()}
	if got[0] != ^uint32(0) || got[1] != 1 || got[2] != 2 {
		t.Fatalf("seqs %v", got)
	}
}

func TestUnsolicitedFramesIgnored(t *testing.T) {
	srv := newFakeServer(t)
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	fc := srv.accept(t)
	// Replies nobody waits for, an ERROR with Seq 0, and an unknown
	// (future) op are ignored; the connection stays up.
	fc.send(proto.AppendHeader(nil, proto.Header{Op: proto.OpBindOK, Seq: 4242}, 0))
	fc.send(proto.AppendError(nil, 0, proto.ErrCodeRateLimited, "x"))
	fc.send(proto.AppendFrame(nil, proto.Header{Op: 0x7F, Seq: 1}, []byte("future")))
	fc.send(proto.AppendPush(nil, 7, true, 1, nil))
	select {
	case m := <-c.Messages():
		if m.ID != 1 {
			t.Fatalf("got %d", m.ID)
		}
	case <-time.After(waitTimeout):
		t.Fatal("connection did not survive unsolicited frames")
	}
	if srv.auths.Load() != 1 {
		t.Fatal("reconnected")
	}
}

func TestMalformedPushReconnects(t *testing.T) {
	srv := newFakeServer(t)
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	fc := srv.accept(t)
	bad := proto.AppendFrame(nil, proto.Header{Op: proto.OpPush}, []byte{1, 2, 3}) // body shorter than a MsgID
	fc.send(bad)
	fc = srv.accept(t)
	// A frame announcing more than the client accepts is refused without
	// allocating it, and the client reconnects.
	fc.send(binary.BigEndian.AppendUint32(nil, 0xFFFFFFF0))
	srv.accept(t)
}
