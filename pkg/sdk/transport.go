package sdk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/lcpush/lcpush/pkg/proto"
)

// Transport is how the client reaches a gateway (PROTOCOL.md, "Transports").
type Transport string

// Transports. The frames are the same bytes on each; TLS and WSS are
// usually terminated in front of the room.
const (
	TransportTCP Transport = "tcp" // frames back to back on a TCP stream (the default)
	TransportTLS Transport = "tls" // the same stream inside TLS
	TransportWS  Transport = "ws"  // WebSocket: one frame per binary message
	TransportWSS Transport = "wss" // WebSocket over TLS
)

// WebSocket constants of the protocol.
const (
	// WSPath is the room's upgrade path, used when a WebSocket address is
	// given as host:port or as a URL without a path.
	WSPath = "/v1/ws"
	// WSSubprotocol is the subprotocol the client offers on every upgrade.
	WSSubprotocol = "lcpush.v1"
)

// ErrPinMismatch is returned (wrapped) when Config.Pins is set and no
// certificate of the server's verified chain has a pinned key.
var ErrPinMismatch = errors.New("sdk: tls: server key matches no pin")

// CloseError is a WebSocket close frame received from the server. When the
// server sent an ERROR frame just before, the disconnect reason wraps both
// (errors.As finds the *proto.Error and the *CloseError); after a KICK the
// reason is the *KickError.
type CloseError struct {
	Code   int // RFC 6455 status: 1000 after KICK, 1008 after an auth/policy ERROR, 1009 oversize, 1002 protocol error
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("sdk: websocket closed by server: %d %s", e.Code, e.Reason)
}

func (t Transport) valid() bool {
	switch t {
	case TransportTCP, TransportTLS, TransportWS, TransportWSS:
		return true
	}
	return false
}

func (t Transport) secure() bool    { return t == TransportTLS || t == TransportWSS }
func (t Transport) websocket() bool { return t == TransportWS || t == TransportWSS }

// endpoint is one parsed gateway address.
type endpoint struct {
	transport Transport
	hostport  string   // what is dialed; also what the dispatcher's failed list names
	host      string   // the default TLS server name
	url       *url.URL // ws and wss: the upgrade URL
}

// parseAddr reads a gateway address: ws://host:port/path and
// wss://host:port/path are WebSocket URLs; tcp://host:port and
// tls://host:port name their transport; a bare host:port uses
// Config.Transport (for ws and wss: the URL scheme://host:port/v1/ws).
func parseAddr(addr string, def Transport) (endpoint, error) {
	t, rest := def, addr
	if scheme, after, ok := strings.Cut(addr, "://"); ok {
		t, rest = Transport(strings.ToLower(scheme)), after
		if !t.valid() {
			return endpoint{}, fmt.Errorf("sdk: address %q: unknown scheme %q", addr, scheme)
		}
	}
	if !t.websocket() {
		host, _, err := net.SplitHostPort(rest)
		if err != nil || strings.ContainsAny(rest, "/?#") {
			return endpoint{}, fmt.Errorf("sdk: address %q is not host:port", addr)
		}
		return endpoint{transport: t, hostport: rest, host: host}, nil
	}
	if !strings.Contains(addr, "://") {
		rest = string(t) + "://" + addr
	} else {
		rest = addr
	}
	u, err := url.Parse(rest)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("sdk: address %q is not a WebSocket URL", addr)
	}
	u.Scheme = string(t)
	if u.Path == "" || u.Path == "/" {
		u.Path = WSPath
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if t == TransportWSS {
			port = "443"
		}
	}
	return endpoint{transport: t, hostport: net.JoinHostPort(host, port), host: host, url: u}, nil
}

// failedHostPort maps an address to the host:port the dispatcher's failed
// list names, whatever the transport.
func failedHostPort(addr string, def Transport) string {
	if ep, err := parseAddr(addr, def); err == nil {
		return ep.hostport
	}
	return addr
}

// parsePins decodes Config.Pins: "sha256/" followed by the standard base64
// of the SHA-256 of a SubjectPublicKeyInfo (the prefix may be left out).
func parsePins(pins []string) ([][sha256.Size]byte, error) {
	out := make([][sha256.Size]byte, 0, len(pins))
	for _, p := range pins {
		b64 := strings.TrimPrefix(strings.TrimSpace(p), "sha256/")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("pin %q is not sha256/<base64 of 32 bytes>", p)
		}
		out = append(out, [sha256.Size]byte(raw))
	}
	return out, nil
}

// PinOf returns the pin of cert's public key, in the form Config.Pins takes:
// "sha256/" + base64(SHA-256(SubjectPublicKeyInfo)).
func PinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

