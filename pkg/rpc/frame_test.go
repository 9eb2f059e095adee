package rpc

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		h    header
		body []byte
	}{
		{"empty request", header{kind: kindRequest, method: 7, id: 1, aux: 250}, nil},
		{"reply", header{kind: kindReply, method: 0xFFFF, id: 1<<64 - 1}, []byte("hello")},
		{"error", header{kind: kindError, method: 3, id: 9, aux: CodeOverloaded}, []byte("busy")},
		{"goaway", header{kind: kindGoAway}, nil},
		{"larger than the read buffer", header{kind: kindReply, id: 2}, bytes.Repeat([]byte{0xAB}, 5000)},
	}
	var stream []byte
	for _, tc := range cases {
		start := len(stream)
		stream = appendHeader(stream, tc.h)
		stream = append(stream, tc.body...)
		if err := finishFrame(stream, start, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
	}
	fr := newFrameReader(bytes.NewReader(stream), 64, DefaultMaxFrame) // tiny buffer: both paths
	for _, tc := range cases {
		h, body, err := fr.next()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h != tc.h || !bytes.Equal(body, tc.body) {
			t.Fatalf("%s: got %+v %q", tc.name, h, body)
		}
	}
	if _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestFrameReaderErrors(t *testing.T) {
	good := rawFrame(kindReply, 1, []byte("abc"))
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"too large", []byte{0, 1, 0, 0, 1}, ErrFrameTooLarge},
		{"max uint32", []byte{0xFF, 0xFF, 0xFF, 0xFF}, ErrFrameTooLarge},
		{"too short", []byte{0, 0, 0, minLen - 1}, ErrBadFrame},
		{"kind zero", rawFrame(0, 1, nil), ErrBadFrame},
		{"kind unknown", rawFrame(5, 1, nil), ErrBadFrame},
		{"truncated header", good[:3], io.ErrUnexpectedEOF},
		{"truncated body", good[:len(good)-1], io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr := newFrameReader(bytes.NewReader(tc.data), 4096, 1024)
			if _, _, err := fr.next(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if err := finishFrame(make([]byte, 2000), 0, 1024); err != ErrFrameTooLarge {
		t.Fatalf("finishFrame over max: %v", err)
	}
}

// FuzzReadFrame feeds arbitrary streams to the frame decoder: it must never
// panic, never return a frame over the limit, and every frame it returns
// must re-encode to the bytes it came from.
func FuzzReadFrame(f *testing.F) {
	f.Add(rawFrame(kindRequest, 1, []byte("hi")))
	f.Add(append(rawFrame(kindReply, 2, nil), rawFrame(kindError, 3, []byte("x"))...))
	f.Add(goAwayFrame)
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0, 0, 0, 0})
	f.Add(appendError(nil, 1, 2, CodeInternal, "boom"))
	const max = 512
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), 64, max)
		off := 0
		for {
			h, body, err := fr.next()
			if err != nil {
				return
			}
			n := headerSize + len(body)
			if n > max {
				t.Fatalf("frame of %d bytes over max %d", n, max)
			}
			again := appendHeader(nil, h)
			again = append(again, body...)
			if err := finishFrame(again, 0, max); err != nil {
				t.Fatal(err)
			}
			again[offFlags] = data[off+offFlags] // reserved, not decoded
			if !bytes.Equal(again, data[off:off+n]) {
				t.Fatalf("re-encoded %x, read %x", again, data[off:off+n])
			}
			off += n
		}
	})
}
