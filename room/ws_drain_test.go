package room

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

// A drain redirects each client to addresses of its own transport: a
// WebSocket client to WebSocket URLs, a raw TCP client to host:port; a
// transport without addresses is not told.
func TestDrainByTransport(t *testing.T) {
	e := startWSEnv(t, nil)
	tcp, _ := e.login(1, "drain-tcp")
	_, ws := wsConnect(t, e.room.WSAddr())
	ws.Login(1, "drain-ws", testkit.Token(1, "drain-ws"), 30)
	addrs := map[string][]string{"tcp": {"10.0.0.1:7000"}, "ws": {"ws://10.0.0.1:7001/v1/ws"}}
	if n := e.room.Drain(t.Context(), addrs, 1000); n != 2 {
		t.Fatalf("Drain told %d, want 2", n)
	}
	for _, tc := range []struct {
		c    *testkit.Conn
		want []string
	}{{tcp, addrs["tcp"]}, {ws, addrs["ws"]}} {
		var rd proto.Redirect
		if err := json.Unmarshal(tc.c.Expect(proto.OpRedirect).Body, &rd); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rd.Addrs, tc.want) {
			t.Fatalf("REDIRECT to %v, want %v", rd.Addrs, tc.want)
		}
	}
	// Only tcp addresses: the WebSocket client is not told.
	if n := e.room.Drain(t.Context(), map[string][]string{"tcp": {"10.0.0.1:7000"}}, 1000); n != 1 {
		t.Fatalf("Drain with tcp addresses only told %d, want 1", n)
	}
}
