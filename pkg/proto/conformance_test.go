package proto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"testing"
)

// The shared conformance vectors (conformance/frames.json, written from
// PROTOCOL.md by conformance/gen.py, not by this codec): every frame decodes
// to its fields and meaning and encodes back to the same bytes, and every
// malformed input is refused with its ERROR code.
func TestConformanceFrames(t *testing.T) {
	raw, err := os.ReadFile("../../conformance/frames.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		MaxLen int `json:"max_len"`
		Frames []struct {
			Name, Hex    string
			BodyHex      string `json:"body_hex"`
			PayloadHex   string `json:"payload_hex"`
			MsgID        string `json:"msg_id"`
			Op           uint8
			Seq, App     uint32
			Flags        uint16
			JSON         map[string]any
			AckIDs       []string `json:"ack_ids"`
			UpstreamType uint16   `json:"upstream_type"`
			QoS          int
		}
		Malformed []struct{ Name, Hex, Error string }
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Frames) < 15 || len(v.Malformed) < 5 {
		t.Fatalf("only %d frames and %d malformed inputs", len(v.Frames), len(v.Malformed))
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, fv := range v.Frames {
		t.Run(fv.Name, func(t *testing.T) {
			in := unhex(fv.Hex)
			f, n, err := Parse(in, v.MaxLen)
			if err != nil || n != len(in) {
				t.Fatalf("Parse: %d of %d bytes, %v", n, len(in), err)
			}
			want := Header{Ver: Version, Op: fv.Op, Flags: fv.Flags, Seq: fv.Seq, App: fv.App}
			if f.Header != want || !bytes.Equal(f.Body, unhex(fv.BodyHex)) {
				t.Fatalf("decoded %+v body %x, want %+v body %s", f.Header, f.Body, want, fv.BodyHex)
			}
			if out := AppendFrame(nil, f.Header, f.Body); !bytes.Equal(out, in) {
				t.Fatalf("re-encoded %x", out)
			}
			switch fv.Op {
			case OpPush:
				id, payload, err := ParsePush(f.Body)
				if err != nil || strconv.FormatUint(id, 10) != fv.MsgID || hex.EncodeToString(payload) != fv.PayloadHex {
					t.Fatalf("PUSH %d %x %v", id, payload, err)
				}
				if out := AppendPush(nil, f.App, fv.QoS == 1, id, payload); !bytes.Equal(out, in) {
					t.Fatalf("AppendPush %x", out)
				}
			case OpAck:
				ids, err := ParseAck(nil, f.Body)
				got := make([]string, len(ids))
				for i, id := range ids {
					got[i] = strconv.FormatUint(id, 10)
				}
				if err != nil || !reflect.DeepEqual(got, fv.AckIDs) {
					t.Fatalf("ACK %v %v, want %v", got, err, fv.AckIDs)
				}
				if out := AppendAck(nil, f.Seq, ids); !bytes.Equal(out[:8], in[:8]) || !bytes.Equal(out[16:], in[16:]) {
					t.Fatalf("AppendAck %x", out)
				}
			case OpUpstream:
				typ, payload, err := ParseUpstream(f.Body)
				if err != nil || typ != fv.UpstreamType || hex.EncodeToString(payload) != fv.PayloadHex {
					t.Fatalf("UPSTREAM %d %x %v", typ, payload, err)
				}
				if out := AppendUpstream(nil, f.Seq, f.App, f.Flags&FlagReplyWanted != 0, typ, payload); !bytes.Equal(out, in) {
					t.Fatalf("AppendUpstream %x", out)
				}
			}
			if fv.JSON != nil {
				var got map[string]any
				if err := DecodeJSON(f.Body, &got); err != nil || !reflect.DeepEqual(got, fv.JSON) {
					t.Fatalf("JSON body %v %v, want %v", got, err, fv.JSON)
				}
			}
		})
	}
	for _, mv := range v.Malformed {
		t.Run(mv.Name, func(t *testing.T) {
			f, _, err := Parse(unhex(mv.Hex), v.MaxLen)
			if err == nil {
				switch f.Op {
				case OpAck:
					_, err = ParseAck(nil, f.Body)
				case OpPush:
					_, _, err = ParsePush(f.Body)
				}
			}
			if err == nil || Code(err) != mv.Error {
				t.Fatalf("%v (code %q), want %s", err, Code(err), mv.Error)
			}
		})
	}
}
