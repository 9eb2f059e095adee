package wsframe

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Close codes the room sends (RFC 6455 7.4.1; PROTOCOL.md "Transports").
const (
	CloseNormal          uint16 = uint16(ws.StatusNormalClosure)           // 1000: after KICK
	CloseGoingAway       uint16 = uint16(ws.StatusGoingAway)               // 1001: not mandated; server shutdown if ever wanted
	CloseProtocolError   uint16 = uint16(ws.StatusProtocolError)           // 1002: WebSocket protocol error
	CloseInvalidPayload  uint16 = uint16(ws.StatusInvalidFramePayloadData) // 1007: close reason not UTF-8
	ClosePolicyViolation uint16 = uint16(ws.StatusPolicyViolation)         // 1008: after ERROR for auth/policy, text message
	CloseMessageTooBig   uint16 = uint16(ws.StatusMessageTooBig)           // 1009: oversize message
)

// DefaultMaxMessage is the protocol's default maximum frame (Len 65,536 + 12)
// plus the 4-byte Len field: a binary message holds one whole frame.
const DefaultMaxMessage = 65536 + 12 + 4

// maxHeader is the largest client frame header: 2 + 8 (length) + 4 (mask).
const maxHeader = 14

// MsgKind says what Decoder.Next delivered.
type MsgKind uint8

const (
	// KindNone: bytes were consumed (a fragment) but there is nothing to
	// deliver; or nothing at all was consumed (need more bytes).
	KindNone MsgKind = iota
	// KindBinary: a complete binary message (reassembled if fragmented).
	KindBinary
	// KindPing: a ping; answer AppendPong(dst, msg).
	KindPing
	// KindPong: a pong; nothing to answer, counts as activity.
	KindPong
	// KindClose: a close frame (msg = its payload, validated); answer
	// AppendCloseEcho(dst, msg) and close. The Decoder is done.
	KindClose
)

func (k MsgKind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindBinary:
		return "binary"
	case KindPing:
		return "ping"
	case KindPong:
		return "pong"
	case KindClose:
		return "close"
	}
	return "kind?"
}

// Error is a frame error: the room sends the protocol ERROR frame with code
// Reply first when Reply is not empty, then a close frame with Code, then
// closes the connection.
type Error struct {
	Code  uint16 // WebSocket close code to send
	Reply string // PROTOCOL.md error code to send first ("" = none)
	msg   string
}

func (e *Error) Error() string { return "wsframe: " + e.msg }

// Frame errors. Every error Next returns is one of these (*Error).
var (
	ErrTextMessage      = &Error{Code: ClosePolicyViolation, Reply: "bad_frame", msg: "text message"}
	ErrMessageTooBig    = &Error{Code: CloseMessageTooBig, Reply: "frame_too_large", msg: "message larger than the maximum"}
	ErrUnmasked         = &Error{Code: CloseProtocolError, msg: ws.ErrProtocolMaskRequired.Error()}
	ErrReservedBits     = &Error{Code: CloseProtocolError, msg: ws.ErrProtocolNonZeroRsv.Error()}
	ErrReservedOpCode   = &Error{Code: CloseProtocolError, msg: ws.ErrProtocolOpCodeReserved.Error()}
	ErrControlTooLong   = &Error{Code: CloseProtocolError, msg: ws.ErrProtocolControlPayloadOverflow.Error()}
	ErrControlFragment  = &Error{Code: CloseProtocolError, msg: ws.ErrProtocolControlNotFinal.Error()}
	ErrContinuationWant = &Error{Code: CloseProtocolError, msg: ws.ErrProtocolContinuationExpected.Error()}
	ErrContinuationLost = &Error{Code: CloseProtocolError, msg: ws.ErrProtocolContinuationUnexpected.Error()}
	ErrBadLength        = &Error{Code: CloseProtocolError, msg: "64-bit payload length with the most significant bit set"}
	ErrBadClose         = &Error{Code: CloseProtocolError, msg: "malformed close frame"}
	ErrCloseReasonUTF8  = &Error{Code: CloseInvalidPayload, msg: ws.ErrProtocolInvalidUTF8.Error()}
	ErrAfterClose       = &Error{Code: CloseProtocolError, msg: "frame after close"}
)

// protocolError maps gobwas/ws's header checks to the errors above without
// allocating.
func protocolError(err error) *Error {
	switch err {
	case ws.ErrProtocolMaskRequired:
		return ErrUnmasked
	case ws.ErrProtocolNonZeroRsv:
		return ErrReservedBits
	case ws.ErrProtocolOpCodeReserved:
		return ErrReservedOpCode
	case ws.ErrProtocolControlPayloadOverflow:
		return ErrControlTooLong
	case ws.ErrProtocolControlNotFinal:
		return ErrControlFragment
	case ws.ErrProtocolContinuationExpected:
		return ErrContinuationWant
	case ws.ErrProtocolContinuationUnexpected:
		return ErrContinuationLost
	case ws.ErrProtocolInvalidUTF8:
		return ErrCloseReasonUTF8
	}
	return ErrBadClose // close status code checks
}

// CloseCode returns the close code to send after err: the *Error's Code, or
// 1011 (internal error) for any other error.
func CloseCode(err error) uint16 {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return uint16(ws.StatusInternalServerError)
}

// Decoder decodes the frames of one client connection. Its zero value is
// ready (with DefaultMaxMessage). It is not safe for concurrent use (it
// belongs to one connection on one event loop).
type Decoder struct {
	// MaxMessage bounds a binary message, all its fragments together (the
	// room sets it to its maximum frame Len + 4). Default DefaultMaxMessage.
	MaxMessage int

	buf        []byte // reassembly of a fragmented message; nil otherwise
	fragmented bool
	closed     bool
}

