package loadgen

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/gobwas/ws"

	"github.com/lcpush/lcpush/pkg/proto"
)

// The WebSocket transport of the lcpush clients (-transport ws): the same
// epoll loops and the same protocol frames, each inside one binary
// WebSocket message (PROTOCOL.md "Transports"). A dial writes the upgrade
// request and, right behind it, the masked AUTH message in one write (the
// room treats the bytes after the request as frames); the loop then reads
// the 101 answer and the server's unmasked messages from the same inbound
// buffer. Client messages (AUTH, PING, ACK, pongs) are masked with a fresh
// random key each.

const (
	transportTCP = "tcp"
	transportWS  = "ws"
	wsPath       = "/v1/ws"
	wsProtocol   = "lcpush.v1"
	// maxWSAnswer bounds the upgrade answer the client buffers.
	maxWSAnswer = 8 << 10
)

var (
	crlfcrlf  = []byte("\r\n\r\n")
	http101   = []byte("HTTP/1.1 101")
	wsKeyOnce = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's sample key: the room does not ask for a fresh one
)

// appendWSUpgrade appends the upgrade request to host (the room's
// WebSocket address) offering lcpush.v1.
func appendWSUpgrade(b []byte, host string) []byte {
	b = append(b, "GET "+wsPath+" HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	b = append(b, wsKeyOnce...)
	b = append(b, "\r\nSec-WebSocket-Protocol: "+wsProtocol+"\r\n\r\n"...)
	return b
}

// appendWSMasked appends one client message (FIN set, masked with a
// random key) holding payload.
func appendWSMasked(b []byte, op ws.OpCode, payload []byte) []byte {
	b = append(b, 0x80|byte(op))
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	ws.Cipher(b[start:], mask, 0)
	return b
}

// send writes one protocol frame on c, inside a masked binary message on a
// WebSocket connection.
func (lp *loop) send(c *conn, frame []byte) bool {
	if !c.ws {
		return lp.write(c, frame)
	}
	lp.wsOut = appendWSMasked(lp.wsOut[:0], ws.OpBinary, frame)
	return lp.write(c, lp.wsOut)
}

// wsFrames is frames for a WebSocket connection: the upgrade answer first,
// then server messages (unmasked), each binary one exactly one protocol
// frame. It returns the bytes used and true when the connection must close.
func (lp *loop) wsFrames(c *conn, data []byte, now time.Time) (int, bool) {
	l := lp.l
	used := 0
	if !c.upgraded {
		i := bytes.Index(data, crlfcrlf)
		if i < 0 {
			if len(data) > maxWSAnswer {
				l.lastErr.Store("websocket: upgrade answer too long")
				l.authErr.Add(1)
				return 0, true
			}
			return 0, false
		}
		if !bytes.HasPrefix(data, http101) {
			line, _, _ := bytes.Cut(data, []byte("\r\n"))
			l.lastErr.Store("websocket upgrade refused: " + string(line))
			l.authErr.Add(1)
			return i + 4, true
		}
		c.upgraded = true
		used = i + 4
	}
	lp.acks = lp.acks[:0]
	bad := false
msgs:
	for !bad {
		rest := data[used:]
		if len(rest) < 2 {
			break
		}
		b0, b1 := rest[0], rest[1]
		if b1&0x80 != 0 || b0&0x70 != 0 {
			l.lastErr.Store("websocket: masked server frame or reserved bits")
			l.errs.Add(1)
			return used, true
		}
		n, h := int(b1&0x7F), 2
		switch n {
		case 126:
			if len(rest) < 4 {
				break msgs
			}
			n, h = int(binary.BigEndian.Uint16(rest[2:])), 4
		case 127:
			if len(rest) < 10 {
				break msgs
			}
			v := binary.BigEndian.Uint64(rest[2:])
			if v > uint64(l.cfg.MaxFrame)+64 {
				n = l.cfg.MaxFrame + 65
			} else {
				n = int(v)
			}
			h = 10
		}
		if n > l.cfg.MaxFrame+64 {
			l.lastErr.Store("websocket: server message too large")
			l.errs.Add(1)
			return used, true
		}
		if len(rest) < h+n {
			break
		}
		p := rest[h : h+n]
		used += h + n
		switch op := ws.OpCode(b0 & 0x0F); {
		case op == ws.OpBinary && b0&0x80 != 0:
			f, m, err := proto.Parse(p, l.cfg.MaxFrame)
			if err != nil || m != len(p) {
				l.lastErr.Store("websocket: binary message is not one frame")
				l.errs.Add(1)
				return used, true
			}
			bad = l.frame(c, f, now, lp)
		case op == ws.OpPing:
			lp.wsOut = appendWSMasked(lp.wsOut[:0], ws.OpPong, p)
			lp.write(c, lp.wsOut)
		case op == ws.OpPong:
		case op == ws.OpClose:
			return used, true
		default:
			l.lastErr.Store("websocket: unexpected opcode or fragment")
			l.errs.Add(1)
			return used, true
		}
	}
	if len(lp.acks) > 0 {
		lp.out = proto.AppendAck(lp.out[:0], 0, lp.acks)
		if lp.send(c, lp.out) {
			l.acked.Add(int64(len(lp.acks)))
		}
	}
	return used, bad
}
