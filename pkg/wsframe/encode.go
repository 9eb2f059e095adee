package wsframe

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Server frames are never masked (RFC 6455 5.1) and never fragmented here.
// Every Append* function appends to dst and returns the extended slice; it
// allocates only when dst lacks capacity.

// FrameSize is the size of a server frame carrying n payload bytes.
func FrameSize(n int) int { return headerSize(n) + n }

func headerSize(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}

func appendHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op) // FIN
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	}
	dst = append(dst, b0, 127)
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

// AppendBinaryHeader appends the header of a binary frame of n payload
// bytes, for writing the payload separately (e.g. gnet Writev).
func AppendBinaryHeader(dst []byte, n int) []byte { return appendHeader(dst, ws.OpBinary, n) }

// AppendBinary appends a binary frame carrying payload (one protocol frame).
func AppendBinary(dst, payload []byte) []byte {
	dst = appendHeader(dst, ws.OpBinary, len(payload))
	return append(dst, payload...)
}

// AppendPong appends a pong carrying payload (a ping's payload: at most 125
// bytes; longer is cut to 125).
func AppendPong(dst, payload []byte) []byte {
	return appendControl(dst, ws.OpPong, payload)
}

// AppendPing appends a ping carrying payload (cut to 125 bytes).
func AppendPing(dst, payload []byte) []byte {
	return appendControl(dst, ws.OpPing, payload)
}

func appendControl(dst []byte, op ws.OpCode, payload []byte) []byte {
	payload = payload[:min(len(payload), ws.MaxControlFramePayloadSize)]
	dst = appendHeader(dst, op, len(payload))
	return append(dst, payload...)
}

// AppendClose appends a close frame with code and reason (reason cut to 123
// bytes on a rune boundary). Code 0 makes a close frame without a body.
func AppendClose(dst []byte, code uint16, reason string) []byte {
	if code == 0 {
		return appendHeader(dst, ws.OpClose, 0)
	}
	if len(reason) > ws.MaxControlFramePayloadSize-2 {
		n := ws.MaxControlFramePayloadSize - 2
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	dst = appendHeader(dst, ws.OpClose, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// AppendCloseEcho appends the answer to a client's close frame whose payload
// is p (as Decoder.Next delivered it): a close frame with the same code, or
// without a body when the client sent none (RFC 6455 5.5.1).
func AppendCloseEcho(dst, p []byte) []byte {
	code, _ := ParseClose(p)
	return AppendClose(dst, code, "")
}
