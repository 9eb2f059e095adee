package naive

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

var secret = []byte("s3cret")

func start(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Secrets: map[uint32][]byte{1: secret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := s.Shutdown(ctx); err != nil { // idempotent
			t.Error(err)
		}
	})
	return s
}

func dialAuth(t *testing.T, s *Server, uid string, tok string) (net.Conn, *proto.Decoder, proto.Frame) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(proto.AppendJSON(nil, proto.Header{Op: proto.OpAuth, App: 1}, proto.Auth{UID: uid, Token: tok})); err != nil {
		t.Fatal(err)
	}
	d := proto.NewDecoder(c, proto.DefaultMaxLen)
	f, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	return c, d, f
}

func TestAuthPingPush(t *testing.T) {
	s := start(t)
	exp := time.Now().Add(time.Hour).Unix()
	tests := []struct {
		name   string
		secret []byte
		exp    int64
		op     uint8
	}{
		{"good token", secret, exp, proto.OpAuthOK},
		{"other secret", []byte("other"), exp, proto.OpError},
		{"expired", secret, time.Now().Add(-time.Hour).Unix(), proto.OpError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, f := dialAuth(t, s, tc.name, token.Sign(tc.secret, 1, tc.name, tc.exp))
			if f.Op != tc.op {
				t.Fatalf("op %#x, want %#x", f.Op, tc.op)
			}
		})
	}
	c, d, f := dialAuth(t, s, "u9", token.Sign(secret, 1, "u9", time.Now().Add(time.Hour).Unix()))
	if f.Op != proto.OpAuthOK {
		t.Fatalf("auth: %#x", f.Op)
	}
	if _, err := c.Write(proto.AppendHeader(nil, proto.Header{Op: proto.OpPing}, 0)); err != nil {
		t.Fatal(err)
	}
	if f, err := d.Next(); err != nil || f.Op != proto.OpPong {
		t.Fatalf("pong: %v %#x", err, f.Op)
	}
	resp, err := http.Post("http://"+s.HTTPAddr()+"/v1/apps/1/broadcast", "application/json", strings.NewReader(`{"text":"hi","qos":0}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("broadcast: %v %v", err, resp)
	}
	resp.Body.Close()
	f, err = d.Next()
	if err != nil || f.Op != proto.OpPush {
		t.Fatalf("push: %v %#x", err, f.Op)
	}
	if _, p, _ := proto.ParsePush(f.Body); string(p) != "hi" || f.Flags&proto.FlagAckRequired != 0 {
		t.Errorf("payload %q flags %d", p, f.Flags)
	}
}
