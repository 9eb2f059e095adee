package wsframe

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/gobwas/ws"
)

func FuzzHandshake(f *testing.F) {
	f.Add([]byte(request("/v1/ws")), uint16(0))
	f.Add([]byte(request("/v1/ws", "Origin: https://app.example.com", "Sec-WebSocket-Protocol: lcpush.v1")), uint16(40))
	f.Add([]byte(request("/x", "Origin: https://evil")), uint16(3))
	f.Add([]byte("GET /v1/ws HTTP/1.1\r\n\r\n"), uint16(9))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), uint16(0))
	hs := Handshake{
		Origins:    []string{"https://app.example.com"},
		MaxRequest: 1024,
		Cookie:     &http.Cookie{Name: "lc", Value: "r1"},
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		orig := bytes.Clone(in)
		// A prefix first (need-more or an early answer), then the whole.
		for _, part := range [][]byte{in[:int(cut)%(len(in)+1)], in} {
			n, resp, res, err := hs.Parse(part)
			if !bytes.Equal(in, orig) {
				t.Fatal("Parse modified its input")
			}
			if n < 0 || n > len(part) {
				t.Fatalf("consumed %d of %d", n, len(part))
			}
			if n == 0 && err == nil {
				if resp != nil || res.Status != 0 {
					t.Fatalf("need-more with an answer %q", resp)
				}
				if len(part) >= hs.MaxRequest {
					t.Fatalf("need-more past MaxRequest: %d bytes", len(part))
				}
				continue
			}
			if len(resp) == 0 || len(resp) > 4096 {
				t.Fatalf("answer of %d bytes", len(resp))
			}
			if (err == nil) != (res.Status == 101) {
				t.Fatalf("status %d with err %v", res.Status, err)
			}
			if err == nil && n > hs.MaxRequest {
				t.Fatalf("upgraded a request of %d bytes", n)
			}
		}
	})
}

func FuzzDecoder(f *testing.F) {
	f.Add(clientFrame(ws.OpBinary, true, []byte("hello")), uint16(3))
	f.Add(cat(
		clientFrame(ws.OpBinary, false, []byte("he")),
		clientFrame(ws.OpPing, true, []byte("p")),
		clientFrame(ws.OpContinuation, true, []byte("llo"))), uint16(9))
	f.Add(clientFrame(ws.OpClose, true, []byte{3, 0xe8, 'o', 'k'}), uint16(1))
	f.Add(rawFrame(0x82, false, []byte("x")), uint16(0))
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, uint16(0))
	f.Add(rawFrame(0x82, true, bytes.Repeat([]byte("z"), 300)), uint16(77))
	const max = 512
	f.Fuzz(func(t *testing.T, in []byte, chunk uint16) {
		step := int(chunk)%64 + 1
		d := &Decoder{MaxMessage: max}
		var pending []byte
		for off := 0; off < len(in); off += step {
			pending = append(pending, in[off:min(off+step, len(in))]...)
			for {
				if len(pending) > d.MaxBuffered()+step {
					t.Fatalf("caller made to buffer %d bytes", len(pending))
				}
				n, msg, kind, err := d.Next(pending)
				if err != nil {
					if _, ok := err.(*Error); !ok {
						t.Fatalf("error %T", err)
					}
					if n != 0 {
						t.Fatalf("consumed %d with an error", n)
					}
					return
				}
				if n < 0 || n > len(pending) {
					t.Fatalf("consumed %d of %d", n, len(pending))
				}
				if n == 0 {
					if kind != KindNone || msg != nil {
						t.Fatal("need-more with a message")
					}
					break
				}
				switch kind {
				case KindBinary:
					if len(msg) > max {
						t.Fatalf("message of %d bytes", len(msg))
					}
				case KindPing, KindPong, KindClose:
					if len(msg) > 125 {
						t.Fatalf("control payload of %d bytes", len(msg))
					}
				}
				if cap(d.buf) > max {
					t.Fatalf("reassembly buffer of %d bytes", cap(d.buf))
				}
				pending = pending[n:]
				if kind == KindClose {
					return
				}
			}
		}
	})
}
