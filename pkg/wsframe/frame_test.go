package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame is a frame as a client writes it, by gobwas/ws's writer.
func clientFrame(op ws.OpCode, fin bool, p []byte) []byte {
	var b bytes.Buffer
	f := ws.MaskFrameWith(ws.NewFrame(op, fin, bytes.Clone(p)), testMask)
	if err := ws.WriteFrame(&b, f); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// rawFrame builds a frame by hand (for what gobwas/ws refuses to write).
func rawFrame(b0 byte, masked bool, p []byte) []byte {
	out := []byte{b0}
	var mbit byte
	if masked {
		mbit = 0x80
	}
	switch {
	case len(p) < 126:
		out = append(out, mbit|byte(len(p)))
	case len(p) <= 0xffff:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(len(p)))
	}
	p = bytes.Clone(p)
	if masked {
		out = append(out, testMask[:]...)
		ws.Cipher(p, testMask, 0)
	}
	return append(out, p...)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

type event struct {
	kind MsgKind
	msg  string
}

// decodeAll feeds in to a Decoder the way an event loop does: all at once,
// or byte by byte (a growing pending buffer, consumed bytes dropped).
func decodeAll(d *Decoder, in []byte, byteByByte bool) (evs []event, err error) {
	in = bytes.Clone(in)
	var pending []byte
	feed := func(chunk []byte) error {
		pending = append(pending, chunk...)
		for {
			n, msg, kind, err := d.Next(pending)
			if err != nil {
				return err
			}
			if n < 0 || n > len(pending) {
				return fmt.Errorf("consumed %d of %d", n, len(pending))
			}
			if n == 0 {
				return nil
			}
			if kind != KindNone {
				evs = append(evs, event{kind, string(msg)})
			}
			pending = pending[n:]
			if kind == KindClose {
				return nil
			}
		}
	}
	if byteByByte {
		for i := range in {
			if err := feed(in[i : i+1]); err != nil {
				return evs, err
			}
		}
		return evs, nil
	}
	return evs, feed(in)
}

func TestDecoder(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000)
	med := bytes.Repeat([]byte("m"), 300)
	closeBody := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	tests := []struct {
		name string
		max  int
		in   []byte
		want []event
		err  *Error
	}{
		{
			name: "masked binary",
			in:   clientFrame(ws.OpBinary, true, []byte("hello")),
			want: []event{{KindBinary, "hello"}},
		},
		{
			name: "empty binary",
			in:   clientFrame(ws.OpBinary, true, nil),
			want: []event{{KindBinary, ""}},
		},
		{
			name: "16-bit length",
			in:   clientFrame(ws.OpBinary, true, med),
			want: []event{{KindBinary, string(med)}},
		},
		{
			name: "64-bit length",
			max:  80000,
			in:   clientFrame(ws.OpBinary, true, big),
			want: []event{{KindBinary, string(big)}},
		},
		{
			name: "two messages back to back",
			in:   cat(clientFrame(ws.OpBinary, true, []byte("a")), clientFrame(ws.OpBinary, true, []byte("bc"))),
			want: []event{{KindBinary, "a"}, {KindBinary, "bc"}},
		},
		{
			name: "unmasked 1002",
			in:   rawFrame(0x82, false, []byte("hello")),
			err:  ErrUnmasked,
		},
		{
			name: "fragmented",
			in: cat(
				clientFrame(ws.OpBinary, false, []byte("he")),
				clientFrame(ws.OpContinuation, false, []byte("ll")),
				clientFrame(ws.OpContinuation, true, []byte("o"))),
			want: []event{{KindBinary, "hello"}},
		},
		{
			name: "fragmented, empty fragments",
			in: cat(
				clientFrame(ws.OpBinary, false, nil),
				clientFrame(ws.OpContinuation, true, nil)),
			want: []event{{KindBinary, ""}},
		},
		{
			name: "ping inside a fragmented message",
			in: cat(
				clientFrame(ws.OpBinary, false, []byte("he")),
				clientFrame(ws.OpPing, true, []byte("p1")),
				clientFrame(ws.OpContinuation, false, []byte("ll")),
				clientFrame(ws.OpPong, true, []byte("p2")),
				clientFrame(ws.OpContinuation, true, []byte("o"))),
			want: []event{{KindPing, "p1"}, {KindPong, "p2"}, {KindBinary, "hello"}},
		},
		{
			name: "ping 125 bytes",
			in:   clientFrame(ws.OpPing, true, bytes.Repeat([]byte("p"), 125)),
			want: []event{{KindPing, string(bytes.Repeat([]byte("p"), 125))}},
		},
		{
			name: "ping 126 bytes 1002",
			in:   rawFrame(0x89, true, bytes.Repeat([]byte("p"), 126)),
			err:  ErrControlTooLong,
		},
		{
			name: "fragmented ping 1002",
			in:   rawFrame(0x09, true, []byte("p")),
			err:  ErrControlFragment,
		},
		{
			name: "continuation without a message 1002",
			in:   clientFrame(ws.OpContinuation, true, []byte("x")),
			err:  ErrContinuationLost,
		},
		{
			name: "new message inside a fragmented one 1002",
			in: cat(
				clientFrame(ws.OpBinary, false, []byte("he")),
				clientFrame(ws.OpBinary, true, []byte("llo"))),
			err: ErrContinuationWant,
		},
		{
			name: "oversize single frame 1009",
			max:  100,
			in:   clientFrame(ws.OpBinary, true, bytes.Repeat([]byte("x"), 101)),
			err:  ErrMessageTooBig,
		},
		{
			name: "exactly the maximum",
			max:  100,
			in:   clientFrame(ws.OpBinary, true, bytes.Repeat([]byte("x"), 100)),
			want: []event{{KindBinary, string(bytes.Repeat([]byte("x"), 100))}},
		},
		{
			name: "oversize reassembled message 1009",
			max:  100,
			in: cat(
				clientFrame(ws.OpBinary, false, bytes.Repeat([]byte("x"), 60)),
				clientFrame(ws.OpContinuation, true, bytes.Repeat([]byte("x"), 41))),
			err: ErrMessageTooBig,
		},
		{
			name: "oversize announced, payload never sent: error at once",
			max:  100,
			in:   rawFrame(0x82, true, big)[:14],
			err:  ErrMessageTooBig,
		},
		{
			name: "huge 64-bit length 1009 without allocating",
			in:   []byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
			err:  ErrMessageTooBig,
		},
		{
			name: "64-bit length with the top bit set 1002",
			in:   []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4},
			err:  ErrBadLength,
		},
		{
			name: "text message: bad_frame",
			in:   clientFrame(ws.OpText, true, []byte("hi")),
			err:  ErrTextMessage,
		},
		{
			name: "fragmented text message: bad_frame at the first fragment",
			in:   clientFrame(ws.OpText, false, []byte("hi")),
			err:  ErrTextMessage,
		},
		{
			name: "rsv1 1002",
			in:   rawFrame(0xc2, true, []byte("x")),
			err:  ErrReservedBits,
		},
		{
			name: "rsv3 1002",
			in:   rawFrame(0x92, true, []byte("x")),
			err:  ErrReservedBits,
		},
		{
			name: "reserved opcode 1002",
			in:   rawFrame(0x83, true, []byte("x")),
			err:  ErrReservedOpCode,
		},
		{
			name: "reserved control opcode 1002",
			in:   rawFrame(0x8b, true, nil),
			err:  ErrReservedOpCode,
		},
		{
			name: "close with code",
			in:   clientFrame(ws.OpClose, true, closeBody(1000, "bye")),
			want: []event{{KindClose, string(closeBody(1000, "bye"))}},
		},
		{
			name: "close without body",
			in:   clientFrame(ws.OpClose, true, nil),
			want: []event{{KindClose, ""}},
		},
		{
			name: "close with a 1-byte body 1002",
			in:   clientFrame(ws.OpClose, true, []byte{3}),
			err:  ErrBadClose,
		},
		{
			name: "close with code 1005 1002",
			in:   clientFrame(ws.OpClose, true, closeBody(1005, "")),
			err:  ErrBadClose,
		},
		{
			name: "close with code 999 1002",
			in:   clientFrame(ws.OpClose, true, closeBody(999, "")),
			err:  ErrBadClose,
		},
		{
			name: "close with code 5000 1002",
			in:   clientFrame(ws.OpClose, true, closeBody(5000, "")),
			err:  ErrBadClose,
		},
		{
			name: "close with a private code",
			in:   clientFrame(ws.OpClose, true, closeBody(4001, "")),
			want: []event{{KindClose, string(closeBody(4001, ""))}},
		},
		{
			name: "close reason not UTF-8 1007",
			in:   clientFrame(ws.OpClose, true, closeBody(1000, "\xff")),
			err:  ErrCloseReasonUTF8,
		},
		{
			name: "close inside a fragmented message",
			in: cat(
				clientFrame(ws.OpBinary, false, []byte("he")),
				clientFrame(ws.OpClose, true, closeBody(1001, ""))),
			want: []event{{KindClose, string(closeBody(1001, ""))}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []bool{false, true} {
				d := &Decoder{MaxMessage: tt.max}
				evs, err := decodeAll(d, tt.in, split)
				if tt.err != nil {
					if err != tt.err {
						t.Fatalf(
							"split=%v: err %v, want %v",
							split, err, tt.err)
					}
					if CloseCode(err) != tt.err.Code {
						t.Fatalf(
							"close code %d",
							CloseCode(err))
					}
				} else if err != nil {
					t.Fatalf(
						"split=%v: %v",
						split, err)
				}
				if fmt.Sprint(evs) != fmt.Sprint(tt.want) {
					t.Fatalf(
						"split=%v: events\n%.200v\nwant\n%.200v",
						split, evs, tt.want)
				}
			}
		})
	}
}

