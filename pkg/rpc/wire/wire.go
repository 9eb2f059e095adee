// Package wire owns the small binary codec that RPC messages are written in:
// append-style encoders (AppendUvarint, AppendString, ...) that grow a
// caller's buffer, and a Reader that decodes with a bounds check on every
// read. Services write their message codecs with it, so that a message
// encodes itself without reflection and decoding untrusted bytes can neither
// panic nor allocate more than the input could justify.
//
// Conventions: fixed-size integers are big-endian; strings and byte slices are
// a uvarint length followed by the bytes; a slice of N elements is a uvarint
// count followed by the elements (read it with Reader.Count, which checks the
// count against the bytes left before the caller allocates).
package wire

import (
	"encoding/binary"
	"errors"
)

// ErrMalformed is the error a Reader reports for input that is short, has a
// bad varint, or announces a length larger than what is left.
var ErrMalformed = errors.New("wire: malformed message")

// AppendUvarint appends v as an unsigned varint.
func AppendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// AppendVarint appends v as a zig-zag signed varint.
func AppendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// AppendUint8 appends one byte.
func AppendUint8(b []byte, v uint8) []byte { return append(b, v) }

// AppendUint16 appends v big-endian.
func AppendUint16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

// AppendUint32 appends v big-endian.
func AppendUint32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// AppendUint64 appends v big-endian.
func AppendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// AppendBool appends 1 for true, 0 for false.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// AppendString appends len(s) as a uvarint, then s.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends len(p) as a uvarint, then p.
func AppendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// Reader decodes a message from a byte slice. The first failed read sets a
// sticky error (ErrMalformed); every later read returns a zero value, so a
// codec can read all its fields and check Err once at the end.
//
// The zero Reader is empty; use NewReader or Reset. A Reader is a small
// value meant to live on the caller's stack.
type Reader struct {
	b   []byte
	off int
	err error
}

// NewReader returns a Reader over b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Reset makes r read b from the start and clears its error.
func (r *Reader) Reset(b []byte) { *r = Reader{b: b} }

// Err returns ErrMalformed if any read failed, else nil.
func (r *Reader) Err() error { return r.err }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) - r.off }

// Done returns the sticky error, or ErrMalformed when unread bytes remain.
// Codecs that want forward compatibility (new trailing fields) use Err
// instead.
func (r *Reader) Done() error {
	if r.err == nil && r.off != len(r.b) {
		r.err = ErrMalformed
	}
	return r.err
}

func (r *Reader) fail() { r.err = ErrMalformed; r.off = len(r.b) }

// next returns the next n bytes, or nil after setting the error.
func (r *Reader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail()
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.off += n
	return v
}

// Varint reads a zig-zag signed varint.
func (r *Reader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.off += n
	return v
}

// Uint8 reads one byte.
func (r *Reader) Uint8() uint8 {
	if p := r.next(1); p != nil {
		return p[0]
	}
	return 0
}

// Uint16 reads a big-endian uint16.
func (r *Reader) Uint16() uint16 {
	if p := r.next(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32() uint32 {
	if p := r.next(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64() uint64 {
	if p := r.next(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// Bool reads one byte: 0 is false, 1 is true, anything else is malformed.
func (r *Reader) Bool() bool {
	p := r.next(1)
	if p == nil {
		return false
	}
	switch p[0] {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail()
	return false
}

// Bytes reads a length-prefixed byte slice. The result aliases the input:
// copy it to keep it past the life of the input buffer (RPC input buffers are
// reused once UnmarshalBinary or the handler returns). An empty slice is
// returned as nil.
func (r *Reader) Bytes() []byte {
	n := r.length()
	if n == 0 {
		return nil
	}
	return r.next(n)
}

// String reads a length-prefixed string (a copy).
func (r *Reader) String() string {
	n := r.length()
	if n == 0 {
		return ""
	}
	return string(r.next(n))
}

// length reads a uvarint byte length and checks it against the bytes left,
// so the caller never allocates more than the input holds.
func (r *Reader) length() int {
	v := r.Uvarint()
	if r.err != nil {
		return 0
	}
	if v > uint64(r.Len()) {
		r.fail()
		return 0
	}
	return int(v)
}

// Count reads a uvarint element count for a slice whose elements take at
// least minSize bytes each (1 if minSize < 1), and checks that the bytes left
// can hold that many. A codec can then make([]T, 0, n) without letting a
// forged count allocate gigabytes.
func (r *Reader) Count(minSize int) int {
	if minSize < 1 {
		minSize = 1
	}
	v := r.Uvarint()
	if r.err != nil {
		return 0
	}
	if v > uint64(r.Len()/minSize) {
		r.fail()
		return 0
	}
	return int(v)
}