// newTLSConfig builds the client's TLS configuration, shared by every
// connection (with its own ServerName per address, see tlsFor).
func newTLSConfig(cfg *Config, pins [][sha256.Size]byte) *tls.Config {
	tc := &tls.Config{
		RootCAs:            cfg.RootCAs,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(16), // cheap resumption on reconnect
	}
	if len(pins) > 0 {
		// Called after the standard verification: VerifiedChains holds the
		// chains built up to RootCAs (or the system roots).
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				for _, cert := range chain {
					if slices.Contains(pins, sha256.Sum256(cert.RawSubjectPublicKeyInfo)) {
						return nil
					}
				}
			}
			got := "no certificate"
			if len(cs.PeerCertificates) > 0 {
				got = PinOf(cs.PeerCertificates[0])
			}
			return fmt.Errorf("%w (server %q presented %s)", ErrPinMismatch, cs.ServerName, got)
		}
	}
	return tc
}

func (c *Client) tlsFor(ep endpoint) *tls.Config {
	tc := c.tlsConf.Clone()
	tc.ServerName = c.cfg.ServerName
	if tc.ServerName == "" {
		tc.ServerName = ep.host
	}
	return tc
}

// dial opens a connection to addr on its transport — TCP, then TLS, then
// the WebSocket upgrade, as the address asks — all within deadline (and
// ctx). It returns the outermost net.Conn, on which the session sets its
// deadlines, and the frame seam over it.
func (c *Client) dial(ctx context.Context, addr string, deadline time.Time) (net.Conn, frameConn, error) {
	ep, err := parseAddr(addr, c.cfg.Transport)
	if err != nil {
		return nil, nil, err
	}
	if len(c.cfg.Pins) > 0 && !ep.transport.secure() {
		return nil, nil, fmt.Errorf("sdk: %s is not a TLS address and Pins are set: refused", addr)
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", ep.hostport)
	if err != nil {
		return nil, nil, fmt.Errorf("sdk dial %s: %w", addr, err)
	}
	if ep.transport.secure() {
		hctx, cancel := context.WithDeadline(ctx, deadline)
		tc := tls.Client(conn, c.tlsFor(ep))
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = conn.Close()
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, fmt.Errorf("sdk tls %s: %w", addr, err)
		}
		conn = tc
	}
	if !ep.transport.websocket() {
		return conn, newStreamConn(conn), nil
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	dialer := ws.Dialer{Protocols: []string{WSSubprotocol}}
	br, hs, err := dialer.Upgrade(conn, ep.url)
	stopped := stop()
	if err == nil && !stopped {
		err = ctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("sdk websocket %s: %w", addr, err)
	}
	if hs.Protocol != WSSubprotocol {
		// The room selects lcpush.v1; a terminator that drops the header
		// is tolerated, the frames tell soon enough.
		c.log.Debug("sdk: websocket subprotocol not selected", "addr", addr, "protocol", hs.Protocol)
	}
	return conn, newWSConn(conn, br, c.cfg.DialTimeout), nil
}

// frameConn is the seam between the session logic and a transport: raw TCP
// and TLS carry frames back to back on a stream, WebSocket one frame per
// binary message. The session serializes writes and sets deadlines on the
// underlying net.Conn; only its reader calls next.
type frameConn interface {
	// next returns the next frame; its Body is valid until the next call.
	next() (proto.Frame, error)
	// writeFrame writes one whole frame.
	writeFrame(frame []byte) error
	// close ends the connection (a WebSocket sends a close frame first,
	// best effort).
	close() error
}

// streamConn is the frame seam of raw TCP and TLS.
type streamConn struct {
	conn net.Conn
	dec  *proto.Decoder
}

func newStreamConn(conn net.Conn) *streamConn {
	return &streamConn{conn: conn, dec: proto.NewDecoder(conn, maxFrameIn)}
}

func (c *streamConn) next() (proto.Frame, error) { return c.dec.Next() }

func (c *streamConn) writeFrame(frame []byte) error {
	_, err := c.conn.Write(frame)
	return err
}

func (c *streamConn) close() error { return c.conn.Close() }

// errBadMessage is a WebSocket message that is not exactly one frame.
var errBadMessage = errors.New("sdk: malformed websocket message")

// wsCloseWait bounds the close frame written when the client hangs up.
const wsCloseWait = 500 * time.Millisecond

// wsConn is the frame seam of WebSocket (ws and wss), client side: frames
// it writes are masked; pings are answered by the reader, under the write
// lock, so a pong never splits a message.
type wsConn struct {
	conn         net.Conn
	rd           wsutil.Reader
	buf          []byte
	writeTimeout time.Duration

	wmu       chan struct{} // the write lock: a channel, so close can wait for it a bounded time
	wbuf      bytes.Buffer
	closeSent bool // a close frame went out (ours or the echo of the server's)
}

func (c *wsConn) lock()   { c.wmu <- struct{}{} }
func (c *wsConn) unlock() { <-c.wmu }

// lockWithin takes the write lock unless that takes longer than d.
func (c *wsConn) lockWithin(d time.Duration) bool {
	select {
	case c.wmu <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c.wmu <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func newWSConn(conn net.Conn, br *bufio.Reader, writeTimeout time.Duration) *wsConn {
	if br == nil {
		br = bufio.NewReaderSize(conn, 4096)
	}
	c := &wsConn{conn: conn, writeTimeout: writeTimeout, wmu: make(chan struct{}, 1)}
	c.rd = wsutil.Reader{
		Source:         br,
		State:          ws.StateClientSide,
		MaxMessageSize: maxFrameIn + proto.LenSize,
		OnIntermediate: c.control, // control frames between fragments
	}
	return c
}

// control answers a control frame: a ping with a pong of the same payload,
// a close with the echo of its code (then the connection is over).
func (c *wsConn) control(h ws.Header, r io.Reader) error {
	c.lock()
	defer c.unlock()
	if c.closeSent {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	err := wsutil.ControlHandler{Src: r, Dst: c.conn, State: ws.StateClientSide, DisableSrcCiphering: true}.Handle(h)
	if h.OpCode == ws.OpClose {
		c.closeSent = true
	}
	var ce wsutil.ClosedError
	if errors.As(err, &ce) {
		return &CloseError{Code: int(ce.Code), Reason: ce.Reason}
	}
	return err
}

func (c *wsConn) next() (proto.Frame, error) {
	if cap(c.buf) > 64<<10 { // do not pin the buffer of a rare big push
		c.buf = nil
	}
	for {
		hdr, err := c.rd.NextFrame()
		if err != nil {
			return proto.Frame{}, wsReadErr(err)
		}
		if hdr.OpCode.IsControl() {
			if err := c.control(hdr, &c.rd); err != nil {
				return proto.Frame{}, err
			}
			continue
		}
		if hdr.OpCode != ws.OpBinary {
			return proto.Frame{}, fmt.Errorf("%w: opcode %d, want binary", errBadMessage, hdr.OpCode)
		}
		buf := slices.Grow(c.buf[:0], int(hdr.Length))
		for {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, 512)
			}
			n, err := c.rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				c.buf = buf
				return proto.Frame{}, wsReadErr(err)
			}
		}
		c.buf = buf
		f, n, err := proto.Parse(buf, maxFrameIn)
		if err != nil {
			return proto.Frame{}, err
		}
		if n == 0 || n != len(buf) {
			return proto.Frame{}, fmt.Errorf("%w: %d bytes are not exactly one frame", errBadMessage, len(buf))
		}
		return f, nil
	}
}

func wsReadErr(err error) error {
	if errors.Is(err, wsutil.ErrMessageTooLarge) || errors.Is(err, wsutil.ErrFrameTooLarge) {
		return fmt.Errorf("%w: websocket message over %d bytes", proto.ErrTooLarge, maxFrameIn+proto.LenSize)
	}
	return err
}

func (c *wsConn) writeFrame(frame []byte) error {
	c.lock()
	defer c.unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: ws.NewMask(), Length: int64(len(frame))}
	c.wbuf.Reset()
	if err := ws.WriteHeader(&c.wbuf, h); err != nil {
		return err
	}
	off := c.wbuf.Len()
	c.wbuf.Write(frame)
	out := c.wbuf.Bytes()
	ws.Cipher(out[off:], h.Mask, 0)
	_, err := c.conn.Write(out) // one write: header and payload together
	if c.wbuf.Cap() > 64<<10 {
		c.wbuf = bytes.Buffer{}
	}
	return err
}

func (c *wsConn) close() error {
	// Say goodbye (1000) unless a close frame already went out; wait only
	// briefly for a write under way (it may be stuck on a dead path).
	if c.lockWithin(wsCloseWait) {
		if !c.closeSent {
			c.closeSent = true
			f := ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
			if b, err := ws.CompileFrame(f); err == nil {
				_ = c.conn.SetWriteDeadline(time.Now().Add(min(c.writeTimeout, wsCloseWait)))
				_, _ = c.conn.Write(b)
			}
		}
		c.unlock()
	}
	return c.conn.Close()
}
