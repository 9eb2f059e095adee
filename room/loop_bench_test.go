package room

import (
	"io"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// memConn is a gnet.Conn in memory for benchmarks of the loop's own work
// (no sockets, no scheduling): input is read from in, output is counted.
// Methods it does not override panic (nil embedded Conn).
type memConn struct {
	gnet.Conn
	in  []byte
	off int
	out int
}

func (c *memConn) Peek(n int) ([]byte, error) {
	if n < 0 {
		return c.in[c.off:], nil
	}
	if len(c.in)-c.off < n {
		return nil, io.ErrShortBuffer
	}
	return c.in[c.off : c.off+n], nil
}

func (c *memConn) Discard(n int) (int, error) {
	if n < 0 || n > len(c.in)-c.off {
		n = len(c.in) - c.off
	}
	c.off += n
	return n, nil
}

func (c *memConn) InboundBuffered() int  { return len(c.in) - c.off }
func (c *memConn) OutboundBuffered() int { return 0 }
func (c *memConn) Write(b []byte) (int, error) {
	c.out += len(b)
	return len(b), nil
}

func (c *memConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	c.out += n
	return n, nil
}

func benchRoom(b *testing.B) *Room {
	r, err := New(Config{Addr: "127.0.0.1:0", Logger: testLogger()}, Deps{
		Config:   config.NewHolder(roomTestConfig(b, nil)),
		Register: newFakeRegister(), Saver: newFakeSaver(), Coordinator: &fakeCoord{},
	})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkFrameLoop measures the loop's frame path without a socket: 64
// pipelined PINGs decoded from the inbound buffer, dispatched and answered
// (PONG) per op — the transport's decode, the dispatch and the write path.
func BenchmarkFrameLoop(b *testing.B) {
	r := benchRoom(b)
	l := &loopState{}
	var in []byte
	for range 64 {
		in = proto.AppendFrame(in, proto.Header{Op: proto.OpPing}, nil)
	}
	c := &memConn{in: in}
	s := benchConn(c, l)
	s.state = stAuthed
	b.ReportAllocs()
	for b.Loop() {
		c.off = 0
		s.ping = bucket{}
		if r.drainFrames(s) != gnet.None || s.state != stAuthed {
			b.Fatal("connection closed")
		}
	}
	if c.out == 0 {
		b.Fatal("no PONG written")
	}
}

// BenchmarkFlushDeliver measures one loop flush of a push to 1,000
// connections without sockets: the frame built once, then each connection's
// write through the write path.
func BenchmarkFlushDeliver(b *testing.B) {
	r := benchRoom(b)
	l := &loopState{}
	apps := []uint32{1}
	batch := &pushBatch{msg: push.Message{ID: 1, App: 1, QoS: push.QoS1, Payload: make([]byte, 64)}}
	for range 1000 {
		s := benchConn(&memConn{}, l)
		s.state = stAuthed
		s.apps.Store(&apps)
		batch.conns = append(batch.conns, s)
	}
	q := []*pushBatch{batch}
	b.ReportAllocs()
	for b.Loop() {
		r.flushBatches(l, q)
	}
}

// benchConn is a raw TCP connection's state on l for loop benchmarks.
func benchConn(c gnet.Conn, l *loopState) *connState {
	return &connState{c: c, loop: l, tr: rawTCP{}}
}
