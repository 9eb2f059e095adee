package room

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

// FuzzClientInput sends arbitrary bytes to a live room, before or after a
// valid AUTH, and checks that the room never dies and keeps serving a
// bystander: whatever a client sends costs only its own connection.
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
	}
	for _, s := range seeds {
		f.Add(false, s)
		f.Add(true, s)
	}
	e := startEnv(f, envOpt{})
	byConn, _ := e.login(1, "bystander")
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, authed bool, data []byte) {
		c, err := net.DialTimeout("tcp", e.room.Addr(), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cl := &client{t: t, c: c, dec: proto.NewDecoder(c, 16<<20)}
		if authed {
			uid := fmt.Sprintf("fz-%d", n.Add(1))
			cl.auth(1, uid, tokenFor(1, uid), 0)
			cl.expect(proto.OpAuthOK)
		}
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		// Read whatever comes back for a moment; every frame must parse.
		for {
			_, err := cl.next(20 * time.Millisecond)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				break // closed by the server
			}
		}
		by := &client{t: t, c: byConn.c, dec: byConn.dec, seq: byConn.seq}
		by.expectQuiet()
		byConn.seq = by.seq
	})
}
