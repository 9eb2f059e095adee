package proto

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestDecoderStream(t *testing.T) {
	var stream []byte
	stream = AppendJSON(stream, Header{Op: OpAuth, Seq: 1, App: 3}, Auth{UID: "u", Token: "t"})
	stream = AppendFrame(stream, Header{Op: OpPing, Seq: 2}, nil)
	stream = AppendPush(stream, 3, true, 77, bytes.Repeat([]byte("p"), 5000)) // bigger than the bufio buffer
	stream = AppendAck(stream, 4, []uint64{1, 2, 3})
	stream = AppendUpstream(stream, 5, 3, true, 9, []byte("up"))
	wantOps := []uint8{OpAuth, OpPing, OpPush, OpAck, OpUpstream}

	readers := []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte reads", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
	}
	for _, rr := range readers {
		t.Run(rr.name, func(t *testing.T) {
			d := NewDecoder(rr.r(), 0)
			for i, op := range wantOps {
				f, err := d.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if f.Op != op {
					t.Fatalf("frame %d op %#x; want %#x", i, f.Op, op)
				}
				if f.Seq != uint32(i+1) && op != OpPush {
					t.Fatalf("frame %d seq %d", i, f.Seq)
				}
				if op == OpPush {
					id, p, err := ParsePush(f.Body)
					if err != nil || id != 77 || len(p) != 5000 {
						t.Fatalf("push %d %d %v", id, len(p), err)
					}
				}
			}
			if _, err := d.Next(); err != io.EOF {
				t.Fatalf("after last frame err %v; want io.EOF", err)
			}
		})
	}
}

func TestDecoderErrors(t *testing.T) {
	ping := AppendFrame(nil, Header{Op: OpPing}, nil)
	push := AppendPush(nil, 1, false, 1, []byte("hello"))
	tests := []struct {
		name   string
		in     []byte
		maxLen int
		err    error
	}{
		{"empty stream", nil, 0, io.EOF},
		{"partial len", ping[:2], 0, io.ErrUnexpectedEOF},
		{"header truncated", ping[:10], 0, io.ErrUnexpectedEOF},
		{"body truncated", push[:len(push)-1], 0, io.ErrUnexpectedEOF},
		{"len below 12", lenPrefix(11), 0, ErrBadLen},
		{"len above max", lenPrefix(100), 50, ErrTooLarge},
		{"bad version", frame(2, OpPing, 0, 0, 0, nil), 0, ErrBadVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDecoder(bytes.NewReader(tt.in), tt.maxLen).Next()
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v; want %v", err, tt.err)
			}
		})
	}
}

// failAfterLen serves a Len prefix and then fails the test if anything more
// is read: the decoder must refuse a huge Len before reading the body.
type failAfterLen struct {
	t      *testing.T
	prefix []byte
}

func (r *failAfterLen) Read(p []byte) (int, error) {
	if len(r.prefix) == 0 {
		r.t.Error("decoder read past a refused Len")
		return 0, io.EOF
	}
	n := copy(p, r.prefix)
	r.prefix = r.prefix[n:]
	return n, nil
}

func TestDecoderRefusesHugeLenWithoutAllocating(t *testing.T) {
	for _, l := range []uint32{1 << 31, 0xFFFFFFFF, DefaultMaxLen + 1} {
		r := &failAfterLen{t: t}
		d := NewDecoder(r, 0)
		prefix := lenPrefix(l)
		allocs := testing.AllocsPerRun(100, func() {
			r.prefix = prefix
			if _, err := d.Next(); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Len %d: err %v; want ErrTooLarge", l, err)
			}
		})
		if allocs != 0 {
			t.Fatalf("Len %d: %v allocs per refused frame; want 0", l, allocs)
		}
		if cap(d.buf) != 0 {
			t.Fatalf("Len %d: decoder buffer grew to %d", l, cap(d.buf))
		}
	}
}

func TestDecoderReusesBuffer(t *testing.T) {
	var stream []byte
	for i := 0; i < 100; i++ {
		stream = AppendPush(stream, 1, true, uint64(i), []byte("payload"))
	}
	r := bytes.NewReader(stream)
	d := NewDecoder(r, 0)
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := d.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per frame; want 0", allocs)
	}
}