func TestDecoderErrorCodes(t *testing.T) {
	if ErrTextMessage.Code != 1008 || ErrTextMessage.Reply != "bad_frame" {
		t.Fatal(ErrTextMessage)
	}
	if ErrMessageTooBig.Code != 1009 || ErrMessageTooBig.Reply != "frame_too_large" {
		t.Fatal(ErrMessageTooBig)
	}
	if ErrUnmasked.Code != 1002 || ErrUnmasked.Reply != "" {
		t.Fatal(ErrUnmasked)
	}
	if CloseCode(errors.New("other")) != 1011 {
		t.Fatal("other error")
	}
}

func TestDecoderAfterClose(t *testing.T) {
	var d Decoder
	in := cat(clientFrame(ws.OpClose, true, nil), clientFrame(ws.OpBinary, true, []byte("x")))
	n, _, kind, err := d.Next(in)
	if err != nil || kind != KindClose {
		t.Fatal(kind, err)
	}
	if _, _, _, err := d.Next(in[n:]); err != ErrAfterClose {
		t.Fatal(err)
	}
}

// TestDecoderWsutil checks frames written by gobwas/ws's client message
// writer (random masks, its own header encoding).
func TestDecoderWsutil(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 65552} {
		var b bytes.Buffer
		p := bytes.Repeat([]byte{0xa5}, n)
		for i := range p {
			p[i] = byte(i)
		}
		if err := wsutil.WriteClientMessage(&b, ws.OpBinary, p); err != nil {
			t.Fatal(err)
		}
		if err := wsutil.WriteClientMessage(&b, ws.OpPing, []byte("pp")); err != nil {
			t.Fatal(err)
		}
		var d Decoder
		evs, err := decodeAll(&d, b.Bytes(), false)
		if err != nil {
			t.Fatal(n, err)
		}
		if len(evs) != 2 || evs[0].kind != KindBinary || evs[0].msg != string(p) || evs[1] != (event{KindPing, "pp"}) {
			t.Fatalf(
				"n=%d: %.100v",
				n, evs)
		}
	}
}

