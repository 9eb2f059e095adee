package room

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// helloTransport is a transport for tests of the seam: a preamble line
// "HELLO <client ip>\n" (like a PROXY header, it names the client's
// address) answered "OK\n"; frames in as on raw TCP; each frame out
// prefixed with the byte 0xAA; and a line "BYE <reason> <code>\n" before the
// room closes.
type helloTransport struct{ rawTCP }

const helloMark = 0xAA

func (helloTransport) handshaking() bool { return true }

func (helloTransport) handshake(c gnet.Conn, out []byte) (handshakeStep, error) {
	buf, _ := c.Peek(-1)
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > 64 {
			return handshakeStep{}, errors.New("preamble too long")
		}
		return handshakeStep{}, nil
	}
	line := string(buf[:i])
	_, _ = c.Discard(i + 1)
	ip, err := netip.ParseAddr(strings.TrimPrefix(line, "HELLO "))
	if !strings.HasPrefix(line, "HELLO ") || err != nil {
		return handshakeStep{reply: append(out, "NO\n"...)}, errors.New("bad preamble")
	}
	return handshakeStep{done: true, addr: ip, reply: append(out, "OK\n"...)}, nil
}

func (helloTransport) appendWire(dst, frames []byte) []byte {
	for len(frames) >= proto.LenSize {
		n := int(binary.BigEndian.Uint32(frames)) + proto.LenSize
		dst = append(dst, helloMark)
		dst = append(dst, frames[:n]...)
		frames = frames[n:]
	}
	return dst
}

func (helloTransport) appendClose(dst []byte, reason, code string) []byte {
	return append(dst, "BYE "+reason+" "+code+"\n"...)
}

// helloProxy is helloTransport's preamble in front of raw TCP, as a PROXY
// header is: once the line is read it hands the connection over to rawTCP.
type helloProxy struct{ helloTransport }

func (p helloProxy) handshake(c gnet.Conn, out []byte) (handshakeStep, error) {
	step, err := p.helloTransport.handshake(c, out)
	if step.done {
		step.handoff = rawTCP{}
	}
	return step, err
}

// helloClient reads the hello transport's wire form.
type helloClient struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func dialHello(t *testing.T, e *env) *helloClient {
	c := testkit.Dial(t, e.room.Addr()).NetConn()
	return &helloClient{t: t, c: c, rd: bufio.NewReader(c)}
}

func (h *helloClient) line() string {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(testkit.Timeout))
	s, err := h.rd.ReadString('\n')
	if err != nil {
		h.t.Fatalf("reading a line: %v (got %q)", err, s)
	}
	return s
}

func (h *helloClient) frame() proto.Frame {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(testkit.Timeout))
	mark, err := h.rd.ReadByte()
	if err != nil || mark != helloMark {
		h.t.Fatalf("frame mark %#x, %v", mark, err)
	}
	buf := make([]byte, proto.LenSize, 256)
	if _, err := io.ReadFull(h.rd, buf); err != nil {
		h.t.Fatalf("frame Len: %v", err)
	}
	n, err := proto.FrameLen(buf, 1<<20)
	if err != nil {
		h.t.Fatalf("frame Len: %v", err)
	}
	buf = append(buf, make([]byte, n-proto.LenSize)...)
	if _, err := io.ReadFull(h.rd, buf[proto.LenSize:]); err != nil {
		h.t.Fatalf("frame: %v", err)
	}
	f, _, err := proto.Parse(buf, 1<<20)
	if err != nil {
		h.t.Fatalf("frame: %v", err)
	}
	return f
}

func (h *helloClient) expectEOF() {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(testkit.Timeout))
	if b, err := h.rd.ReadByte(); err == nil {
		h.t.Fatalf("byte %#x after the close bytes", b)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		h.t.Fatal("still open")
	}
}

