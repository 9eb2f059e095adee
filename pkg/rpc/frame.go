package rpc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

// Frame layout (all integers big-endian). Len counts the bytes after the Len
// field, so a frame is LenSize+Len bytes long.
const (
	offLen    = 0  // uint32: bytes after this field
	offKind   = 4  // uint8: kindRequest, kindReply, kindError, kindGoAway
	offFlags  = 5  // uint8: reserved, 0
	offMethod = 6  // uint16: method id (echoed in replies)
	offID     = 8  // uint64: call id, unique per connection (echoed in replies)
	offAux    = 16 // uint32: request: timeout in ms (0 none); error: code; else 0
	offBody   = 20

	lenSize    = 4
	headerSize = offBody
	minLen     = headerSize - lenSize

	// DefaultMaxFrame is the default largest frame, header included.
	DefaultMaxFrame = 4 << 20
)

// Frame kinds.
const (
	kindRequest uint8 = 1 // client -> server: call Method with Body
	kindReply   uint8 = 2 // server -> client: Body is the result
	kindError   uint8 = 3 // server -> client: Aux is the code, Body the message
	kindGoAway  uint8 = 4 // server -> client: draining, send no new calls here
)

// Frame decoding errors. Either one closes the connection it came from.
var (
	ErrFrameTooLarge = errors.New("rpc: frame too large")
	ErrBadFrame      = errors.New("rpc: malformed frame")
)

// header is a decoded frame header.
type header struct {
	kind   uint8
	method uint16
	id     uint64
	aux    uint32
}

// appendHeader appends a frame header whose Len is 0; finishFrame sets it
// once the body is appended.
func appendHeader(b []byte, h header) []byte {
	b = append(b, 0, 0, 0, 0, h.kind, 0)
	b = binary.BigEndian.AppendUint16(b, h.method)
	b = binary.BigEndian.AppendUint64(b, h.id)
	return binary.BigEndian.AppendUint32(b, h.aux)
}

// finishFrame sets the Len of the frame that starts at b[start:] and ends at
// the end of b, after checking it against max (the whole frame's size).
func finishFrame(b []byte, start, max int) error {
	n := len(b) - start
	if n > max {
		return ErrFrameTooLarge
	}
	binary.BigEndian.PutUint32(b[start+offLen:], uint32(n-lenSize))
	return nil
}

// parseHeader decodes the header at the start of a whole frame f.
func parseHeader(f []byte) header {
	return header{
		kind:   f[offKind],
		method: binary.BigEndian.Uint16(f[offMethod:]),
		id:     binary.BigEndian.Uint64(f[offID:]),
		aux:    binary.BigEndian.Uint32(f[offAux:]),
	}
}

// frameReader reads frames from a buffered stream. A frame that fits in the
// bufio buffer is decoded in place (no copy); a larger one is read into a
// reused buffer. Either way the body is valid until the next call to next.
type frameReader struct {
	r    *bufio.Reader
	max  int    // largest frame, header included
	skip int    // bytes of the previous frame still in r's buffer
	buf  []byte // for frames larger than r's buffer
}

func newFrameReader(r io.Reader, size, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, size), max: max}
}

// next returns the next frame's header and body. The length is checked
// against max before anything is buffered or allocated. Errors are io errors
// (io.EOF between frames), ErrFrameTooLarge or ErrBadFrame; after one, the
// stream is out of step and the connection must be closed.
func (fr *frameReader) next() (header, []byte, error) {
	if fr.skip > 0 {
		fr.r.Discard(fr.skip) // cannot fail: the bytes are buffered
		fr.skip = 0
	}
	p, err := fr.r.Peek(lenSize)
	if err != nil {
		if err == io.EOF && fr.r.Buffered() > 0 {
			err = io.ErrUnexpectedEOF
		}
		return header{}, nil, err
	}
	n := binary.BigEndian.Uint32(p)
	if n < minLen {
		return header{}, nil, ErrBadFrame
	}
	if uint64(n)+lenSize > uint64(fr.max) {
		return header{}, nil, ErrFrameTooLarge
	}
	total := int(n) + lenSize
	var f []byte
	if total <= fr.r.Size() {
		f, err = fr.r.Peek(total)
		fr.skip = len(f)
		if cap(fr.buf) > 1<<20 {
			fr.buf = nil // one big frame must not pin its memory for the connection's life
		}
	} else {
		if cap(fr.buf) < total {
			fr.buf = make([]byte, total)
		}
		f = fr.buf[:total]
		_, err = io.ReadFull(fr.r, f)
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return header{}, nil, err
	}
	h := parseHeader(f)
	if h.kind < kindRequest || h.kind > kindGoAway {
		return header{}, nil, ErrBadFrame
	}
	return h, f[offBody:], nil
}
