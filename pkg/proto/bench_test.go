package proto

import (
	"fmt"
	"testing"
)

var payloadSizes = []int{64, 256, 1024}

func BenchmarkAppendPush(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			payload := make([]byte, size)
			dst := make([]byte, 0, HeaderSize+8+size)
			b.SetBytes(int64(HeaderSize + 8 + size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				dst = AppendPush(dst[:0], 7, true, uint64(i), payload)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			buf := AppendPush(nil, 7, true, 1, make([]byte, size))
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				f, n, err := Parse(buf, DefaultMaxLen)
				if err != nil || n != len(buf) {
					b.Fatal(err)
				}
				if _, _, err := ParsePush(f.Body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseAck(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("%dids", n), func(b *testing.B) {
			ids := make([]uint64, n)
			for i := range ids {
				ids[i] = uint64(i)
			}
			body := AppendAck(nil, 0, ids)[HeaderSize:]
			dst := make([]uint64, 0, n)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = ParseAck(dst[:0], body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecoderNext(b *testing.B) {
	frame := AppendPush(nil, 7, true, 1, make([]byte, 256))
	r := &repeatReader{frame: frame}
	d := NewDecoder(r, 0)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// repeatReader returns the same frame forever.
type repeatReader struct {
	frame []byte
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.frame[r.off:])
		n += c
		r.off = (r.off + c) % len(r.frame)
	}
	return n, nil
}

// TestHotPathsDoNotAllocate pins the zero-allocation property the benchmarks
// report, so a regression fails the normal test run.
func TestHotPathsDoNotAllocate(t *testing.T) {
	payload := make([]byte, 256)
	dst := make([]byte, 0, 512)
	frame := AppendPush(nil, 7, true, 1, payload)
	ackBody := AppendAck(nil, 0, []uint64{1, 2, 3})[HeaderSize:]
	ids := make([]uint64, 0, 8)
	cases := map[string]func(){
		"AppendPush": func() { dst = AppendPush(dst[:0], 7, true, 1, payload) },
		"AppendAck":  func() { dst = AppendAck(dst[:0], 1, []uint64{1, 2, 3}) },
		"Parse": func() {
			f, _, _ := Parse(frame, DefaultMaxLen)
			_, _, _ = ParsePush(f.Body)
		},
		"ParseAck": func() { ids, _ = ParseAck(ids[:0], ackBody) },
	}
	for name, fn := range cases {
		if a := testing.AllocsPerRun(100, fn); a != 0 {
			t.Errorf("%s: %v allocs; want 0", name, a)
		}
	}
}