// TestDecoderFragmentedBuffer: the reassembly buffer never grows past the
// maximum and is handed over with the message.
func TestDecoderFragmentedBuffer(t *testing.T) {
	d := Decoder{MaxMessage: 1000}
	var in []byte
	for range 9 {
		in = append(in, clientFrame(ws.OpContinuation, false, bytes.Repeat([]byte("y"), 100))...)
	}
	in = cat(clientFrame(ws.OpBinary, false, bytes.Repeat([]byte("y"), 50)), in,
		clientFrame(ws.OpContinuation, true, bytes.Repeat([]byte("y"), 50)))
	for len(in) > 0 {
		n, msg, kind, err := d.Next(in)
		if err != nil {
			t.Fatal(err)
		}
		if cap(d.buf) > 1000 {
			t.Fatalf(
				"buffer cap %d",
				cap(d.buf))
		}
		in = in[n:]
		if kind == KindBinary {
			if len(msg) != 1000 || len(in) != 0 || d.buf != nil || d.Fragmented() {
				t.Fatalf(
					"msg %d, rest %d",
					len(msg), len(in))
			}
		}
	}
}

func TestEncoders(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		p := bytes.Repeat([]byte{7}, n)
		out := AppendBinary([]byte("prefix"), p)
		if !bytes.HasPrefix(out, []byte("prefix")) || len(out)-6 != FrameSize(n) {
			t.Fatalf(
				"n=%d: size %d, want %d",
				n, len(out)-6, FrameSize(n))
		}
		// gobwas/ws's client side reader accepts it.
		got, err := wsutil.ReadServerBinary(&readOnly{bytes.NewReader(out[6:])})
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf(
				"n=%d: %v",
				n, err)
		}
		h, err := ws.ReadHeader(bytes.NewReader(out[6:]))
		if err != nil || h.Masked || !h.Fin || h.OpCode != ws.OpBinary || h.Length != int64(n) {
			t.Fatalf(
				"n=%d: header %+v %v",
				n, h, err)
		}
		hdr := AppendBinaryHeader(nil, n)
		if !bytes.Equal(hdr, out[6:6+len(hdr)]) {
			t.Fatalf(
				"n=%d: header %x",
				n, hdr)
		}
	}

	f, err := ws.ReadFrame(bytes.NewReader(AppendPong(nil, []byte("abc"))))
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "abc" {
		t.Fatal(f, err)
	}
	f, err = ws.ReadFrame(bytes.NewReader(AppendPing(nil, bytes.Repeat([]byte("a"), 300))))
	if err != nil || f.Header.OpCode != ws.OpPing || len(f.Payload) != 125 {
		t.Fatal(f.Header, err)
	}

	f, err = ws.ReadFrame(bytes.NewReader(AppendClose(nil, CloseNormal, "kicked")))
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if err != nil || f.Header.OpCode != ws.OpClose || code != ws.StatusNormalClosure || reason != "kicked" {
		t.Fatal(f, err)
	}
	long := string(bytes.Repeat([]byte("é"), 100)) // 200 bytes, 2 per rune
	f, err = ws.ReadFrame(bytes.NewReader(AppendClose(nil, ClosePolicyViolation, long)))
	code, reason = ws.ParseCloseFrameData(f.Payload)
	if err != nil || code != 1008 || len(f.Payload) > 125 || ws.CheckCloseFrameData(code, reason) != nil {
		t.Fatal(len(f.Payload), err)
	}
	if got := AppendClose(nil, 0, "x"); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf(
			"%x",
			got)
	}
	if got := AppendCloseEcho(nil, []byte{0x03, 0xe9, 'b', 'y'}); !bytes.Equal(got, []byte{0x88, 2, 0x03, 0xe9}) {
		t.Fatalf(
			"%x",
			got)
	}
	if got := AppendCloseEcho(nil, nil); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf(
			"%x",
			got)
	}
}

