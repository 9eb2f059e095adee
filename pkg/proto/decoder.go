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
	var lenBuf [LenSize]byte
	if _, err := io.ReadFull(d.r, lenBuf[:]); err != nil {
		return Frame{}, err
	}
	n, err := FrameLen(lenBuf[:], d.maxLen)
	if err != nil {
		return Frame{}, err
	}
	if cap(d.buf) < n {
		d.buf = make([]byte, n)
	}
	d.buf = d.buf[:n]
	copy(d.buf, lenBuf[:])
	if _, err := io.ReadFull(d.r, d.buf[LenSize:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f, _, err := Parse(d.buf, d.maxLen)
	return f, err
}