func (d *Decoder) max() int {
	if d.MaxMessage > 0 {
		return d.MaxMessage
	}
	return DefaultMaxMessage
}

// MaxBuffered is the most bytes Next may need to see at once: one whole
// frame of the maximum size with the largest header.
func (d *Decoder) MaxBuffered() int { return d.max() + maxHeader }

// Fragmented reports whether a fragmented message is being reassembled.
func (d *Decoder) Fragmented() bool { return d.fragmented }

// Reset drops any partial message (and its buffer): a fresh Decoder.
func (d *Decoder) Reset() { *d = Decoder{MaxMessage: d.MaxMessage} }

// Next decodes the next client frame from in, the bytes received so far.
//
//   - consumed == 0, err == nil: the frame is not complete; call again when
//     more bytes arrived (in must start with the same bytes).
//   - consumed > 0: discard that many bytes, act on kind (KindNone means a
//     fragment was taken in: go on), and call again with the rest.
//   - err != nil: an *Error; send what it says and close.
//
// Errors are reported as soon as the frame header shows them (a text
// message, an oversize length, a missing mask), before its payload arrives.
// The payload is unmasked in place in in (see the package doc on aliasing).
func (d *Decoder) Next(in []byte) (consumed int, msg []byte, kind MsgKind, err error) {
	if d.closed {
		return 0, nil, KindNone, ErrAfterClose
	}
	if len(in) < 2 {
		return 0, nil, KindNone, nil
	}
	b0, b1 := in[0], in[1]
	h := ws.Header{
		Fin:    b0&0x80 != 0,
		Rsv:    (b0 >> 4) & 0x07,
		OpCode: ws.OpCode(b0 & 0x0f),
		Masked: b1&0x80 != 0,
		Length: int64(b1 & 0x7f), // 126/127 stand for "more than 125" here
	}
	state := ws.StateServerSide
	if d.fragmented {
		state |= ws.StateFragmented
	}
	if e := ws.CheckHeader(h, state); e != nil {
		return 0, nil, KindNone, protocolError(e)
	}
	if h.OpCode == ws.OpText {
		return 0, nil, KindNone, ErrTextMessage
	}

	hlen := 2
	switch b1 & 0x7f {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	hlen += 4 // mask (checked above)
	if len(in) < hlen {
		return 0, nil, KindNone, nil
	}
	var length uint64
	switch b1 & 0x7f {
	case 126:
		length = uint64(binary.BigEndian.Uint16(in[2:]))
	case 127:
		length = binary.BigEndian.Uint64(in[2:])
		if length>>63 != 0 {
			return 0, nil, KindNone, ErrBadLength
		}
	default:
		length = uint64(b1 & 0x7f)
	}
	if h.OpCode.IsData() && uint64(len(d.buf))+length > uint64(d.max()) {
		return 0, nil, KindNone, ErrMessageTooBig
	}
	// Bounded now: control frames <= 125, data frames <= MaxMessage.
	end := hlen + int(length)
	if len(in) < end {
		return 0, nil, KindNone, nil
	}
	var mask [4]byte
	copy(mask[:], in[hlen-4:hlen])
	payload := in[hlen:end:end]
	ws.Cipher(payload, mask, 0)

	switch h.OpCode {
	case ws.OpPing:
		return end, payload, KindPing, nil
	case ws.OpPong:
		return end, payload, KindPong, nil
	case ws.OpClose:
		if e := checkClose(payload); e != nil {
			return 0, nil, KindNone, e
		}
		d.closed = true
		d.buf, d.fragmented = nil, false
		return end, payload, KindClose, nil
	case ws.OpBinary:
		if h.Fin {
			return end, payload, KindBinary, nil
		}
		d.fragmented = true
		d.grow(len(payload))
		d.buf = append(d.buf, payload...)
		return end, nil, KindNone, nil
	default: // ws.OpContinuation (CheckHeader made sure a message is open)
		d.grow(len(payload))
		d.buf = append(d.buf, payload...)
		if !h.Fin {
			return end, nil, KindNone, nil
		}
		msg = d.buf
		if msg == nil {
			msg = payload[:0]
		}
		d.buf, d.fragmented = nil, false
		return end, msg, KindBinary, nil
	}
}

// grow makes room for n more bytes without going past the maximum (the
// caller checked that len(buf)+n <= max), growing only as bytes arrive.
func (d *Decoder) grow(n int) {
	need := len(d.buf) + n
	if need <= cap(d.buf) {
		return
	}
	c := max(2*cap(d.buf), need, 512)
	c = min(c, d.max())
	nb := make([]byte, len(d.buf), c)
	copy(nb, d.buf)
	d.buf = nb
}

func checkClose(p []byte) *Error {
	switch len(p) {
	case 0:
		return nil
	case 1:
		return ErrBadClose
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !utf8.Valid(p[2:]) {
		return ErrCloseReasonUTF8
	}
	if e := ws.CheckCloseFrameData(code, ""); e != nil {
		return protocolError(e)
	}
	if code >= 5000 { // outside every range of RFC 6455 7.4.2
		return ErrBadClose
	}
	return nil
}

// ParseClose splits a close payload into its code (0 when absent) and reason.
// reason aliases p.
func ParseClose(p []byte) (code uint16, reason []byte) {
	if len(p) < 2 {
		return 0, nil
	}
	return binary.BigEndian.Uint16(p), p[2:]
}
