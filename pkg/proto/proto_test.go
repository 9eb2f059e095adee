package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// frame builds a raw frame by hand, independently of the Append functions,
// so the round-trip tests compare against the layout of PROTOCOL.md.
func frame(ver, op uint8, flags uint16, seq, app uint32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(12+len(body)))
	b = append(b, ver, op)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, app)
	return append(b, body...)
}

func lenPrefix(l uint32) []byte { return binary.BigEndian.AppendUint32(nil, l) }

func TestFrameLen(t *testing.T) {
	tests := []struct {
		name   string
		buf    []byte
		maxLen int
		want   int
		err    error
	}{
		{"nil", nil, DefaultMaxLen, 0, nil},
		{"empty", []byte{}, DefaultMaxLen, 0, nil},
		{"1 byte", []byte{0}, DefaultMaxLen, 0, nil},
		{"3 bytes", []byte{0, 0, 0}, DefaultMaxLen, 0, nil},
		{"len 0", lenPrefix(0), DefaultMaxLen, 0, ErrBadLen},
		{"len 11", lenPrefix(11), DefaultMaxLen, 0, ErrBadLen},
		{"len 12", lenPrefix(12), DefaultMaxLen, 16, nil},
		{"len 13", append(lenPrefix(13), 1, 2, 3), DefaultMaxLen, 17, nil},
		{"len max", lenPrefix(DefaultMaxLen), DefaultMaxLen, DefaultMaxLen + 4, nil},
		{"len max+1", lenPrefix(DefaultMaxLen + 1), DefaultMaxLen, 0, ErrTooLarge},
		{"len 2GiB", lenPrefix(1 << 31), DefaultMaxLen, 0, ErrTooLarge},
		{"len 0xFFFFFFFF", lenPrefix(0xFFFFFFFF), DefaultMaxLen, 0, ErrTooLarge},
		{"small max", lenPrefix(100), 50, 0, ErrTooLarge},
		{"max below MinLen", lenPrefix(12), 11, 0, ErrTooLarge},
		{"bad len beats too large", lenPrefix(5), 0, 0, ErrBadLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FrameLen(tt.buf, tt.maxLen)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("FrameLen = %d, %v; want %d, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	ping := frame(1, OpPing, 0, 7, 0, nil)
	push := frame(1, OpPush, FlagAckRequired, 0, 42, []byte("12345678hello"))
	tests := []struct {
		name   string
		buf    []byte
		maxLen int
		want   Frame
		n      int
		err    error
	}{
		{"nil", nil, DefaultMaxLen, Frame{}, 0, nil},
		{"only len", ping[:4], DefaultMaxLen, Frame{}, 0, nil},
		{"header short", ping[:15], DefaultMaxLen, Frame{}, 0, nil},
		{"ping", ping, DefaultMaxLen, Frame{Header: Header{Ver: 1, Op: OpPing, Seq: 7}, Body: []byte{}}, 16, nil},
		{"push", push, DefaultMaxLen, Frame{Header: Header{Ver: 1, Op: OpPush, Flags: FlagAckRequired, App: 42}, Body: []byte("12345678hello")}, len(push), nil},
		{"body short", push[:len(push)-1], DefaultMaxLen, Frame{}, 0, nil},
		{"trailing bytes not consumed", append(append([]byte{}, ping...), 0, 0), DefaultMaxLen, Frame{Header: Header{Ver: 1, Op: OpPing, Seq: 7}, Body: []byte{}}, 16, nil},
		{"ver 0", frame(0, OpPing, 0, 0, 0, nil), DefaultMaxLen, Frame{Header: Header{Ver: 0, Op: OpPing}, Body: []byte{}}, 16, ErrBadVersion},
		{"ver 2", frame(2, OpPing, 0, 0, 0, nil), DefaultMaxLen, Frame{Header: Header{Ver: 2, Op: OpPing}, Body: []byte{}}, 16, ErrBadVersion},
		{"bad len", lenPrefix(3), DefaultMaxLen, Frame{}, 0, ErrBadLen},
		{"too large", lenPrefix(DefaultMaxLen + 1), DefaultMaxLen, Frame{}, 0, ErrTooLarge},
		{"too large for small max", push, 16, Frame{}, 0, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := Parse(tt.buf, tt.maxLen)
			if n != tt.n || !errors.Is(err, tt.err) {
				t.Fatalf("Parse = n %d, err %v; want %d, %v", n, err, tt.n, tt.err)
			}
			if f.Header != tt.want.Header || !bytes.Equal(f.Body, tt.want.Body) {
				t.Fatalf("Parse frame = %+v; want %+v", f, tt.want)
			}
			if cap(f.Body) != len(f.Body) {
				t.Fatalf("Body cap %d > len %d: appending would overwrite the next frame", cap(f.Body), len(f.Body))
			}
		})
	}
}

func TestAppendHeader(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		body []byte
	}{
		{"default ver", Header{Op: OpPing}, nil},
		{"all fields", Header{Ver: 1, Op: OpUpstream, Flags: 0xBEEF, Seq: 0xDEADBEEF, App: 0xFFFFFFFF}, []byte{1, 2, 3}},
		{"explicit other ver", Header{Ver: 9, Op: OpAuth}, []byte("{}")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ver := tt.h.Ver
			if ver == 0 {
				ver = Version
			}
			want := frame(ver, tt.h.Op, tt.h.Flags, tt.h.Seq, tt.h.App, tt.body)
			if got := AppendFrame(nil, tt.h, tt.body); !bytes.Equal(got, want) {
				t.Fatalf("AppendFrame = %x; want %x", got, want)
			}
			prefix := []byte("xyz")
			got := AppendFrame(append([]byte{}, prefix...), tt.h, tt.body)
			if !bytes.Equal(got[:3], prefix) || !bytes.Equal(got[3:], want) {
				t.Fatalf("AppendFrame did not append after existing bytes: %x", got)
			}
		})
	}
}

func TestPushRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		app     uint32
		qos1    bool
		id      uint64
		payload []byte
	}{
		{"qos0 empty", 1, false, 1, nil},
		{"qos1", 7, true, 0x0123456789ABCDEF, []byte("hello")},
		{"max id", 0xFFFFFFFF, true, ^uint64(0), bytes.Repeat([]byte{0xAB}, 1024)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendPush(nil, tt.app, tt.qos1, tt.id, tt.payload)
			var flags uint16
			if tt.qos1 {
				flags = FlagAckRequired
			}
			want := frame(1, OpPush, flags, 0, tt.app, append(binary.BigEndian.AppendUint64(nil, tt.id), tt.payload...))
			if !bytes.Equal(b, want) {
				t.Fatalf("AppendPush = %x; want %x", b, want)
			}
			f, n, err := Parse(b, DefaultMaxLen+8)
			if err != nil || n != len(b) {
				t.Fatalf("Parse: n %d err %v", n, err)
			}
			if f.Op != OpPush || f.App != tt.app || (f.Flags&FlagAckRequired != 0) != tt.qos1 || f.Seq != 0 {
				t.Fatalf("header %+v", f.Header)
			}
			id, payload, err := ParsePush(f.Body)
			if err != nil || id != tt.id || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("ParsePush = %d %q %v", id, payload, err)
			}
		})
	}
}

func TestParsePushBad(t *testing.T) {
	for _, body := range [][]byte{nil, {}, {1, 2, 3, 4, 5, 6, 7}} {
		if _, _, err := ParsePush(body); !errors.Is(err, ErrBadBody) {
			t.Fatalf("ParsePush(%x) err %v; want ErrBadBody", body, err)
		}
	}
}

