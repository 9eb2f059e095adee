package room

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
)

// The PROXY protocol in front of both listeners (proxy.go). The tests'
// trusted proxy is 127.0.0.1; 127.0.0.2 is an untrusted peer.

func proxyV1(src string) []byte {
	return []byte("PROXY TCP4 " + src + " 127.0.0.1 40000 7000\r\n")
}

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

func proxyV2(src string) []byte {
	b := append([]byte(nil), proxyV2Sig...)
	b = append(b, 0x21, 0x11, 0, 12) // v2 PROXY, TCP over IPv4, 12 bytes
	s := netip.MustParseAddr(src).As4()
	b = append(b, s[:]...)
	b = append(b, 127, 0, 0, 1)
	b = binary.BigEndian.AppendUint16(b, 40000)
	return binary.BigEndian.AppendUint16(b, 7000)
}

func proxyV2Local() []byte {
	return append(append([]byte(nil), proxyV2Sig...), 0x20, 0x00, 0, 0)
}

func startProxyEnv(t testing.TB, mod func(*config.Config)) *env {
	t.Helper()
	return startWSEnv(t, func(c *config.Config) {
		c.Room.Proxy.Trusted = []string{"127.0.0.1/32"}
		if mod != nil {
			mod(c)
		}
	})
}

// dialProxied connects from the trusted proxy and sends hdr first.
func dialProxied(t testing.TB, addr string, hdr []byte) *testkit.Conn {
	t.Helper()
	c := testkit.DialFrom(t, addr, "127.0.0.1")
	if hdr != nil {
		c.Write(hdr)
	}
	return c
}

// expectRefused checks the server closes c without sending a byte.
func expectRefused(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open")
	}
	if n != 0 {
		t.Fatalf("refused connection was sent %d bytes", n)
	}
}

func TestProxyRealAddress(t *testing.T) {
	e := startProxyEnv(t, nil)
	for _, tc := range []struct {
		name, uid, src string
		hdr            []byte
	}{
		{"v1", "pv1", "10.1.2.3", proxyV1("10.1.2.3")},
		{"v2", "pv2", "10.4.5.6", proxyV2("10.4.5.6")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialProxied(t, e.room.Addr(), tc.hdr)
			c.Login(1, tc.uid, testkit.Token(1, tc.uid), 30)
			testkit.WaitFor(t, "registered", testkit.Timeout, func() bool { return e.hasSession(tc.uid) })
			if s, _ := e.reg.session(tc.uid); s.IP != tc.src {
				t.Fatalf("session IP %q, want %q", s.IP, tc.src)
			}
			if n, _ := e.room.ips.count(netip.MustParseAddr(tc.src)); n != 1 {
				t.Fatalf("%s counted %d times", tc.src, n)
			}
		})
	}
	if n, _ := e.room.ips.count(netip.MustParseAddr("127.0.0.1")); n != 0 {
		t.Fatalf("the proxy's own address counted %d connections", n)
	}

	// A header split over several writes, then frames in the same write as
	// its last bytes.
	c := testkit.DialFrom(t, e.room.Addr(), "127.0.0.1")
	h := proxyV2("10.7.7.7")
	c.Write(h[:5])
	time.Sleep(10 * time.Millisecond)
	c.Write(h[5:17])
	time.Sleep(10 * time.Millisecond)
	body := []byte(`{"uid":"psplit","token":"` + testkit.Token(1, "psplit") + `"}`)
	c.Write(append(h[17:], proto.AppendFrame(nil, proto.Header{Op: proto.OpAuth, Seq: 1, App: 1}, body)...))
	c.Expect(proto.OpAuthOK)
	testkit.WaitFor(t, "registered", testkit.Timeout, func() bool { return e.hasSession("psplit") })
	if s, _ := e.reg.session("psplit"); s.IP != "10.7.7.7" {
		t.Fatalf("session IP %q", s.IP)
	}
}

func TestProxyWebSocket(t *testing.T) {
	e := startProxyEnv(t, nil)
	d := wsDialer(nil)
	d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext(ctx, network, addr)
		if err == nil {
			_, err = c.Write(proxyV1("10.20.30.40"))
		}
		return c, err
	}
	w, err := dialWS(t, d, e.room.WSAddr())
	if err != nil {
		t.Fatalf("websocket through the proxy: %v", err)
	}
	c := testkit.Wrap(t, w)
	c.Login(1, "pws", testkit.Token(1, "pws"), 30)
	testkit.WaitFor(t, "registered", testkit.Timeout, func() bool { return e.hasSession("pws") })
	if s, _ := e.reg.session("pws"); s.IP != "10.20.30.40" {
		t.Fatalf("session IP %q", s.IP)
	}
	// A trusted proxy that sends the upgrade without a header: closed.
	_, err = dialWS(t, wsDialer(nil), e.room.WSAddr()) // from 127.0.0.1, the default source
	if err == nil {
		t.Fatalf("upgrade without a PROXY header from a trusted proxy was accepted")
	}
}

