package room

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
)

// FuzzWSTransport sends arbitrary bytes as the WebSocket stream of an
// upgraded connection, before a valid AUTH or after it, and checks that the
// room handles them and closes that connection in bounded time, and keeps
// serving a bystander. (pkg/wsframe fuzzes the codec itself; this is the
// room's use of it: one frame per message, control frames, close codes.)
func FuzzWSTransport(f *testing.F) {
	frame := func(fr ws.Frame) []byte {
		var b bytes.Buffer
		_ = ws.WriteFrame(&b, ws.MaskFrameInPlace(fr))
		return b.Bytes()
	}
	ping := proto.AppendFrame(nil, proto.Header{Op: proto.OpPing, Seq: 1}, nil)
	auth := proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, []byte(`{"uid":"x","token":"1.00"}`))
	seeds := [][]byte{
		nil,
		frame(ws.NewBinaryFrame(ping)),
		frame(ws.NewBinaryFrame(auth)),
		frame(ws.NewBinaryFrame(append(append([]byte(nil), ping...), ping...))),
		frame(ws.NewTextFrame([]byte("text"))),
		frame(ws.NewPingFrame([]byte("p"))),
		frame(ws.NewPongFrame(nil)),
		frame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))),
		frame(ws.NewCloseFrame([]byte{1})),
		frame(ws.NewFrame(ws.OpBinary, false, ping[:5])),
		append(frame(ws.NewFrame(ws.OpBinary, false, ping[:5])), frame(ws.NewFrame(ws.OpContinuation, true, ping[5:]))...),
		frame(ws.NewFrame(ws.OpContinuation, true, ping)),
		{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, // 2^63-ish length
		{0x82, 0x7e, 0xff, 0xff, 1, 2, 3, 4},                                     // 64 KiB announced
		{0x82, byte(len(ping))},                                                  // unmasked
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
	for _, s := range seeds {
		f.Add(false, s)
		f.Add(true, s)
	}
	e := startWSEnv(f, func(c *config.Config) {
		c.Room.ConnectRatePerIP = -1 // hundreds of connections a second from one address
		c.Room.MaxConnsPerIP = 100000
		c.Room.MaxUnauthedPerIP = 4096
	})
	bw, by := wsConnect(f, e.room.WSAddr())
	by.Login(1, "fz-bystander", testkit.Token(1, "fz-bystander"), 300)
	pingZero := proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, authed bool, in []byte) {
		w, err := dialWS(t, wsDialer(nil), e.room.WSAddr())
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		if authed {
			uid := fmt.Sprintf("fz-%d", n.Add(1))
			testkit.Wrap(t, w).Login(1, uid, testkit.Token(1, uid), 300)
		}
		_ = w.Conn.SetDeadline(time.Now().Add(fuzzExchange))
		if _, err := w.Conn.Write(in); err != nil {
			return // the room closed it already
		}
		_ = w.Conn.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, w.Conn); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the room did not close the connection within %s", fuzzExchange)
			}
		}
		// The bystander (f's, not t's: raw reads) still gets its PONG.
		_ = bw.Conn.SetReadDeadline(time.Now().Add(fuzzExchange))
		pong := make([]byte, proto.HeaderSize)
		if _, err := bw.Write(pingZero); err != nil {
			t.Fatalf("bystander: %v", err)
		}
		if _, err := io.ReadFull(bw, pong); err != nil || pong[5] != proto.OpPong {
			t.Fatalf("bystander: %x %v", pong, err)
		}
	})
}