func TestAckRoundTrip(t *testing.T) {
	many := make([]uint64, 1000)
	for i := range many {
		many[i] = uint64(i) * 0x9E3779B97F4A7C15
	}
	tests := []struct {
		name string
		seq  uint32
		ids  []uint64
	}{
		{"none", 0, nil},
		{"one", 5, []uint64{42}},
		{"extremes", 0xFFFFFFFF, []uint64{0, ^uint64(0)}},
		{"many", 1, many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendAck(nil, tt.seq, tt.ids)
			body := binary.BigEndian.AppendUint16(nil, uint16(len(tt.ids)))
			for _, id := range tt.ids {
				body = binary.BigEndian.AppendUint64(body, id)
			}
			if want := frame(1, OpAck, 0, tt.seq, 0, body); !bytes.Equal(b, want) {
				t.Fatalf("AppendAck = %x; want %x", b, want)
			}
			f, _, err := Parse(b, DefaultMaxLen)
			if err != nil {
				t.Fatal(err)
			}
			prev := []uint64{99}
			got, err := ParseAck(prev, f.Body)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1+len(tt.ids) || got[0] != 99 {
				t.Fatalf("ParseAck did not append to dst: %v", got[:1])
			}
			for i, id := range tt.ids {
				if got[1+i] != id {
					t.Fatalf("id %d = %d; want %d", i, got[1+i], id)
				}
			}
		})
	}
}

func TestAppendAckTruncates(t *testing.T) {
	ids := make([]uint64, MaxAckIDs+10)
	b := AppendAck(nil, 0, ids)
	f, _, err := Parse(b, len(b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAck(nil, f.Body)
	if err != nil || len(got) != MaxAckIDs {
		t.Fatalf("got %d ids, err %v; want %d", len(got), err, MaxAckIDs)
	}
}

func TestParseAckBad(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{"nil", nil},
		{"one byte", []byte{0}},
		{"count 1 no id", []byte{0, 1}},
		{"count 1 short id", []byte{0, 1, 1, 2, 3}},
		{"count 0 trailing", []byte{0, 0, 1}},
		{"count 1 trailing", append([]byte{0, 1}, make([]byte, 9)...)},
		{"count 0xFFFF tiny body", []byte{0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []uint64{1}
			got, err := ParseAck(dst, tt.body)
			if !errors.Is(err, ErrBadBody) {
				t.Fatalf("err %v; want ErrBadBody", err)
			}
			if len(got) != 1 {
				t.Fatalf("dst grew on error: %v", got)
			}
		})
	}
}

func TestUpstreamRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		seq     uint32
		app     uint32
		reply   bool
		typ     uint16
		payload []byte
	}{
		{"no reply empty", 1, 2, false, 0, nil},
		{"reply", 0xFFFFFFFF, 9, true, 0xFFFF, []byte(`{"x":1}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendUpstream(nil, tt.seq, tt.app, tt.reply, tt.typ, tt.payload)
			var flags uint16
			if tt.reply {
				flags = FlagReplyWanted
			}
			want := frame(1, OpUpstream, flags, tt.seq, tt.app, append(binary.BigEndian.AppendUint16(nil, tt.typ), tt.payload...))
			if !bytes.Equal(b, want) {
				t.Fatalf("AppendUpstream = %x; want %x", b, want)
			}
			f, _, err := Parse(b, DefaultMaxLen)
			if err != nil {
				t.Fatal(err)
			}
			typ, payload, err := ParseUpstream(f.Body)
			if err != nil || typ != tt.typ || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("ParseUpstream = %d %q %v", typ, payload, err)
			}
		})
	}
	for _, body := range [][]byte{nil, {1}} {
		if _, _, err := ParseUpstream(body); !errors.Is(err, ErrBadBody) {
			t.Fatalf("ParseUpstream(%x) err %v", body, err)
		}
	}
}

func TestPongFrame(t *testing.T) {
	if want := frame(1, OpPong, 0, 0, 0, nil); !bytes.Equal(PongFrame, want) {
		t.Fatalf("PongFrame = %x; want %x", PongFrame, want)
	}
}

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{ErrTooLarge, ErrCodeFrameTooLarge},
		{ErrBadLen, ErrCodeBadFrame},
		{ErrBadVersion, ErrCodeBadFrame},
		{ErrBadBody, ErrCodeBadFrame},
		{errors.Join(errors.New("x"), ErrTooLarge), ErrCodeFrameTooLarge},
	}
	for _, tt := range tests {
		if got := Code(tt.err); got != tt.want {
			t.Errorf("Code(%v) = %q; want %q", tt.err, got, tt.want)
		}
	}
}
