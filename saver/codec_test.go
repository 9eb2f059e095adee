package saver

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

func TestValueRoundTrip(t *testing.T) {
	for _, m := range []push.Message{
		{ID: 1, App: 0, QoS: 0, Expire: 0},
		{ID: 2, App: 7, QoS: 1, Expire: 1700000000, Payload: []byte("hello")},
		{ID: 3, App: 1<<32 - 1, QoS: 255, Expire: 1<<63 - 1, Payload: bytes.Repeat([]byte{0}, 70000)},
	} {
		v := appendValue(nil, &m)
		if len(v) != headerLen+len(m.Payload) {
			t.Fatalf("value of %d bytes for a %d byte payload", len(v), len(m.Payload))
		}
		got, err := decodeValue(m.ID, v)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != m.ID || got.App != m.App || got.QoS != m.QoS || got.Expire != m.Expire || !bytes.Equal(got.Payload, m.Payload) {
			t.Fatalf("round trip %+v -> %+v", m, got)
		}
		if len(m.Payload) > 0 {
			v[headerLen] ^= 0xff
			if got.Payload[0] == v[headerLen] {
				t.Fatal("decoded payload aliases the stored bytes")
			}
		}
	}
}

func TestDecodeValueRejects(t *testing.T) {
	good := appendValue(nil, &push.Message{App: 1, Expire: 5, Payload: []byte("x")})
	negative := bytes.Clone(good)
	negative[offExpire] = 0x80
	badVersion := bytes.Clone(good)
	badVersion[offVersion] = 2
	for name, v := range map[string][]byte{
		"nil":         nil,
		"short":       good[:headerLen-1],
		"bad version": badVersion,
		"negative":    negative,
	} {
		if _, err := decodeValue(1, v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// A corrupt file must not panic the saver: the decoder takes any bytes.
func FuzzDecodeValue(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendValue(nil, &push.Message{App: 3, QoS: 1, Expire: 1700000000, Payload: []byte("payload")}))
	f.Add(appendValue(nil, &push.Message{}))
	f.Add([]byte{valueVersion, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeValue(42, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if again := appendValue(nil, &m); !bytes.Equal(again, v) {
			t.Fatalf("re-encoding %x gives %x", v, again)
		}
		app, expire, err := decodeHeader(v)
		if err != nil || app != m.App || expire != m.Expire {
			t.Fatalf("header %d %d %v disagrees with %+v", app, expire, err, m)
		}
	})
}
