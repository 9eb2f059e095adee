package system_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/system"
)

// clientStream turns a WebSocket client connection into the protocol's
// byte stream for testkit.Conn: each Write is one binary message, Read
// returns the payloads of the server's binary messages (wsutil answers its
// control frames).
type clientStream struct {
	net.Conn
	rest []byte
}

func (c *clientStream) Read(p []byte) (int, error) {
	for len(c.rest) == 0 {
		msg, op, err := wsutil.ReadServerData(c.Conn)
		if err != nil {
			return 0, err
		}
		if op == ws.OpBinary {
			c.rest = msg
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *clientStream) Write(p []byte) (int, error) {
	if err := wsutil.WriteClientBinary(c.Conn, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// TestWebSocketEndToEnd: with WSAddr set and no PublicWS, the room serves
// WebSocket and announces its bound address; the dispatcher hands it out
// for transport=ws, and a WebSocket client logs in there and gets a push
// sent through the Center API.
func TestWebSocketEndToEnd(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""), func(o *system.Options) { o.WSAddr = "127.0.0.1:0" })
	if sys.RoomWSAddr() == "" {
		t.Fatal("no WebSocket address")
	}
	q := url.Values{"uid": {"wsuser"}, "transport": {"ws"}}
	resp, err := http.Get("http://" + sys.DispatchAddr() + "/v1/dispatch?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Addrs []string `json:"addrs"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	want := "ws://" + sys.RoomWSAddr() + "/v1/ws"
	if err != nil || len(ans.Addrs) != 1 || ans.Addrs[0] != want {
		t.Fatalf("dispatch ws: %v %v, want [%s]", ans.Addrs, err, want)
	}

	nc, br, hs, err := ws.Dialer{Protocols: []string{"lcpush.v1"}}.Dial(context.Background(), ans.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if hs.Protocol != "lcpush.v1" {
		t.Fatalf("subprotocol %q", hs.Protocol)
	}
	if br != nil {
		t.Fatal("server sent data before the client spoke")
	}
	c := testkit.Wrap(t, &clientStream{Conn: nc})
	c.Login(1, "wsuser", testkit.Token(1, "wsuser"), 30)
	testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{"wsuser"}, "over websocket", 1)
	id := c.ExpectPushText(1, "over websocket")
	c.Ack(id)
	c.ExpectQuiet(0)
}