func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	frame := clientFrame(ws.OpBinary, true, bytes.Repeat([]byte{1}, 256))
	buf := make([]byte, len(frame))
	var d Decoder
	if a := testing.AllocsPerRun(100, func() {
		copy(buf, frame)
		if _, _, k, err := d.Next(buf); err != nil || k != KindBinary {
			t.Fatal(k, err)
		}
	}); a != 0 {
		t.Fatalf(
			"Next: %v allocs",
			a)
	}
	dst := make([]byte, 0, 512)
	p := bytes.Repeat([]byte{1}, 256)
	if a := testing.AllocsPerRun(100, func() {
		dst = AppendBinary(dst[:0], p)
		dst = AppendPong(dst, p[:10])
		dst = AppendClose(dst, CloseNormal, "bye")
	}); a != 0 {
		t.Fatalf(
			"Append: %v allocs",
			a)
	}
}

func BenchmarkDecodeMasked256(b *testing.B) {
	frame := clientFrame(ws.OpBinary, true, bytes.Repeat([]byte{1}, 256))
	buf := make([]byte, len(frame))
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(256)
	for b.Loop() {
		copy(buf, frame) // the event loop's fresh bytes (Next unmasks in place)
		n, msg, kind, err := d.Next(buf)
		if err != nil || kind != KindBinary || n != len(frame) || len(msg) != 256 {
			b.Fatal(n, kind, err)
		}
	}
}

func BenchmarkAppendBinary256(b *testing.B) {
	p := bytes.Repeat([]byte{1}, 256)
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(256)
	for b.Loop() {
		dst = AppendBinary(dst[:0], p)
	}
}

type readOnly struct{ *bytes.Reader }

func (readOnly) Write(p []byte) (int, error) { return len(p), nil }
