// Package proto is the client wire protocol, version 1 (docs/protocol.md):
// frame layout, op codes, error and kick codes, and pure byte functions that
// encode into a caller's buffer and decode without copying. Decoders check
// the announced length against a maximum before anything is buffered, so an
// untrusted peer cannot make us allocate.
package proto

import (
	"encoding/binary"
	"errors"
)

// Frame layout. Len counts the bytes after the Len field.
const (
	offLen   = 0
	offVer   = 4
	offOp    = 5
	offFlags = 6
	offSeq   = 8
	offApp   = 12
	offBody  = 16

	// LenSize is the size of the Len prefix.
	LenSize = 4
	// HeaderSize is the size of a frame without body, Len included.
	HeaderSize = offBody
	// MinLen is the smallest valid Len (a frame with an empty body).
	MinLen = HeaderSize - LenSize
	// DefaultMaxLen is the default largest Len a server accepts.
	DefaultMaxLen = 65536 + MinLen
	// Version is the protocol version this package speaks.
	Version = 1
)

// Op codes.
const (
	OpAuth       uint8 = 0x01
	OpAuthOK     uint8 = 0x02
	OpPing       uint8 = 0x03
	OpPong       uint8 = 0x04
	OpPush       uint8 = 0x05
	OpAck        uint8 = 0x06
	OpUpstream   uint8 = 0x07
	OpUpstreamOK uint8 = 0x08
	OpBind       uint8 = 0x09
	OpBindOK     uint8 = 0x0A
	OpUnbind     uint8 = 0x0B
	OpUnbindOK   uint8 = 0x0C
	OpKick       uint8 = 0x0D
	OpRedirect   uint8 = 0x0E
	OpError      uint8 = 0x0F
)

// Flags.
const (
	FlagAckRequired uint16 = 1 << 0 // PUSH: QoS 1, the client must ACK
	FlagReplyWanted uint16 = 1 << 1 // UPSTREAM: answer with UPSTREAM_OK
)

// Error codes carried in ERROR frames.
const (
	ErrCodeAuthRequired  = "auth_required"
	ErrCodeBadToken      = "bad_token"
	ErrCodeFrameTooLarge = "frame_too_large"
	ErrCodeBadFrame      = "bad_frame"
	ErrCodeUnknownOp     = "unknown_op"
	ErrCodeNotBound      = "not_bound"
	ErrCodeRateLimited   = "rate_limited"
	ErrCodeOverloaded    = "overloaded"
	ErrCodeInternal      = "internal"
)

// Decoding errors. Each maps to the ERROR code the server answers with.
var (
	ErrTooLarge   = errors.New("proto: frame too large")
	ErrBadLen     = errors.New("proto: bad frame length")
	ErrBadVersion = errors.New("proto: unknown version")
	ErrBadBody    = errors.New("proto: malformed body")
)

// Code returns the protocol error code for a decoding error.
func Code(err error) string {
	if errors.Is(err, ErrTooLarge) {
		return ErrCodeFrameTooLarge
	}
	return ErrCodeBadFrame
}

// Header is the fixed part of a frame after Len.
type Header struct {
	Ver   uint8
	Op    uint8
	Flags uint16
	Seq   uint32
	App   uint32
}

// Frame is a decoded frame. Body aliases the decoder's input buffer.
type Frame struct {
	Header
	Body []byte
}

// FrameLen checks the Len prefix at the start of buf. It returns the total
// frame size (Len + 4), or 0 when fewer than 4 bytes are available. It never
// trusts Len beyond the check against maxLen.
func FrameLen(buf []byte, maxLen int) (int, error) {
	if len(buf) < LenSize {
		return 0, nil
	}
	l := binary.BigEndian.Uint32(buf[offLen:])
	if l < MinLen {
		return 0, ErrBadLen
	}
	if uint64(l) > uint64(maxLen) {
		return 0, ErrTooLarge
	}
	return int(l) + LenSize, nil
}

