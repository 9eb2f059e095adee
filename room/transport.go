package room

import (
	"github.com/lcpush/lcpush/pkg/push"
	"net"
	"net/netip"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proto"
)

// The transport seam. The session state machine (dispatch.go and the ops'
// files) takes decoded frames and gives whole frames to the write path
// (write.go); how those frames travel on a connection's byte stream is its
// transport's business. Raw TCP (frames back to back, PROTOCOL.md "Frame")
// is one transport; WebSocket and a PROXY-protocol header in front of
// either are others (PROTOCOL.md "Transports").
//
// A transport is chosen per connection in OnOpen (transportFor: by the
// listener the connection came in on, and whether its peer is a trusted
// proxy). One whose connections start with a
// preamble (a WebSocket upgrade, a PROXY header) reports it through
// handshaking; the room then hands the connection's input to handshake on
// every OnTraffic, within the auth deadline, until it is done, and only then
// reads frames. A PROXY-protocol transport wraps the listener's other one:
// its handshake parses the header (and names the client's address), then
// hands the connection over to the inner transport (handshakeStep.handoff),
// whose own handshake, if any, follows. Every method runs on the
// connection's loop, inside gnet's callbacks or the loop's tasks; none may
// block, and none may keep a slice of gnet's buffers beyond the call that
// got it.
//
// Raw TCP costs the hot paths nothing: a connection whose transport is
// rawTCP (connState.custom unset; a connection from a peer that is not a
// trusted proxy gets it from sniffRaw at its first byte, proxy.go) is read and written without a call
// through the interface (drainFrames reads its frames inline, and frames
// are written as they are), so shared and pre-built frames go out without
// a copy. Every other
// transport is called through it.
type transport interface {
	// handshaking reports whether a new connection has a preamble to go
	// through before frames flow (asked once, in OnOpen, and after a
	// handoff).
	handshaking() bool
	// handshake consumes what it can of the preamble from c's input. It
	// may put bytes to answer (e.g. 101 Switching Protocols, or a refusal)
	// in step.reply, built on out, which the room writes under the
	// connection's output budget; it may name the client's real address
	// (step.addr, PROXY protocol), which then replaces the peer's for
	// admission, lists, the register and logs; and it may hand the
	// connection over to another transport (step.handoff). step.done
	// means the preamble is over: what is left in the input belongs to the
	// next transport's handshake or to frames. An error refuses the
	// connection: the room writes step.reply, if any, and closes it. It
	// bounds what it leaves buffered (a preamble has a maximum size), as
	// next does for frames.
	handshake(c gnet.Conn, out []byte) (step handshakeStep, err error)

	// next returns the next whole frame in c's input — its bytes, Len
	// field included, as PROTOCOL.md "Frame" lays them out — having
	// checked the size it announces against maxLen before buffering it, so
	// that a huge announced size never makes gnet buffer it. It returns
	// n == 0 and no error while the input holds no whole frame; a size
	// error is proto.ErrTooLarge or proto.ErrBadLen. The session parses
	// the frame; frame aliases gnet's buffer until done(c, n).
	next(c gnet.Conn, maxLen int) (frame []byte, n int, err error)
	// done drops the frame that next returned with size n from c's input.
	done(c gnet.Conn, n int)

	// appendWire appends to dst the wire form of frames: one or more
	// whole protocol frames back to back, Len fields included.
	appendWire(dst, frames []byte) []byte
	// appendClose appends to dst what the transport sends before the room
	// closes the connection (a WebSocket close frame): reason is the close
	// reason (metrics.go), code the ERROR code just sent, "" when the
	// close follows no ERROR (KICK, timeouts, a slow consumer). Not asked
	// while the handshake is not done.
	appendClose(dst []byte, reason, code string) []byte
}

// handshakeStep is what one call to transport.handshake did.
type handshakeStep struct {
	done    bool       // the preamble is over
	addr    netip.Addr // when valid: the client's real address
	reply   []byte     // bytes to send back, built on the out buffer given
	handoff transport  // when set with done: the connection's transport from now on
}

