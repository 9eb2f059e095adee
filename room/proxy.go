package room

import (
	"errors"
	"net/netip"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proxyhdr"
)

// The PROXY protocol (PROTOCOL.md "Transports", docs/tls.md): TLS is
// terminated in front of the room, and the terminator names each client's
// address with a PROXY v1 or v2 header, which the room takes only from the
// peers in room.proxy.trusted (on both listeners).
//
//   - A trusted peer's connection starts with proxyTransport: the header is
//     parsed (the auth deadline bounds it, as everything before AUTH_OK),
//     its source address becomes the connection's (readmit: allow/deny and
//     the per-IP caps apply to it, never to the proxy's, and it is what the
//     register and the logs see), and the connection goes on with the
//     listener's transport (raw TCP, or the WebSocket upgrade). No header
//     (the first bytes are not a PROXY signature), a malformed one, or one
//     too long: the connection is closed. A v2 LOCAL header (a
//     terminator's health check), or one with no usable client address, is
//     accepted and served no session: the connection is closed after it.
//   - Any other peer's connection is refused (closed, nothing sent) if its
//     first bytes are a PROXY signature: on raw TCP that is sniffRaw, which
//     hands the connection to rawTCP at its first byte; the WebSocket
//     transport sniffs before the upgrade request.

var (
	// errNoSession: a PROXY header without a client address (v2 LOCAL).
	errNoSession = errors.New("PROXY header without a client address (LOCAL): no session")
	// errProxyUntrusted: a PROXY header from a peer not in room.proxy.trusted.
	errProxyUntrusted = errors.New("PROXY header from a peer that is not a trusted proxy")
)

// trustedPeer reports whether ip, a new connection's peer, is a trusted
// proxy, whose connections must start with a PROXY header.
func (r *Room) trustedPeer(ip netip.Addr) bool {
	t := r.deps.Config.Load().Room.Proxy.TrustedProxies()
	return !t.Empty() && ip.IsValid() && t.Contains(ip)
}

// proxyTransport is the PROXY header in front of the listener's transport
// (inner), on a connection from a trusted proxy.
type proxyTransport struct {
	inner transport
}

func (*proxyTransport) handshaking() bool { return true }

func (p *proxyTransport) handshake(c gnet.Conn, _ []byte) (handshakeStep, error) {
	buf, _ := c.Peek(-1)
	n, h, err := proxyhdr.Parse(buf)
	if err != nil {
		return handshakeStep{}, err // ErrNotProxy: a trusted proxy sent no header
	}
	if n == 0 {
		return handshakeStep{}, nil // need more; Parse bounds what it waits for
	}
	_, _ = c.Discard(n)
	if h.Local || !h.Src.Addr().IsValid() {
		return handshakeStep{}, errNoSession
	}
	return handshakeStep{done: true, addr: h.Src.Addr(), handoff: p.inner}, nil
}

// The rest is never called before the handoff; it delegates all the same.
func (p *proxyTransport) next(c gnet.Conn, maxLen int) ([]byte, int, error) {
	return p.inner.next(c, maxLen)
}
func (p *proxyTransport) done(c gnet.Conn, n int) { p.inner.done(c, n) }
func (p *proxyTransport) appendWire(dst, frames []byte) []byte {
	return p.inner.appendWire(dst, frames)
}
func (p *proxyTransport) appendClose(dst []byte, reason, code string) []byte {
	return p.inner.appendClose(dst, reason, code)
}

// sniffRaw is raw TCP from a peer that is not a trusted proxy: a first
// byte that cannot start a PROXY signature (any raw frame's Len: its first
// byte is far below 'P' and '\r' for every allowed Len) hands the
// connection to rawTCP, which the hot paths then run inline; a PROXY
// signature refuses it. Zero-size, like rawTCP: it allocates nothing.
type sniffRaw struct{ rawTCP }

func (sniffRaw) handshaking() bool { return true }

func (sniffRaw) handshake(c gnet.Conn, _ []byte) (handshakeStep, error) {
	buf, _ := c.Peek(-1)
	switch proxyhdr.Sniff(buf) {
	case proxyhdr.SniffNeedMore:
		return handshakeStep{}, nil
	case proxyhdr.SniffNone:
		return handshakeStep{done: true, handoff: rawTCP{}}, nil
	}
	return handshakeStep{}, errProxyUntrusted
}
