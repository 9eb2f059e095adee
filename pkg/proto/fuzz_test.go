package proto

import (
	"bytes"
	"testing"
)

// seedFrames is a corpus of valid frames of every op plus a few broken ones.
func seedFrames() [][]byte {
	return [][]byte{
		AppendJSON(nil, Header{Op: OpAuth, Seq: 1, App: 7}, Auth{UID: "u1", Token: "123.abc", HB: 30}),
		AppendJSON(nil, Header{Op: OpAuthOK, Seq: 1}, AuthOK{HB: 30, Room: "r1", ServerTime: 1}),
		AppendFrame(nil, Header{Op: OpPing, Seq: 2}, nil),
		PongFrame,
		AppendPush(nil, 7, true, 42, []byte("hello")),
		AppendPush(nil, 7, false, 1, nil),
		AppendAck(nil, 3, []uint64{1, 2, 3}),
		AppendUpstream(nil, 4, 7, true, 5, []byte("data")),
		AppendFrame(nil, Header{Op: OpUpstreamOK, Seq: 4}, nil),
		AppendJSON(nil, Header{Op: OpBind, Seq: 5, App: 8}, Bind{Token: "t"}),
		AppendJSON(nil, Header{Op: OpKick}, Kick{Code: 1, Reason: "login_elsewhere"}),
		AppendJSON(nil, Header{Op: OpRedirect}, Redirect{Addrs: []string{"a:1"}, AfterMS: 10}),
		AppendError(nil, 6, ErrCodeBadToken, "x"),
		{0, 0, 0, 11},
		{0xFF, 0xFF, 0xFF, 0xFF, 1, 1},
		frame(2, OpPing, 0, 0, 0, nil),
		frame(1, 0xEE, 0xFFFF, 0, 0, []byte{1}),
	}
}

// checkFrame decodes the body of every known op; nothing may panic.
func checkFrame(t *testing.T, f Frame) {
	var ids []uint64
	switch f.Op {
	case OpPush:
		_, _, _ = ParsePush(f.Body)
	case OpAck:
		_, _ = ParseAck(ids, f.Body)
	case OpUpstream:
		_, _, _ = ParseUpstream(f.Body)
	case OpAuth:
		_ = DecodeJSON(f.Body, &Auth{})
	case OpAuthOK:
		_ = DecodeJSON(f.Body, &AuthOK{})
	case OpBind:
		_ = DecodeJSON(f.Body, &Bind{})
	case OpKick:
		_ = DecodeJSON(f.Body, &Kick{})
	case OpRedirect:
		_ = DecodeJSON(f.Body, &Redirect{})
	case OpError:
		_ = DecodeJSON(f.Body, &Error{})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, n, err := Parse(data, DefaultMaxLen)
		if n < 0 || n > len(data) {
			t.Fatalf("n = %d of %d bytes", n, len(data))
		}
		if err != nil || n == 0 {
			return
		}
		if got := AppendFrame(nil, fr.Header, fr.Body); !bytes.Equal(got, data[:n]) {
			t.Fatalf("re-encoded %x; want %x", got, data[:n])
		}
		checkFrame(t, fr)
	})
}

func FuzzDecoder(f *testing.F) {
	all := []byte{}
	for _, s := range seedFrames() {
		f.Add(s)
		all = append(all, s...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data), 1024)
		var out []byte
		for i := 0; i <= len(data)/MinLen; i++ {
			fr, err := d.Next()
			if err != nil {
				break
			}
			out = AppendFrame(out, fr.Header, fr.Body)
			checkFrame(t, fr)
		}
		if !bytes.HasPrefix(data, out) {
			t.Fatalf("decoded frames re-encode to %x, not a prefix of the input", out)
		}
	})
}

func FuzzParseAck(f *testing.F) {
	f.Add(AppendAck(nil, 0, nil)[HeaderSize:])
	f.Add(AppendAck(nil, 0, []uint64{1, 2, 3})[HeaderSize:])
	f.Add([]byte{0xFF, 0xFF})
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, err := ParseAck(nil, body)
		if err != nil {
			if len(ids) != 0 {
				t.Fatalf("ids %v returned with error", ids)
			}
			return
		}
		if got := AppendAck(nil, 0, ids)[HeaderSize:]; !bytes.Equal(got, body) {
			t.Fatalf("re-encoded %x; want %x", got, body)
		}
	})
}

func FuzzParseUpstream(f *testing.F) {
	f.Add(AppendUpstream(nil, 1, 1, true, 7, []byte("x"))[HeaderSize:])
	f.Add([]byte{0, 0})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, body []byte) {
		typ, payload, err := ParseUpstream(body)
		if err != nil {
			return
		}
		if got := AppendUpstream(nil, 0, 0, false, typ, payload)[HeaderSize:]; !bytes.Equal(got, body) {
			t.Fatalf("re-encoded %x; want %x", got, body)
		}
	})
}
