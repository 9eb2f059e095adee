package wire

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// sample is a message with one field of every kind, the way a service codec
// would write it.
type sample struct {
	U8   uint8
	U16  uint16
	U32  uint32
	U64  uint64
	UV   uint64
	V    int64
	B    bool
	S    string
	P    []byte
	List []uint32
}

func (s *sample) AppendBinary(b []byte) ([]byte, error) {
	b = AppendUint8(b, s.U8)
	b = AppendUint16(b, s.U16)
	b = AppendUint32(b, s.U32)
	b = AppendUint64(b, s.U64)
	b = AppendUvarint(b, s.UV)
	b = AppendVarint(b, s.V)
	b = AppendBool(b, s.B)
	b = AppendString(b, s.S)
	b = AppendBytes(b, s.P)
	b = AppendUvarint(b, uint64(len(s.List)))
	for _, v := range s.List {
		b = AppendUint32(b, v)
	}
	return b, nil
}

func (s *sample) UnmarshalBinary(b []byte) error {
	r := NewReader(b)
	s.U8 = r.Uint8()
	s.U16 = r.Uint16()
	s.U32 = r.Uint32()
	s.U64 = r.Uint64()
	s.UV = r.Uvarint()
	s.V = r.Varint()
	s.B = r.Bool()
	s.S = r.String()
	s.P = append([]byte(nil), r.Bytes()...)
	n := r.Count(4)
	s.List = s.List[:0]
	for i := 0; i < n; i++ {
		s.List = append(s.List, r.Uint32())
	}
	return r.Done()
}

func equal(a, b *sample) bool {
	if a.U8 != b.U8 || a.U16 != b.U16 || a.U32 != b.U32 || a.U64 != b.U64 || a.UV != b.UV ||
		a.V != b.V || a.B != b.B || a.S != b.S || !bytes.Equal(a.P, b.P) || len(a.List) != len(b.List) {
		return false
	}
	for i := range a.List {
		if a.List[i] != b.List[i] {
			return false
		}
	}
	return true
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		in   sample
	}{
		{"zero", sample{}},
		{"max", sample{U8: math.MaxUint8, U16: math.MaxUint16, U32: math.MaxUint32, U64: math.MaxUint64,
			UV: math.MaxUint64, V: math.MinInt64, B: true, S: "héllo", P: []byte{0, 1, 2}, List: []uint32{1, 2, 3}}},
		{"negative", sample{V: -1, S: string(make([]byte, 300)), P: make([]byte, 70000)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.in.AppendBinary([]byte("prefix"))
			if err != nil {
				t.Fatal(err)
			}
			var out sample
			if err := out.UnmarshalBinary(b[len("prefix"):]); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !equal(&tc.in, &out) {
				t.Fatalf("got %+v, want %+v", out, tc.in)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	good, _ := (&sample{S: "abc", P: []byte("xyz"), List: []uint32{7}}).AppendBinary(nil)
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"bad bool", func() []byte { b := append([]byte(nil), good...); b[1+2+4+8+1+1] = 2; return b }()},
		{"huge string", append(good[:1+2+4+8+1+1+1:1+2+4+8+1+1+1], 0xFF, 0xFF, 0xFF, 0xFF, 0x0F)},
		{"huge count", append(AppendBytes(AppendString(good[:1+2+4+8+1+1+1:1+2+4+8+1+1+1], ""), nil), 0xFF, 0xFF, 0x7F)},
		{"varint overflow", append(make([]byte, 15), 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s sample
			if err := s.UnmarshalBinary(tc.b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestStickyError(t *testing.T) {
	r := NewReader([]byte{1})
	if r.Uint32() != 0 || r.Err() == nil {
		t.Fatal("short read not reported")
	}
	if r.Uint8() != 0 || r.Len() != 0 {
		t.Fatal("read after error returned data")
	}
	r.Reset([]byte{1})
	if r.Uint8() != 1 || r.Done() != nil {
		t.Fatal("Reset did not clear the error")
	}
}

func FuzzReader(f *testing.F) {
	good, _ := (&sample{U64: 9, S: "abc", P: []byte("xyz"), List: []uint32{7, 8}}).AppendBinary(nil)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s sample
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		// A message that decodes cleanly survives a round trip (the bytes may
		// differ: varints accept non-minimal encodings).
		again, _ := s.AppendBinary(nil)
		var s2 sample
		if err := s2.UnmarshalBinary(again); err != nil || !equal(&s, &s2) {
			t.Fatalf("round trip of %x: %v %+v %+v", b, err, s, s2)
		}
	})
}

func BenchmarkCodec(b *testing.B) {
	in := sample{U64: 1 << 40, UV: 300, V: -5, B: true, S: "user-1234567", P: make([]byte, 64), List: []uint32{1, 2, 3, 4}}
	buf := make([]byte, 0, 256)
	var out sample
	out.P = make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = in.AppendBinary(buf[:0])
		if err := out.UnmarshalBinary(buf); err != nil {
			b.Fatal(err)
		}
	}
}
