package room

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

// oversizeStream is a frame header announcing 1 GiB followed by n bytes.
func oversizeStream(n int) []byte {
	b := make([]byte, 4+n)
	binary.BigEndian.PutUint32(b, 1<<30)
	for i := 4; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// streamAsync writes b on c from another goroutine and reports the result.
func streamAsync(c *testkit.Conn, b []byte, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		_ = c.NetConn().SetWriteDeadline(time.Now().Add(d))
		_, err := c.NetConn().Write(b)
		done <- err
	}()
	return done
}

// TestErrorReachesClientThatKeepsSending: a client announces an oversize
// frame and keeps streaming megabytes. The room must answer ERROR
// frame_too_large and end the stream with a FIN, not a TCP RST: a reset
// while the client's bytes are unread at the room can destroy the ERROR
// before the client reads it. So the client reads the ERROR, then a clean
// EOF, and its whole stream is accepted (drained by the room) meanwhile.
func TestErrorReachesClientThatKeepsSending(t *testing.T) {
	e := startEnv(t, envOpt{})
	bystander, _ := e.login(1, "bystander")
	for _, authed := range []bool{false, true} {
		for i := range 10 {
			var c *testkit.Conn
			if authed {
				c, _ = e.login(1, "streamer")
			} else {
				c = testkit.Dial(t, e.room.Addr())
			}
			done := streamAsync(c, oversizeStream(4<<20), 5*time.Second)
			c.ExpectError(proto.ErrCodeFrameTooLarge)
			if _, err := c.Next(testkit.Timeout); !errors.Is(err, io.EOF) {
				t.Fatalf("authed=%v #%d: after the ERROR got %v, want a clean EOF", authed, i, err)
			}
			if err := <-done; err != nil {
				t.Fatalf("authed=%v #%d: the room did not drain the stream after its ERROR: %v", authed, i, err)
			}
			c.Close()
			// The client's close ends the linger at once, not at the sweep.
			testkit.WaitFor(t, "lingering connection closed", lingerFor/2, func() bool { return e.room.conns.Load() == 1 })
		}
	}
	if e.hasSession("streamer") {
		t.Fatal("the streamer's session outlived its connection")
	}
	bystander.ExpectQuiet(0)
}

// TestLingerIsBounded: a client that never closes after the ERROR, whether
// it goes on streaming or stays silent, is closed within lingerFor and a tick.
func TestLingerIsBounded(t *testing.T) {
	e := startEnv(t, envOpt{})
	silent := testkit.Dial(t, e.room.Addr())
	silent.Write(oversizeStream(1 << 10))
	silent.ExpectError(proto.ErrCodeFrameTooLarge)

	streamer := testkit.Dial(t, e.room.Addr())
	streamer.Write(oversizeStream(0))
	streamer.ExpectError(proto.ErrCodeFrameTooLarge)
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { // streams until the room closes for good
		chunk := make([]byte, 32<<10)
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			_ = streamer.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := streamer.NetConn().Write(chunk); err != nil {
				done <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	bound := lingerFor + 2*time.Second
	testkit.WaitFor(t, "both lingering connections closed", bound, func() bool { return e.room.conns.Load() == 0 })
	if el := time.Since(start); el < lingerFor/2 {
		t.Fatalf("closed after %s, lingerFor is %s", el, lingerFor)
	}
	select {
	case err := <-done:
		if err == nil || isTimeout(err) {
			t.Fatalf("streamer write ended with %v, want a reset", err)
		}
	case <-time.After(testkit.Timeout):
		close(stop)
		t.Fatal("the streamer could still write after its connection was closed")
	}
}
