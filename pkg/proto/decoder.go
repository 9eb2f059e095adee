package proto

import (
	"bufio"
	"io"
)

// Decoder reads frames from a stream, for clients and tools that use
// blocking I/O. It reuses one buffer: a Frame's Body is valid until the next
// call to Next.
type Decoder struct {
	r      *bufio.Reader
	maxLen int
	buf    []byte
	lenBuf [LenSize]byte // a field, not a local: a local escapes through io.ReadFull and costs an allocation per frame
}

// NewDecoder returns a Decoder reading from r that refuses frames whose Len
// is above maxLen (0 means DefaultMaxLen).
func NewDecoder(r io.Reader, maxLen int) *Decoder {
	if maxLen <= 0 {
		maxLen = DefaultMaxLen
	}
	return &Decoder{r: bufio.NewReaderSize(r, 4096), maxLen: maxLen}
}

// Next reads the next frame. The size is checked before the body is read.
func (d *Decoder) Next() (Frame, error) {
	if _, err := io.ReadFull(d.r, d.lenBuf[:]); err != nil {
		return Frame{}, err
	}
	n, err := FrameLen(d.lenBuf[:], d.maxLen)
	if err != nil {
		return Frame{}, err
	}
	if cap(d.buf) < n {
		d.buf = make([]byte, n)
	}
	d.buf = d.buf[:n]
	copy(d.buf, d.lenBuf[:])
	if _, err := io.ReadFull(d.r, d.buf[LenSize:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f, _, err := Parse(d.buf, d.maxLen)
	return f, err
}
