package push

import (
	"errors"
	"slices"
	"testing"
)

func TestWSURL(t *testing.T) {
	tests := []struct {
		scheme, in, want string // want "" = error
	}{
		{"ws", "203.0.113.7:7001", "ws://203.0.113.7:7001/v1/ws"},
		{"ws", "ws://203.0.113.7:7001", "ws://203.0.113.7:7001/v1/ws"},
		{"ws", "ws://203.0.113.7:7001/", "ws://203.0.113.7:7001/v1/ws"},
		{"ws", "ws://push.example.com:7001/v1/ws", "ws://push.example.com:7001/v1/ws"},
		{"ws", "WS://push.example.com:7001/v1/ws", "ws://push.example.com:7001/v1/ws"},
		{"ws", "ws://push.example.com/v1/ws", "ws://push.example.com:80/v1/ws"},
		{"ws", "[2001:db8::1]:7001", "ws://[2001:db8::1]:7001/v1/ws"},
		{"ws", "ws://[2001:db8::1]/v1/ws", "ws://[2001:db8::1]:80/v1/ws"},
		{"wss", "push.example.com:443", "wss://push.example.com:443/v1/ws"},
		{"wss", "wss://push.example.com/v1/ws", "wss://push.example.com:443/v1/ws"},
		{"wss", "wss://push.example.com:8443", "wss://push.example.com:8443/v1/ws"},
		{"ws", "wss://push.example.com:443/v1/ws", ""}, // scheme mismatch
		{"wss", "ws://push.example.com:80/v1/ws", ""},
		{"ws", "http://push.example.com:80/v1/ws", ""},
		{"ws", "ws://push.example.com:7001/other", ""},
		{"ws", "ws://push.example.com:7001/v1/ws?x=1", ""},
		{"ws", "ws://u:p@push.example.com:7001/v1/ws", ""},
		{"ws", "ws://push.example.com:7001/v1/ws#f", ""},
		{"ws", "ws://:7001/v1/ws", ""},
		{"ws", "push.example.com", ""}, // no port
		{"ws", "push.example.com:0", ""},
		{"ws", "push.example.com:70000", ""},
		{"ws", "", ""},
		{"tcp", "push.example.com:7000", ""},
	}
	for _, tc := range tests {
		got, err := WSURL(tc.scheme, tc.in)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrBadAddr) {
				t.Errorf("WSURL(%s, %q) = %q, %v; want ErrBadAddr", tc.scheme, tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("WSURL(%s, %q) = %q, %v; want %q", tc.scheme, tc.in, got, err, tc.want)
		}
		if hp := HostPort(got); CheckHostPort(hp) != nil {
			t.Errorf("HostPort(%q) = %q, not host:port", got, hp)
		}
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:7000":                    "10.0.0.1:7000",
		"ws://10.0.0.1:7001/v1/ws":         "10.0.0.1:7001",
		"wss://push.example.com:443/v1/ws": "push.example.com:443",
		"wss://push.example.com/v1/ws":     "push.example.com:443",
		"ws://push.example.com":            "push.example.com:80",
		"WS://push.example.com?x#y":        "push.example.com:80",
		"ws://[2001:db8::1]/v1/ws":         "[2001:db8::1]:80",
		"ws://[2001:db8::1]:7001/v1/ws":    "[2001:db8::1]:7001",
		"ws://u@h:1/v1/ws":                 "h:1",
	} {
		if got := HostPort(in); got != want {
			t.Errorf("HostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckHostPort(t *testing.T) {
	for in, ok := range map[string]bool{
		"10.0.0.1:7000": true, "h:1": true, "[::1]:443": true,
		"h": false, ":7000": false, "h:": false, "h:0": false, "h:x": false, "": false,
	} {
		if err := CheckHostPort(in); (err == nil) != ok {
			t.Errorf("CheckHostPort(%q) = %v, want ok %v", in, err, ok)
		}
	}
}

func TestTransportAddrs(t *testing.T) {
	m := Member{Addrs: []string{"a:1"}, TLSAddrs: []string{"b:2"}, WSAddrs: []string{"ws://c:3/v1/ws"}, WSSAddrs: []string{"wss://d:4/v1/ws"}}
	want := map[string][]string{
		TransportTCP: m.Addrs, TransportTLS: m.TLSAddrs, TransportWS: m.WSAddrs, TransportWSS: m.WSSAddrs, "quic": nil,
	}
	for tr, w := range want {
		if got := m.TransportAddrs(tr); !slices.Equal(got, w) {
			t.Errorf("TransportAddrs(%s) = %v, want %v", tr, got, w)
		}
	}
	if len(Transports) != 4 || Transports[0] != TransportTCP {
		t.Fatalf("Transports = %v", Transports)
	}
}
