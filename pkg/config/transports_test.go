package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const transportsBase = "admin_key: a\napps:\n  - id: 1\n    secret: 0123456789abcdef\n    api_key: k1\n"

// TestRoomTransportKeys: room.websocket.origins, room.websocket.cookie and
// room.proxy.trusted (docs/tls.md) parse, validate and default to off.
func TestRoomTransportKeys(t *testing.T) {
	c, err := Parse([]byte(transportsBase + `room:
  websocket:
    origins: [https://app.example.com, "http://localhost:8080"]
    cookie: lcroom
  proxy:
    trusted: [127.0.0.1/32, 10.0.0.0/8, "::1"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Room.WebSocket.Origins; len(got) != 2 || got[0] != "https://app.example.com" {
		t.Fatalf("origins %v", got)
	}
	if c.Room.WebSocket.Cookie != "lcroom" {
		t.Fatalf("cookie %q", c.Room.WebSocket.Cookie)
	}
	tr := c.Room.Proxy.TrustedProxies()
	for ip, want := range map[string]bool{"127.0.0.1": true, "10.200.1.1": true, "::1": true, "::ffff:10.0.0.1": true, "127.0.0.2": false, "192.168.1.1": false} {
		if got := tr.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("trusted %s = %v, want %v", ip, got, want)
		}
	}

	d := Defaults()
	if !d.Room.Proxy.TrustedProxies().Empty() || d.Room.WebSocket.Cookie != "" || len(d.Room.WebSocket.Origins) != 0 {
		t.Fatalf("defaults: %+v %+v", d.Room.WebSocket, d.Room.Proxy)
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"bad cidr", "room:\n  proxy:\n    trusted: [10.0.0.0/33]\n", "room.proxy.trusted"},
		{"not an address", "room:\n  proxy:\n    trusted: [proxy.example.com]\n", "room.proxy.trusted"},
		{"origin with a path", "room:\n  websocket:\n    origins: [https://a.example.com/app]\n", "room.websocket.origins"},
		{"origin without a scheme", "room:\n  websocket:\n    origins: [a.example.com]\n", "room.websocket.origins"},
		{"cookie name with a space", "room:\n  websocket:\n    cookie: \"my cookie\"\n", "room.websocket.cookie"},
		{"cookie name with =", "room:\n  websocket:\n    cookie: \"a=b\"\n", "room.websocket.cookie"},
		{"unknown key", "room:\n  websocket:\n    origin: [https://a.example.com]\n", "origin"},
	} {
		_, err := Parse([]byte(transportsBase + tc.yaml))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
}