// Parse decodes one frame from the start of buf. It returns the number of
// bytes consumed, or 0 and a nil error when buf holds no whole frame yet.
func Parse(buf []byte, maxLen int) (Frame, int, error) {
	n, err := FrameLen(buf, maxLen)
	if err != nil || n == 0 || len(buf) < n {
		return Frame{}, 0, err
	}
	f := Frame{
		Header: Header{
			Ver:   buf[offVer],
			Op:    buf[offOp],
			Flags: binary.BigEndian.Uint16(buf[offFlags:]),
			Seq:   binary.BigEndian.Uint32(buf[offSeq:]),
			App:   binary.BigEndian.Uint32(buf[offApp:]),
		},
		Body: buf[offBody:n:n],
	}
	if f.Ver != Version {
		return f, n, ErrBadVersion
	}
	return f, n, nil
}

// AppendHeader appends a frame header announcing a body of bodyLen bytes.
func AppendHeader(dst []byte, h Header, bodyLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(MinLen+bodyLen))
	ver := h.Ver
	if ver == 0 {
		ver = Version
	}
	dst = append(dst, ver, h.Op)
	dst = binary.BigEndian.AppendUint16(dst, h.Flags)
	dst = binary.BigEndian.AppendUint32(dst, h.Seq)
	return binary.BigEndian.AppendUint32(dst, h.App)
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, h Header, body []byte) []byte {
	dst = AppendHeader(dst, h, len(body))
	return append(dst, body...)
}

// AppendPush appends a PUSH frame for message id with payload.
func AppendPush(dst []byte, app uint32, qos1 bool, id uint64, payload []byte) []byte {
	var flags uint16
	if qos1 {
		flags = FlagAckRequired
	}
	dst = AppendHeader(dst, Header{Op: OpPush, Flags: flags, App: app}, 8+len(payload))
	dst = binary.BigEndian.AppendUint64(dst, id)
	return append(dst, payload...)
}

// ParsePush splits a PUSH body into message id and payload (aliasing body).
func ParsePush(body []byte) (uint64, []byte, error) {
	if len(body) < 8 {
		return 0, nil, ErrBadBody
	}
	return binary.BigEndian.Uint64(body), body[8:], nil
}

// MaxAckIDs is the most ids one ACK frame can carry.
const MaxAckIDs = 0xFFFF

// AppendAck appends an ACK frame for ids (at most MaxAckIDs).
func AppendAck(dst []byte, seq uint32, ids []uint64) []byte {
	if len(ids) > MaxAckIDs {
		ids = ids[:MaxAckIDs]
	}
	dst = AppendHeader(dst, Header{Op: OpAck, Seq: seq}, 2+8*len(ids))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(ids)))
	for _, id := range ids {
		dst = binary.BigEndian.AppendUint64(dst, id)
	}
	return dst
}

// ParseAck appends the ids of an ACK body to dst. The body must hold exactly
// Count ids.
func ParseAck(dst []uint64, body []byte) ([]uint64, error) {
	if len(body) < 2 {
		return dst, ErrBadBody
	}
	n := int(binary.BigEndian.Uint16(body))
	if len(body) != 2+8*n {
		return dst, ErrBadBody
	}
	for i := 0; i < n; i++ {
		dst = append(dst, binary.BigEndian.Uint64(body[2+8*i:]))
	}
	return dst, nil
}

// AppendUpstream appends an UPSTREAM frame.
func AppendUpstream(dst []byte, seq, app uint32, replyWanted bool, typ uint16, payload []byte) []byte {
	var flags uint16
	if replyWanted {
		flags = FlagReplyWanted
	}
	dst = AppendHeader(dst, Header{Op: OpUpstream, Flags: flags, Seq: seq, App: app}, 2+len(payload))
	dst = binary.BigEndian.AppendUint16(dst, typ)
	return append(dst, payload...)
}

// ParseUpstream splits an UPSTREAM body into type and payload (aliasing body).
func ParseUpstream(body []byte) (uint16, []byte, error) {
	if len(body) < 2 {
		return 0, nil, ErrBadBody
	}
	return binary.BigEndian.Uint16(body), body[2:], nil
}

// PongFrame is the one PONG every connection shares; never modify it.
var PongFrame = AppendHeader(nil, Header{Op: OpPong}, 0)
