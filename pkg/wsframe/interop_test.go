package wsframe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// serveOne plays the room's loop for one connection: bytes as they arrive
// go to Handshake.Parse, then to Decoder.Next; binary messages are echoed.
func serveOne(t *testing.T, c net.Conn, hs *Handshake, d *Decoder) error {
	defer c.Close()
	var pending []byte
	buf := make([]byte, 7) // small reads: requests and frames arrive in pieces
	upgraded := false
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		pending = append(pending, buf[:n]...)
		if !upgraded {
			used, resp, _, err := hs.Parse(pending)
			if used == 0 && err == nil {
				continue
			}
			if _, werr := c.Write(resp); werr != nil {
				return werr
			}
			if err != nil {
				return nil // rejected: answer written, close
			}
			upgraded = true
			pending = pending[used:]
		}
		var out []byte
		for {
			used, msg, kind, err := d.Next(pending)
			if err != nil {
				var e *Error
				errors.As(err, &e)
				c.Write(AppendClose(nil, e.Code, ""))
				return nil
			}
			if used == 0 {
				break
			}
			switch kind {
			case KindBinary:
				out = AppendBinary(out, msg)
			case KindPing:
				out = AppendPong(out, msg)
			case KindClose:
				c.Write(AppendCloseEcho(out, msg))
				return nil
			}
			pending = pending[used:]
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return err
			}
		}
	}
}

func listen(t *testing.T, hs *Handshake) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveOne(t, c, hs, &Decoder{MaxMessage: 100000})
		}
	}()
	return ln.Addr().String()
}

func TestInteropGobwasDialer(t *testing.T) {
	hs := &Handshake{Origins: []string{"https://app.example.com"}}
	addr := listen(t, hs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	d := ws.Dialer{
		Protocols: []string{"chat", "lcpush.v1"},
		Header:    ws.HandshakeHeaderHTTP(http.Header{"Origin": {"https://app.example.com"}}),
	}
	conn, br, h, err := d.Dial(ctx, "ws://"+addr+"/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if br != nil {
		ws.PutReader(br)
	}
	if h.Protocol != "lcpush.v1" {
		t.Fatalf(
			"protocol %q",
			h.Protocol)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))

	// Messages of several sizes, each echoed.
	for _, n := range []int{0, 12, 300, 70000} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		if err := wsutil.WriteClientBinary(conn, p); err != nil {
			t.Fatal(err)
		}
		got, err := wsutil.ReadServerBinary(conn)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf(
				"n=%d: %v (%d bytes)",
				n, err, len(got))
		}
	}

	// A fragmented message with a ping in between.
	w := wsutil.NewWriterSize(conn, ws.StateClientSide, ws.OpBinary, 16)
	w.Write([]byte("0123456789abcdef0123"))
	if err := w.FlushFragment(); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewPingFrame([]byte("hb")))); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("tail"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := ws.ReadFrame(conn)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "hb" {
		t.Fatalf(
			"pong: %+v %v",
			f.Header, err)
	}
	got, err := wsutil.ReadServerBinary(conn)
	if err != nil || string(got) != "0123456789abcdef0123tail" {
		t.Fatalf(
			"fragmented: %q %v",
			got, err)
	}

	// Close: echoed with the same code.
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))); err != nil {
		t.Fatal(err)
	}
	f, err = ws.ReadFrame(conn)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatal(f.Header, err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusNormalClosure {
		t.Fatalf(
			"close code %d",
			code)
	}
}

func TestInteropRejections(t *testing.T) {
	hs := &Handshake{Origins: []string{"https://app.example.com"}}
	addr := listen(t, hs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		url    string
		origin string
		status int
	}{
		{"ws://" + addr + "/other", "", 404},
		{"ws://" + addr + "/v1/ws", "https://evil.example.com", 403},
	} {
		d := ws.Dialer{}
		if tc.origin != "" {
			d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {tc.origin}})
		}
		_, _, _, err := d.Dial(ctx, tc.url)
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != tc.status {
			t.Fatalf(
				"%s: %v, want status %d",
				tc.url, err, tc.status)
		}
	}
}

func TestInteropProtocolErrorClose(t *testing.T) {
	addr := listen(t, &Handshake{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dial(ctx, "ws://"+addr+"/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// An unmasked frame from a client: close 1002.
	if err := ws.WriteFrame(conn, ws.NewBinaryFrame([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	f, err := ws.ReadFrame(conn)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatal(f.Header, err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusProtocolError {
		t.Fatalf(
			"close code %d",
			code)
	}
}