// TestTransportSeam runs a session through a transport with a handshake, an
// address rewrite, a wire form of its own and close bytes: the session state
// machine must reach the wire only through the transport.
func TestTransportSeam(t *testing.T) {
	e := startEnv(t, envOpt{noStart: true, cfg: func(c *config.Config) {
		c.Room.Deny = []string{"10.6.6.6"}
		c.Room.AuthDeadline = 500 * time.Millisecond
	}})
	var proxied atomic.Bool // helloProxy instead of helloTransport
	e.room.pickTransport = func(net.Addr) transport {
		if proxied.Load() {
			return helloProxy{}
		}
		return helloTransport{}
	}
	if err := e.room.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("10.1.2.3")

	// The handshake, and an AUTH in the same write right behind it.
	h := dialHello(t, e)
	auth := proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1},
		mustJSON(t, proto.Auth{UID: "hello", Token: testkit.Token(1, "hello"), HB: 30}))
	if _, err := h.c.Write(append([]byte("HELLO 10.1.2.3\n"), auth...)); err != nil {
		t.Fatal(err)
	}
	if l := h.line(); l != "OK\n" {
		t.Fatalf("handshake reply %q", l)
	}
	if f := h.frame(); f.Op != proto.OpAuthOK || f.Seq != 1 {
		t.Fatalf("got op %#x seq %d, want AUTH_OK 1", f.Op, f.Seq)
	}
	// The address the transport named is the client's, for the register
	// and the per-IP counts.
	if s, ok := e.reg.session("hello"); !ok || s.IP != client.String() {
		t.Fatalf("registered session %+v, want IP %s", s, client)
	}
	if n, _ := e.room.ips.count(client); n != 1 {
		t.Fatalf("%d connections counted for %s, want 1", n, client)
	}
	if n, _ := e.room.ips.count(netip.MustParseAddr("127.0.0.1")); n != 0 {
		t.Fatalf("%d connections still counted for the peer address", n)
	}

	// Replies (the shared PONG too) and pushes go out in the wire form.
	if _, err := h.c.Write(proto.AppendFrame(nil, proto.Header{Op: proto.OpPing}, nil)); err != nil {
		t.Fatal(err)
	}
	if f := h.frame(); f.Op != proto.OpPong {
		t.Fatalf("got op %#x, want PONG", f.Op)
	}
	for id := uint64(1); id <= 2; id++ {
		if n, err := e.room.Push(t.Context(), push.Message{ID: id, App: 1, Payload: []byte("p")}, []push.Target{{UID: "hello"}}); n != 1 || err != nil {
			t.Fatalf("Push = %d, %v", n, err)
		}
		if f := h.frame(); f.Op != proto.OpPush {
			t.Fatalf("got op %#x, want PUSH", f.Op)
		}
	}

	// A malformed frame: the ERROR, then the transport's close bytes.
	if _, err := h.c.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if f := h.frame(); f.Op != proto.OpError {
		t.Fatalf("got op %#x, want ERROR", f.Op)
	}
	if l := h.line(); l != "BYE protocol_error frame_too_large\n" {
		t.Fatalf("close bytes %q", l)
	}
	h.expectEOF()

	// A refused preamble, and an address the deny list refuses: closed
	// without a frame.
	bad := dialHello(t, e)
	_, _ = bad.c.Write([]byte("HI\n"))
	if l := bad.line(); l != "NO\n" {
		t.Fatalf("refusal %q", l)
	}
	bad.expectEOF()
	denied := dialHello(t, e)
	_, _ = denied.c.Write([]byte("HELLO 10.6.6.6\n"))
	if l := denied.line(); l != "OK\n" {
		t.Fatalf("handshake reply %q", l)
	}
	denied.expectEOF()

	// A handshake never finished ends at the auth deadline, with no ERROR.
	slow := dialHello(t, e)
	_, _ = slow.c.Write([]byte("HELLO 10.1"))
	slow.expectEOF()
	// A preamble in front of raw TCP: once it is read, the connection is
	// raw TCP (inline, no marks), with the address the preamble named.
	proxied.Store(true)
	p := testkit.Dial(t, e.room.Addr())
	p.Write(append([]byte("HELLO 10.1.2.4\n"), proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 7, App: 1},
		mustJSON(t, proto.Auth{UID: "proxied", Token: testkit.Token(1, "proxied"), HB: 30}))...))
	ok := make([]byte, 3)
	_ = p.NetConn().SetReadDeadline(time.Now().Add(testkit.Timeout))
	if _, err := io.ReadFull(p.NetConn(), ok); err != nil || string(ok) != "OK\n" {
		t.Fatalf("handshake reply %q, %v", ok, err)
	}
	if f := p.ExpectNext(proto.OpAuthOK); f.Seq != 7 {
		t.Fatalf("AUTH_OK seq %d, want 7", f.Seq)
	}
	if s, ok := e.reg.session("proxied"); !ok || s.IP != "10.1.2.4" {
		t.Fatalf("registered session %+v, want IP 10.1.2.4", s)
	}
	p.ExpectQuiet(0)
	p.Write([]byte{0, 0, 0, 1})
	p.ExpectError(proto.ErrCodeBadFrame)
	p.ExpectClosed(testkit.Timeout)
	_ = p.Close()

	testkit.WaitFor(t, "the refused connections to be released", testkit.Timeout, func() bool {
		n, _ := e.room.ips.count(netip.MustParseAddr("127.0.0.1"))
		m, _ := e.room.ips.count(client)
		return n == 0 && m == 0
	})
}
