package loadgen

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/wsframe"
)

// TestLoadWebSocket runs one -transport ws client against the room's own
// WebSocket code (pkg/wsframe): the upgrade request with the AUTH message
// behind it, masked client messages, the 101 answer and server messages in
// pieces, a server ping answered with a pong, a QoS 1 push ACKed.
func TestLoadWebSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	// The connection stays open until the test has read the stats: its
	// close would count as a drop.
	release := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { <-release; c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var in []byte
		buf := make([]byte, 4096)
		read := func() bool {
			n, err := c.Read(buf)
			in = append(in, buf[:n]...)
			return err == nil
		}
		hs := wsframe.Handshake{}
		for {
			if !read() {
				t.Error("read before the upgrade")
				return
			}
			n, resp, res, err := hs.Parse(in)
			if n == 0 && err == nil {
				continue
			}
			if err != nil || res.Protocol != wsProtocol {
				t.Errorf("upgrade: %v %+v", err, res)
				return
			}
			in = in[n:]
			// The answer, the AUTH_OK, a PUSH and a ping, written in pieces.
			out := append([]byte{}, resp...)
			out = wsframe.AppendBinary(out, proto.AppendJSON(nil, proto.Header{Op: proto.OpAuthOK}, proto.AuthOK{HB: 30, Room: "r"}))
			out = wsframe.AppendBinary(out, proto.AppendPush(nil, 1, true, 42, payload(64, time.Now(), 3)))
			out = wsframe.AppendPing(out, []byte("hi"))
			for _, cut := range [][2]int{{0, 5}, {5, len(resp) + 3}, {len(resp) + 3, len(out) - 4}, {len(out) - 4, len(out)}} {
				if _, err := c.Write(out[cut[0]:cut[1]]); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond) // separate reads on the client
			}
			break
		}
		var d wsframe.Decoder
		var kinds []string
		for len(kinds) < 3 {
			n, msg, kind, err := d.Next(in)
			if err != nil {
				t.Errorf("client frame: %v", err)
				return
			}
			if n == 0 {
				if !read() {
					t.Errorf("read: got %v", kinds)
					return
				}
				continue
			}
			switch kind {
			case wsframe.KindBinary:
				f, m, err := proto.Parse(msg, proto.DefaultMaxLen)
				if err != nil || m != len(msg) {
					t.Errorf("message is not one frame: %v", err)
					return
				}
				kinds = append(kinds, opName(f.Op))
			case wsframe.KindPong:
				if !bytes.Equal(msg, []byte("hi")) {
					t.Errorf("pong %q", msg)
				}
				kinds = append(kinds, "pong")
			}
			in = in[n:]
		}
		if want := []string{"auth", "ack", "pong"}; !equalStrings(kinds, want) {
			t.Errorf("client sent %v, want %v", kinds, want)
		}
	}()
	l, err := StartLoad(context.Background(), LoadConfig{Rooms: []string{ln.Addr().String()}, N: 1, App: 1,
		Secret: demoSecret, Transport: transportWS})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testkit.WaitFor(t, "condition", 10*time.Second, func() bool { s := l.Stats(); return s.Authed == 1 && s.Pushes == 1 && s.Acked == 1 })
	s := l.Stats()
	close(release)
	<-done
	if s.Round(3).Count != 1 || s.Errors != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

func opName(op uint8) string {
	switch op {
	case proto.OpAuth:
		return "auth"
	case proto.OpAck:
		return "ack"
	}
	return "other"
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAppendWSMasked(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte{'x'}, n)
		b := appendWSMasked(nil, ws.OpBinary, p)
		r := bytes.NewReader(b)
		h, err := ws.ReadHeader(r)
		if err != nil || !h.Fin || !h.Masked || h.OpCode != ws.OpBinary || h.Length != int64(n) {
			t.Fatalf("n=%d: %+v %v", n, h, err)
		}
		body := b[len(b)-n:]
		ws.Cipher(body, h.Mask, 0)
		if !bytes.Equal(body, p) {
			t.Fatalf("n=%d: payload differs", n)
		}
	}
}

func TestCentrifugoData(t *testing.T) {
	p := payload(64, time.Unix(0, 1234567890123), 7)
	line := []byte(`{"push":{"channel":"bench","pub":{"data":` + string(centrifugoData(nil, p)) + `}}}`)
	if ts, r := jsonUint(line, `"t":`), jsonUint(line, `"r":`); ts != 1234567890123 || r != 7 {
		t.Errorf("t=%d r=%d from %s", ts, r, line)
	}
}
