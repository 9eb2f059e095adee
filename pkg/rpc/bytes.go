package rpc

// Bytes is a raw message: it encodes as its own bytes and decodes by copying
// into itself (reusing its capacity). Pass a pointer (&b) to Call, so the
// conversion to an interface does not allocate.
type Bytes []byte

// AppendBinary appends b.
func (b Bytes) AppendBinary(dst []byte) ([]byte, error) { return append(dst, b...), nil }

// UnmarshalBinary copies data into b.
func (b *Bytes) UnmarshalBinary(data []byte) error {
	*b = append((*b)[:0], data...)
	return nil
}
