package room

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// fuzzExchange bounds one fuzz input's whole exchange with the room. Every
// blocking step runs under a socket deadline, so a room that stops answering
// fails the input with a message instead of stalling the fuzzer.
const fuzzExchange = 5 * time.Second

// FuzzClientInput sends arbitrary bytes to a live room, before a valid AUTH
// (the pre-auth path: framing under max_auth_frame, AUTH decoding and token
// checks, the auth rules) or after it (the post-auth path: every op, its
// limits and the ERROR budget), and checks that the room never dies and keeps serving a
// bystander: whatever a client sends costs only its own connection.
//
// Each input is one deterministic exchange, with no fixed wait: the client
// writes its bytes, half-closes, and reads every frame the room answers until
// the room closes (gnet closes a connection on the peer's FIN once its bytes
// are handled). So an input costs a round trip or two, not a read timeout,
// and the fuzzer runs hundreds of inputs per second and worker.
func FuzzClientInput(f *testing.F) {
	seeds := [][]byte{
		nil,
		{0, 0, 0},
		{0xff, 0xff, 0xff, 0xff},
		proto.AppendFrame(nil, proto.Header{Op: proto.OpPing, Seq: 1}, nil),
		proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, []byte(`{"uid":"x","token":"1.00"}`)),
		proto.AppendFrame(nil, proto.Header{Op: proto.OpBind, Seq: 2, App: 2}, []byte(`{"token":"1.00"}`)),
		proto.AppendFrame(nil, proto.Header{Op: proto.OpUnbind, Seq: 3, App: 1}, nil),
		proto.AppendAck(nil, 4, []uint64{1, 2, 3}),
		proto.AppendUpstream(nil, 5, 1, true, 7, []byte("up")),
		proto.AppendUpstream(nil, 6, 9, true, 7, []byte("not bound")),
		proto.AppendPush(nil, 1, true, 1, []byte("server only")),
		{0, 0, 0, 12, 2, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0},
		{0, 0, 0, 13, 1, 6, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0},
		{0, 0, 4, 1}, // Len 1025: over max_auth_frame before AUTH, fine after
		bytes.Repeat(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil), 40), // past the PING limit
		bytes.Repeat(proto.AppendUpstream(nil, 9, 9, false, 1, nil), 130),             // past the UPSTREAM and ERROR limits
	}
	for _, s := range seeds {
		f.Add(false, s)
		f.Add(true, s)
	}
	// Every fuzz worker process runs this once and gets its own room, so uids
	// never collide across workers. A bystander's PING every few seconds
	// keeps it far from its idle timeout (2 x 30 s + grace) however long the
	// run, and within its PING limit.
	// The default op limits: the pre-auth and post-auth paths as deployed.
	// The fuzzer dials one connection per input, hundreds a second from one
	// address: only the per-IP connect rate is lifted.
	e := startEnv(f, envOpt{cfg: func(c *config.Config) {
		defaultLimits(c)
		c.Room.ConnectRatePerIP = -1
	}})
	by, _ := e.login(1, "bystander")
	var n atomic.Int64
	var pinged atomic.Int64
	f.Fuzz(func(t *testing.T, authed bool, data []byte) {
		cl := testkit.Dial(t, e.room.Addr())
		c := cl.NetConn()
		tc := c.(*net.TCPConn)
		// Abortive close at the end: no TIME_WAIT per input, so a long run
		// does not eat the loopback's ephemeral ports.
		defer func() { _ = tc.SetLinger(0); tc.Close() }()
		deadline := time.Now().Add(fuzzExchange)
		_ = c.SetDeadline(deadline)
		if authed {
			uid := fmt.Sprintf("fz-%d", n.Add(1))
			cl.Auth(1, uid, testkit.Token(1, uid), 0)
			if f, err := cl.Next(time.Until(deadline)); err != nil || f.Op != proto.OpAuthOK {
				t.Fatalf("AUTH before the fuzz bytes: op %#x, %v", f.Op, err)
			}
		}
		// The room may close (and reset) the connection part way through
		// the bytes; only a stuck write is a failure.
		if _, err := c.Write(data); isTimeout(err) {
			t.Fatalf("room stopped reading: write of %d bytes stuck for %s", len(data), fuzzExchange)
		}
		_ = tc.CloseWrite()
		for {
			_, err := cl.Next(time.Until(deadline)) // every frame must parse
			if err == nil {
				continue
			}
			if isTimeout(err) {
				t.Fatalf("room neither answered nor closed the connection within %s of the client's EOF", fuzzExchange)
			}
			if !isClosedErr(err) {
				t.Fatalf("bad frame from the room: %v", err)
			}
			break
		}
		// Alive and served: a push reaches the bystander (a PING per input
		// would run into the bystander's own PING limit).
		// The bystander is f's (logged in once per worker), and f must not
		// fail from inside the fuzz target: it is read with Next, failing t.
		id := uint64(n.Add(1))
		if got, _ := e.room.Push(t.Context(), push.Message{ID: id, App: 1, Payload: []byte("still here")}, []push.Target{{UID: "bystander"}}); got != 1 {
			t.Fatalf("bystander not found by Push")
		}
		fr, err := by.Next(testkit.Timeout)
		if err != nil || fr.Op != proto.OpPush {
			t.Fatalf("bystander: op %#x %q, %v; want the PUSH", fr.Op, fr.Body, err)
		}
		if got, _, err := proto.ParsePush(fr.Body); err != nil || got != id {
			t.Fatalf("bystander got push %d (%v), want %d", got, err, id)
		}
		if now := time.Now().UnixNano(); now-pinged.Load() > int64(3*time.Second) {
			pinged.Store(now)
			// ExpectQuiet by hand: a PING whose PONG is the very next frame.
			if _, err := by.NetConn().Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil)); err != nil {
				t.Fatalf("bystander PING: %v", err)
			}
			if fr, err := by.Next(testkit.Timeout); err != nil || fr.Op != proto.OpPong {
				t.Fatalf("bystander PING answered by op %#x %q, %v; want PONG and nothing else", fr.Op, fr.Body, err)
			}
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isClosedErr reports whether err is the room closing the connection: EOF,
// possibly mid-frame, or a reset.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