// transportFor picks the transport of a connection that just opened, by the
// listener address it came in on (OnOpen): raw TCP or WebSocket; proxied
// (the peer is a trusted proxy, proxy.go) puts a PROXY header in front of
// it. A test may install another picker. Raw TCP from an untrusted peer
// gets sniffRaw, which refuses a PROXY header and hands the connection to
// rawTCP at its first byte.
func (r *Room) transportFor(c gnet.Conn, proxied bool) (transport, uint8) {
	if r.pickTransport != nil {
		if t := r.pickTransport(c.LocalAddr()); t != nil {
			return t, trTCP
		}
	}
	ws := r.lns.isWS(c)
	var inner transport = rawTCP{}
	kind := trTCP
	if ws {
		inner, kind = &wsConn{r: r}, trWS
	}
	if proxied {
		// Behind a trusted proxy: a TLS terminator in front of raw TCP or
		// WebSocket (docs/tls.md), so the client's transport is tls or wss.
		return &proxyTransport{inner: inner}, kind + trTLS
	}
	if ws {
		return inner, kind // its handshake sniffs for a PROXY header too
	}
	return sniffRaw{}, kind
}

// Transport kinds, as the client sees them (push.Transports): for the
// connections-by-transport gauge and the addresses a drain redirects to.
// The proxied kinds are the direct ones + trTLS.
const (
	trTCP uint8 = iota
	trWS
	trTLS // raw TCP behind a trusted proxy (a TLS terminator)
	trWSS // WebSocket behind a trusted proxy
)

// trNames are the kinds' names in push.Transports.
var trNames = [...]string{trTCP: push.TransportTCP, trWS: push.TransportWS, trTLS: push.TransportTLS, trWSS: push.TransportWSS}

// attacher is a transport that keeps per-connection state needing the
// connection's room state (WebSocket: to answer pings, to count activity).
type attacher interface{ attach(s *connState) }

// closeError is a transport error that ends the connection without a
// protocol ERROR frame (a WebSocket protocol error, the client's close):
// the room closes with reason, after the transport's close bytes.
type closeError struct {
	reason string
	msg    string
}

func (e *closeError) Error() string { return e.msg }

// pickTransportFunc chooses a transport by listener address (nil: raw TCP).
type pickTransportFunc func(local net.Addr) transport

// isRaw reports whether t is raw TCP, which the hot paths run inline.
func isRaw(t transport) bool {
	_, ok := t.(rawTCP)
	return ok
}

// rawTCP is the raw TCP transport: length-prefixed frames back to back on
// the stream, read in place from gnet's inbound buffer, written as they
// are. It has no state: it is zero-size, so holding it in the connection's
// transport field allocates nothing.
type rawTCP struct{}

func (rawTCP) handshaking() bool { return false }

func (rawTCP) handshake(gnet.Conn, []byte) (handshakeStep, error) {
	return handshakeStep{done: true}, nil
}

func (rawTCP) next(c gnet.Conn, maxLen int) ([]byte, int, error) { return rawNext(c, maxLen) }

func (rawTCP) done(c gnet.Conn, n int) { _, _ = c.Discard(n) }

func (rawTCP) appendWire(dst, frames []byte) []byte { return append(dst, frames...) }

func (rawTCP) appendClose(dst []byte, _, _ string) []byte { return dst }

// rawNext is rawTCP.next: it peeks the 4-byte Len first and checks it,
// then peeks exactly the frame, so gnet never buffers more than maxLen+4
// bytes for one frame. drainFrames runs the same steps inline for raw TCP
// connections: keep the two alike.
func rawNext(c gnet.Conn, maxLen int) ([]byte, int, error) {
	hdr, err := c.Peek(proto.LenSize)
	if err != nil {
		return nil, 0, nil // fewer than 4 bytes so far
	}
	n, err := proto.FrameLen(hdr, maxLen)
	if err != nil {
		return nil, 0, err
	}
	buf, err := c.Peek(n)
	if err != nil {
		return nil, 0, nil // the rest of the frame has not arrived
	}
	return buf, n, nil
}