// TestProxyPerIPLimits: the per-IP caps and the deny list apply to the
// address in the header, each client on its own, not to the proxy's.
func TestProxyPerIPLimits(t *testing.T) {
	e := startProxyEnv(t, func(c *config.Config) {
		c.Room.MaxConnsPerIP = 1
		c.Room.MaxUnauthedPerIP = 1
		c.Room.Deny = []string{"10.9.9.9"}
	})
	a := dialProxied(t, e.room.Addr(), proxyV1("10.0.0.1"))
	a.Login(1, "ipa", testkit.Token(1, "ipa"), 30)
	b := dialProxied(t, e.room.Addr(), proxyV1("10.0.0.2"))
	b.Login(1, "ipb", testkit.Token(1, "ipb"), 30)
	// A second connection of 10.0.0.1: over its cap.
	again := dialProxied(t, e.room.Addr(), proxyV2("10.0.0.1"))
	expectRefused(t, again.NetConn())
	// A denied client address is refused; its neighbour is not.
	denied := dialProxied(t, e.room.Addr(), proxyV1("10.9.9.9"))
	expectRefused(t, denied.NetConn())
	ok := dialProxied(t, e.room.Addr(), proxyV1("10.9.9.8"))
	ok.Login(1, "ipc", testkit.Token(1, "ipc"), 30)
	a.ExpectQuiet(0)
	b.ExpectQuiet(0)
	if n, _ := e.room.ips.count(netip.MustParseAddr("10.0.0.1")); n != 1 {
		t.Fatalf("10.0.0.1 counted %d", n)
	}
	// Closing gives the real address's count back.
	a.Close()
	testkit.WaitFor(t, "count released", testkit.Timeout, func() bool {
		n, _ := e.room.ips.count(netip.MustParseAddr("10.0.0.1"))
		return n == 0
	})
	a2 := dialProxied(t, e.room.Addr(), proxyV1("10.0.0.1"))
	a2.Login(1, "ipa", testkit.Token(1, "ipa"), 30)
}

func TestProxyRefusals(t *testing.T) {
	e := startProxyEnv(t, nil)
	t.Run("trusted peer without a header", func(t *testing.T) {
		c := dialProxied(t, e.room.Addr(), nil)
		c.Send(proto.OpAuth, 1, 0, []byte(`{"uid":"x","token":"`+testkit.Token(1, "x")+`"}`))
		expectRefused(t, c.NetConn())
	})
	t.Run("malformed header", func(t *testing.T) {
		c := dialProxied(t, e.room.Addr(), []byte("PROXY TCP4 nonsense\r\n"))
		expectRefused(t, c.NetConn())
	})
	for _, lis := range []struct{ name, addr string }{{"tcp", e.room.Addr()}, {"ws", e.room.WSAddr()}} {
		t.Run("header from an untrusted peer/"+lis.name, func(t *testing.T) {
			c := testkit.DialFrom(t, lis.addr, "127.0.0.2")
			c.Write(proxyV1("10.1.1.1"))
			expectRefused(t, c.NetConn())
			c2 := testkit.DialFrom(t, lis.addr, "127.0.0.2")
			c2.Write(proxyV2("10.1.1.1"))
			expectRefused(t, c2.NetConn())
		})
	}
	t.Run("untrusted peer without a header is served", func(t *testing.T) {
		c := testkit.DialFrom(t, e.room.Addr(), "127.0.0.2")
		c.Login(1, "direct", testkit.Token(1, "direct"), 30)
		testkit.WaitFor(t, "registered", testkit.Timeout, func() bool { return e.hasSession("direct") })
		if s, _ := e.reg.session("direct"); s.IP != "127.0.0.2" {
			t.Fatalf("session IP %q", s.IP)
		}
	})
	t.Run("v2 LOCAL: no session", func(t *testing.T) {
		// The earlier subtests' connections were closed at their ends; the
		// room may still be releasing them.
		testkit.WaitFor(t, "earlier connections released", testkit.Timeout, func() bool { return e.room.conns.Load() == 0 })
		const before = 0
		c := dialProxied(t, e.room.Addr(), proxyV2Local())
		c.Send(proto.OpAuth, 1, 0, []byte(`{"uid":"local","token":"`+testkit.Token(1, "local")+`"}`))
		expectRefused(t, c.NetConn())
		if e.hasSession("local") {
			t.Fatal("a LOCAL connection got a session")
		}
		c.Close()
		testkit.WaitFor(t, "caps released", testkit.Timeout, func() bool { return e.room.conns.Load() == before })
	})
	t.Run("v1 UNKNOWN: no session", func(t *testing.T) {
		c := dialProxied(t, e.room.Addr(), []byte("PROXY UNKNOWN\r\n"))
		expectRefused(t, c.NetConn())
	})
}

// TestProxyHeaderWithoutTrustedList: with room.proxy.trusted empty every
// peer is untrusted, and a PROXY header is refused on both listeners.
func TestProxyHeaderWithoutTrustedList(t *testing.T) {
	e := startWSEnv(t, nil)
	for _, addr := range []string{e.room.Addr(), e.room.WSAddr()} {
		c := testkit.Dial(t, addr)
		c.Write(proxyV1("10.1.1.1"))
		expectRefused(t, c.NetConn())
	}
	// A WebSocket upgrade is not mistaken for one.
	if _, err := dialWS(t, ws.Dialer{Timeout: testkit.Timeout}, e.room.WSAddr()); err != nil {
		t.Fatal(err)
	}
}
