package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/sdk"
	"github.com/lcpush/lcpush/system"
)

// Through a real HAProxy terminating TLS and speaking PROXY v2 to the room
// (scripts/tls.sh): the Go SDK over TLS and over WSS; client addresses
// behind the one proxy are told apart by deny and by the per-IP cap; the
// trusted proxy must send a PROXY header, and no one else may.
func TestTLSThroughHAProxy(t *testing.T) {
	cfg := testkit.ConfigYAML("") + `  max_conns_per_ip: 1
  deny: [127.0.0.5/32]
  proxy:
    trusted: [127.0.0.2/32]
`
	sys := systest.Start(t, cfg, func(o *system.Options) { o.WSAddr = "127.0.0.1:0" })
	wsURL := dispatchAddr(t, sys, "u", "ws")
	front := startTLS(t, sys.RoomAddr(), wsURL[len("ws://"):len(wsURL)-len("/v1/ws")])
	pem, err := os.ReadFile(front.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in " + front.CA)
	}
	_, wssPort, _ := net.SplitHostPort(front.WSS)

	t.Run("sdk", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			tr   sdk.Transport
			addr string
		}{
			{"tls", sdk.TransportTLS, front.TLS},
			{"wss", sdk.TransportWSS, "wss://localhost:" + wssPort + "/v1/ws"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				uid := "sdk-" + tc.name
				c, err := sdk.New(sdk.Config{
					Addrs: []string{tc.addr}, Transport: tc.tr, RootCAs: roots, ServerName: "localhost",
					App: 1, UID: uid, Token: testkit.Token(1, uid), Heartbeat: 10 * time.Second,
					BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.Connect(ctx); err != nil {
					t.Fatalf("connect over %s: %v", tc.name, err)
				}
				t.Cleanup(func() { c.Close() })
				testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{uid}, "over "+tc.name, 1)
				select {
				case m := <-c.Messages():
					if string(m.Payload) != "over "+tc.name {
						t.Fatalf("message %q", m.Payload)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no message")
				}
			})
		}
	})

	// dialTLS opens a TLS connection to the TLS frontend from src.
	dialTLS := func(t *testing.T, src string) *testkit.Conn {
		d := &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: testkit.Timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}},
			Config:    &tls.Config{RootCAs: roots, ServerName: "localhost"},
		}
		c, err := d.Dial("tcp", front.TLS)
		if err != nil {
			t.Fatalf("tls dial from %s: %v", src, err)
		}
		return testkit.Wrap(t, c)
	}
	login := func(c *testkit.Conn, uid string) {
		c.Auth(1, uid, testkit.Token(1, uid), 30)
		c.Expect(proto.OpAuthOK)
	}

	t.Run("addresses behind the proxy", func(t *testing.T) {
		a := dialTLS(t, "127.0.0.3")
		login(a, "ip3-a")
		// The per-IP cap (1) counts 127.0.0.3 alone, not the proxy.
		dialTLS(t, "127.0.0.3").As("second from .3").ExpectClosed(3 * time.Second)
		login(dialTLS(t, "127.0.0.4"), "ip4-a")
		// deny names one client address behind the proxy.
		dialTLS(t, "127.0.0.5").As("denied .5").ExpectClosed(3 * time.Second)
		a.Send(proto.OpPing, 0, 0, nil)
		a.Expect(proto.OpPong)
	})

	t.Run("trusted proxy without a header", func(t *testing.T) {
		c := testkit.DialFrom(t, sys.RoomAddr(), "127.0.0.2")
		c.Auth(1, "no-header", testkit.Token(1, "no-header"), 30)
		c.ExpectClosed(3 * time.Second)
	})

	t.Run("header from an untrusted peer", func(t *testing.T) {
		c := testkit.DialFrom(t, sys.RoomAddr(), "127.0.0.6")
		c.Write([]byte(fmt.Sprintf("PROXY TCP4 10.1.2.3 127.0.0.1 5555 %s\r\n", "7000")))
		c.ExpectClosed(3 * time.Second)
	})
}
