package room

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
)

// wsClient is a WebSocket client (gobwas/ws) seen as a net.Conn of
// protocol bytes, so testkit.Conn speaks the protocol over it: each Write
// is sent as one binary message (testkit writes one frame per Write), and
// Read returns the payloads of the binary messages the server sends.
// Control frames are handled on the way: pongs are counted, pings
// answered, a close frame is recorded (closeCode) and ends the stream
// (io.EOF).
type wsClient struct {
	net.Conn
	rd       io.Reader
	protocol string // the subprotocol the server selected

	rmu  sync.Mutex // Read
	rest []byte

	wmu       sync.Mutex // writes of frames
	pongs     atomic.Int32
	notOne    atomic.Int32 // binary messages that were not exactly one frame
	closeCode atomic.Int32 // the server's close code (-1: none yet; 0: no body)
	gotClose  atomic.Bool
}

// wsDialer is the test clients' dialer: subprotocol lcpush.v1 offered.
func wsDialer(h http.Header) ws.Dialer {
	d := ws.Dialer{Timeout: testkit.Timeout, Protocols: []string{"lcpush.v1"}}
	if h != nil {
		d.Header = ws.HandshakeHeaderHTTP(h)
	}
	return d
}

// dialWS upgrades a connection to addr's /v1/ws with d.
func dialWS(t testing.TB, d ws.Dialer, addr string) (*wsClient, error) {
	t.Helper()
	c, br, hs, err := d.Dial(context.Background(), "ws://"+addr+"/v1/ws")
	if err != nil {
		return nil, err
	}
	w := &wsClient{Conn: c, rd: c, protocol: hs.Protocol}
	if br != nil {
		w.rd = br
	}
	w.closeCode.Store(-1)
	t.Cleanup(func() { c.Close() })
	return w, nil
}

// wsLogin dials the room's WebSocket address and authenticates uid.
func wsConnect(t testing.TB, addr string) (*wsClient, *testkit.Conn) {
	t.Helper()
	w, err := dialWS(t, wsDialer(nil), addr)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", addr, err)
	}
	return w, testkit.Wrap(t, w)
}

func (w *wsClient) Read(p []byte) (int, error) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	for len(w.rest) == 0 {
		if w.gotClose.Load() {
			return 0, io.EOF
		}
		f, err := ws.ReadFrame(w.rd)
		if err != nil {
			return 0, err
		}
		switch f.Header.OpCode {
		case ws.OpBinary:
			if !f.Header.Fin || len(f.Payload) < 4 || int(binary.BigEndian.Uint32(f.Payload))+4 != len(f.Payload) {
				w.notOne.Add(1)
			}
			w.rest = f.Payload
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(f.Payload)
			w.closeCode.Store(int32(code))
			w.gotClose.Store(true)
			return 0, io.EOF
		case ws.OpPong:
			w.pongs.Add(1)
		case ws.OpPing:
			w.wmu.Lock()
			_ = wsutil.WriteClientMessage(w.Conn, ws.OpPong, f.Payload)
			w.wmu.Unlock()
		default:
			w.notOne.Add(1)
		}
	}
	n := copy(p, w.rest)
	w.rest = w.rest[n:]
	return n, nil
}

// Write sends p as one binary message.
func (w *wsClient) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := wsutil.WriteClientBinary(w.Conn, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeFrame sends one hand-made WebSocket frame (masked as a client must,
// unless unmasked).
func (w *wsClient) writeFrame(f ws.Frame, unmasked bool) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if !unmasked {
		f = ws.MaskFrameInPlace(f)
	}
	_ = ws.WriteFrame(w.Conn, f)
}

// expectClose reads until the server's close frame and the end of the
// connection, and checks the close code.
func (w *wsClient) expectClose(t testing.TB, code int) {
	t.Helper()
	_ = w.Conn.SetReadDeadline(time.Now().Add(testkit.Timeout))
	buf := make([]byte, 4096)
	for {
		if _, err := w.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no close within %s", testkit.Timeout)
			}
			break
		}
	}
	if !w.gotClose.Load() {
		t.Fatalf("connection ended without a close frame")
	}
	if got := int(w.closeCode.Load()); got != code {
		t.Fatalf("close code %d, want %d", got, code)
	}
	// Then the TCP connection ends.
	one := make([]byte, 1)
	for {
		_, err := w.Conn.Read(one)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("TCP connection still open after the close frame")
		}
		return
	}
}

// startWSEnv starts a room with a WebSocket listener too.
func startWSEnv(t testing.TB, cfg func(*config.Config)) *env {
	t.Helper()
	return startEnv(t, envOpt{cfg: cfg, room: func(c *Config) { c.WSAddr = "127.0.0.1:0" }})
}

// httpConn is a plain TCP connection to addr for hand-written requests.
type httpConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *httpConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testkit.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &httpConn{Conn: c, br: bufio.NewReader(c)}
}

// status reads an HTTP answer's status code.
func (c *httpConn) status(t testing.TB) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testkit.Timeout))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading the HTTP answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// expectEOF checks the server closes the connection (without sending more
// than junk it may have had queued) within d.
func (c *httpConn) expectEOF(t testing.TB, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s", d)
	}
}
