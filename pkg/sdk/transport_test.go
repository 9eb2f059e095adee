package sdk

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		addr     string
		def      Transport
		want     Transport
		hostport string
		host     string
		url      string
		bad      bool
	}{
		{addr: "10.0.0.1:7000", def: TransportTCP, want: TransportTCP, hostport: "10.0.0.1:7000", host: "10.0.0.1"},
		{addr: "gw.example:7443", def: TransportTLS, want: TransportTLS, hostport: "gw.example:7443", host: "gw.example"},
		{addr: "gw.example:8080", def: TransportWS, want: TransportWS, hostport: "gw.example:8080", host: "gw.example", url: "ws://gw.example:8080/v1/ws"},
		{addr: "gw.example:8443", def: TransportWSS, want: TransportWSS, hostport: "gw.example:8443", host: "gw.example", url: "wss://gw.example:8443/v1/ws"},
		{addr: "ws://gw.example:8080/v1/ws", def: TransportTCP, want: TransportWS, hostport: "gw.example:8080", host: "gw.example", url: "ws://gw.example:8080/v1/ws"},
		{addr: "wss://gw.example/v1/ws", def: TransportTCP, want: TransportWSS, hostport: "gw.example:443", host: "gw.example", url: "wss://gw.example/v1/ws"},
		{addr: "ws://gw.example", def: TransportTCP, want: TransportWS, hostport: "gw.example:80", host: "gw.example", url: "ws://gw.example/v1/ws"},
		{addr: "WSS://[::1]:8443/custom?x=1", def: TransportTCP, want: TransportWSS, hostport: "[::1]:8443", host: "::1", url: "wss://[::1]:8443/custom?x=1"},
		{addr: "tls://gw.example:7443", def: TransportWS, want: TransportTLS, hostport: "gw.example:7443", host: "gw.example"},
		{addr: "tcp://[::1]:7000", def: TransportTLS, want: TransportTCP, hostport: "[::1]:7000", host: "::1"},
		{addr: "gw.example", def: TransportTCP, bad: true},
		{addr: "http://gw.example:80", def: TransportTCP, bad: true},
		{addr: "tcp://gw.example:7000/path", def: TransportTCP, bad: true},
		{addr: "ws://", def: TransportTCP, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			ep, err := parseAddr(tt.addr, tt.def)
			if tt.bad {
				if err == nil {
					t.Fatalf("parseAddr(%q) = %+v; want an error", tt.addr, ep)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := ""
			if ep.url != nil {
				u = ep.url.String()
			}
			if ep.transport != tt.want || ep.hostport != tt.hostport || ep.host != tt.host || u != tt.url {
				t.Fatalf("got %s %s %s %q; want %s %s %s %q", ep.transport, ep.hostport, ep.host, u, tt.want, tt.hostport, tt.host, tt.url)
			}
		})
	}
}

func TestNewValidatesTransport(t *testing.T) {
	sum := sha256.Sum256([]byte("k"))
	pin := "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"ws url address", func(c *Config) { c.Addrs = []string{"ws://127.0.0.1:1/v1/ws"} }, true},
		{"wss transport", func(c *Config) { c.Transport = TransportWSS }, true},
		{"pins", func(c *Config) {
			c.Transport = TransportTLS
			c.Pins = []string{pin, strings.TrimPrefix(pin, "sha256/")}
		}, true},
		{"pins with a wss url", func(c *Config) {
			c.Transport = TransportTLS
			c.Pins = []string{pin}
			c.Addrs = []string{"wss://127.0.0.1:1/v1/ws"}
		}, true},
		{"pins without tls", func(c *Config) { c.Pins = []string{pin} }, false},
		{"pins with a plaintext url", func(c *Config) {
			c.Transport = TransportTLS
			c.Pins = []string{pin}
			c.Addrs = []string{"ws://127.0.0.1:1/v1/ws"}
		}, false},
		{"unknown transport", func(c *Config) { c.Transport = "quic" }, false},
		{"bad address", func(c *Config) { c.Addrs = []string{"no-port"} }, false},
		{"bad scheme", func(c *Config) { c.Addrs = []string{"http://127.0.0.1:1"} }, false},
		{"bad pin", func(c *Config) { c.Transport = TransportTLS; c.Pins = []string{"sha256/abc"} }, false},
		{"pin of another hash", func(c *Config) {
			c.Transport = TransportTLS
			c.Pins = []string{"sha1/" + base64.StdEncoding.EncodeToString(sum[:20])}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("127.0.0.1:1")
			tt.mod(&cfg)
			c, err := New(cfg)
			if tt.ok != (err == nil) {
				t.Fatalf("New err %v; want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v does not wrap ErrConfig", err)
			}
			if c != nil {
				_ = c.Close()
			}
		})
	}
}

// runSession checks a whole session on srv: AUTH, a QoS 1 push delivered
// and ACKed, an upstream answered, a heartbeat answered.
func runSession(t *testing.T, srv *fakeServer, cfg Config) (*Client, *fakeConn) {
	t.Helper()
	srv.configure(func(s *fakeServer) { s.hb = 1 })
	cfg.DialTimeout = waitTimeout // TLS handshakes under -race on a loaded machine
	got := make(chan Message, 4)
	cfg.OnMessage = func(m Message) { got <- m }
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	if fc.auth.UID != "u1" || fc.auth.Token != "tok" || fc.app != 7 {
		t.Fatalf("AUTH %+v app %d", fc.auth, fc.app)
	}
	if c.HB() != time.Second || c.Room() != "room-test" {
		t.Fatalf("HB %v room %q", c.HB(), c.Room())
	}
	fc.send(proto.AppendPush(nil, 7, true, 42, []byte("hello")))
	select {
	case m := <-got:
		if m.ID != 42 || string(m.Payload) != "hello" || !m.QoS1 {
			t.Fatalf("message %+v", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no message")
	}
	testkit.WaitFor(t, "ack", waitTimeout, func() bool { return slices.Equal(fc.acked(t), []uint64{42}) })

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Upstream(ctx, 7, 3, []byte(`{"x":1}`), true) }()
	f := fc.take(t, proto.OpUpstream)
	if typ, data, err := proto.ParseUpstream(f.Body); err != nil || typ != 3 || string(data) != `{"x":1}` {
		t.Fatalf("upstream %d %q %v", typ, data, err)
	}
	fc.send(proto.AppendHeader(nil, proto.Header{Op: proto.OpUpstreamOK, Seq: f.Seq}, 0))
	if err := <-done; err != nil {
		t.Fatalf("Upstream: %v", err)
	}
	testkit.WaitFor(t, "a heartbeat", waitTimeout, func() bool { return fc.pings.Load() >= 1 })
	if c.State() != StateConnected {
		t.Fatalf("state %v after the session", c.State())
	}
	return c, fc
}

// pinOf is the pin of a certificate, computed here independently of PinOf.
func pinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	other := newTestPKI(t) // a different CA and key
	if PinOf(pki.leaf) != pinOf(pki.leaf) {
		t.Fatalf("PinOf %s; want %s", PinOf(pki.leaf), pinOf(pki.leaf))
	}
	tests := []struct {
		name       string
		roots      *x509.CertPool
		serverName string
		pins       []string
		wantSNI    string
		wantErr    func(error) bool
	}{
		{name: "roots set", roots: pki.pool},
		{name: "server name from config", roots: pki.pool, serverName: "lcpush.test", wantSNI: "lcpush.test"},
		{name: "pin of the leaf", roots: pki.pool, pins: []string{pinOf(pki.leaf)}},
		{name: "pin of the CA", roots: pki.pool, pins: []string{pinOf(pki.ca)}},
		{name: "backup pin matches", roots: pki.pool, pins: []string{pinOf(other.leaf), pinOf(pki.leaf)}},
		{name: "no roots", roots: nil, wantErr: func(err error) bool {
			var ve *tls.CertificateVerificationError
			return errors.As(err, &ve)
		}},
		{name: "roots of another CA", roots: other.pool, wantErr: func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{name: "server name mismatch", roots: pki.pool, serverName: "other.test", wantSNI: "other.test", wantErr: func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
		{name: "pin mismatch", roots: pki.pool, pins: []string{pinOf(other.leaf), pinOf(other.ca)}, wantErr: func(err error) bool {
			return errors.Is(err, ErrPinMismatch) && strings.Contains(err.Error(), pinOf(pki.leaf))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sni sniLog
			srv := newFakeServerOpts(t, fakeOpts{tls: pki.serverConfig(&sni)})
			cfg := testConfig(srv.addr())
			cfg.Transport = TransportTLS
			cfg.RootCAs = tt.roots
			cfg.ServerName = tt.serverName
			cfg.Pins = tt.pins
			if tt.wantErr == nil {
				runSession(t, srv, cfg)
			} else {
				c := newClient(t, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				err := c.Connect(ctx)
				if err == nil || !tt.wantErr(err) {
					t.Fatalf("Connect err %v", err)
				}
				if srv.auths.Load() != 0 {
					t.Fatal("AUTH sent over an unverified connection")
				}
			}
			// Go sends no SNI for an IP address: the default server name
			// 127.0.0.1 is verified against the IP SAN instead.
			if names := sni.list(); len(names) == 0 || names[0] != tt.wantSNI {
				t.Fatalf("SNI %q; want %q", names, tt.wantSNI)
			}
		})
	}
}

func TestTLSAddressURL(t *testing.T) {
	// A tls:// address is dialed with TLS whatever Transport says.
	pki := newTestPKI(t)
	srv := newFakeServerOpts(t, fakeOpts{tls: pki.serverConfig(nil)})
	cfg := testConfig("tls://" + srv.hostport())
	cfg.RootCAs = pki.pool
	runSession(t, srv, cfg)
}

func TestTLSHandshakeBounded(t *testing.T) {
	// A server that accepts TCP but never answers the ClientHello: the
	// handshake ends with the DialTimeout, or at once with a canceled ctx.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() })
		}
	}()
	tests := []struct {
		name        string
		dialTimeout time.Duration
		ctxTimeout  time.Duration
		want        error
	}{
		{"dial timeout", 200 * time.Millisecond, waitTimeout, nil},
		{"context", time.Minute, 200 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(ln.Addr().String())
			cfg.Transport = TransportTLS
			cfg.DialTimeout = tt.dialTimeout
			c := newClient(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctxTimeout)
			defer cancel()
			start := time.Now()
			err := c.Connect(ctx)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Connect err %v; want %v", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("handshake took %v", d)
			}
		})
	}
}

func TestWSSession(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name      string
		opts      fakeOpts
		transport Transport
		addr      func(*fakeServer) string
	}{
		{"ws url", fakeOpts{ws: true}, TransportTCP, (*fakeServer).addr},
		{"wss url", fakeOpts{ws: true, tls: pki.serverConfig(nil)}, TransportTCP, (*fakeServer).addr},
		{"ws transport, host:port", fakeOpts{ws: true}, TransportWS, (*fakeServer).hostport},
		{"wss transport, host:port", fakeOpts{ws: true, tls: pki.serverConfig(nil)}, TransportWSS, (*fakeServer).hostport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newFakeServerOpts(t, tt.opts)
			cfg := testConfig(tt.addr(srv))
			cfg.Transport = tt.transport
			cfg.RootCAs = pki.pool
			c, fc := runSession(t, srv, cfg)
			w := fc.ws
			w.mu.Lock()
			uri, offered, selected, origin := w.uri, w.offered, w.selected, w.origin
			w.mu.Unlock()
			if uri != WSPath || !slices.Contains(offered, WSSubprotocol) || selected != WSSubprotocol || origin {
				t.Fatalf("upgrade: uri %q offered %q selected %q origin %v", uri, offered, selected, origin)
			}
			if n := w.messages.Load(); n < 4 { // AUTH, ACK, UPSTREAM, PING
				t.Fatalf("%d messages", n)
			}
			if n := w.bad.Load(); n != 0 {
				t.Fatalf("%d messages were not exactly one frame", n)
			}
			// Close says goodbye with 1000.
			_ = c.Close()
			testkit.WaitFor(t, "client close frame", waitTimeout, func() bool { return w.clientClose() == int(ws.StatusNormalClosure) })
		})
	}
}

func TestWSPingAnswered(t *testing.T) {
	srv := newFakeServerOpts(t, fakeOpts{ws: true})
	c := newClient(t, testConfig(srv.addr()))
	connect(t, c)
	fc := srv.accept(t)
	fc.ws.sendPing("")
	fc.ws.sendPing("are you there")
	testkit.WaitFor(t, "pongs", waitTimeout, func() bool {
		return slices.Equal(fc.ws.gotPongs(), []string{"", "are you there"})
	})
	// The session goes on after the pings.
	fc.send(proto.AppendPush(nil, 7, false, 1, []byte("x")))
	select {
	case m := <-c.Messages():
		if m.ID != 1 {
			t.Fatalf("message %+v", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no message after the pings")
	}
}

func TestWSKickThenClose(t *testing.T) {
	srv := newFakeServerOpts(t, fakeOpts{ws: true})
	cfg := testConfig(srv.addr())
	kicked := make(chan int, 1)
	cfg.OnKick = func(code int, _ string) { kicked <- code }
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.send(proto.AppendJSON(nil, proto.Header{Op: proto.OpKick}, proto.Kick{Code: 1, Reason: "login_elsewhere"}))
	fc.ws.sendClose(ws.StatusNormalClosure, "")
	select {
	case code := <-kicked:
		if code != 1 {
			t.Fatalf("kick code %d", code)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no kick")
	}
	<-c.Done()
	var ke *KickError
	if err := c.Err(); !errors.As(err, &ke) || ke.Code != 1 || ke.Reason != "login_elsewhere" {
		t.Fatalf("Err() = %v", err)
	}
	srv.noConn(t, 50*time.Millisecond)
}

func TestWSErrorThenClose(t *testing.T) {
	srv := newFakeServerOpts(t, fakeOpts{ws: true})
	cfg := testConfig(srv.addr())
	cfg.NoReconnect = true
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.send(proto.AppendError(nil, 0, proto.ErrCodeRateLimited, "slow down"))
	fc.ws.sendClose(ws.StatusPolicyViolation, "rate_limited")
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("client did not stop")
	}
	err := c.Err()
	var pe *proto.Error
	var ce *CloseError
	if !errors.As(err, &pe) || pe.Code != proto.ErrCodeRateLimited || !errors.As(err, &ce) || ce.Code != 1008 || ce.Reason != "rate_limited" {
		t.Fatalf("Err() = %v; want the ERROR and the close 1008", err)
	}
	// The client echoed the close frame.
	testkit.WaitFor(t, "close echo", waitTimeout, func() bool { return fc.ws.clientClose() == 1008 })
}

func TestWSAuthErrorThenClose(t *testing.T) {
	srv := newFakeServerOpts(t, fakeOpts{ws: true})
	srv.setAuth(func(a proto.Auth, h proto.Header) []byte {
		return proto.AppendError(nil, h.Seq, proto.ErrCodeBadToken, "expired")
	})
	c := newClient(t, testConfig(srv.addr()))
	pe := protoErr(c.Connect(context.Background()))
	if pe == nil || pe.Code != proto.ErrCodeBadToken {
		t.Fatalf("Connect err %v; want bad_token", pe)
	}
}

func TestWSMalformedMessageReconnects(t *testing.T) {
	ping := proto.AppendHeader(nil, proto.Header{Op: proto.OpPong}, 0)
	tests := []struct {
		name string
		send func(fc *fakeConn)
	}{
		{"two frames in one message", func(fc *fakeConn) { fc.send(append(append([]byte(nil), ping...), ping...)) }},
		{"half a frame", func(fc *fakeConn) { fc.send(ping[:8]) }},
		{"empty message", func(fc *fakeConn) { fc.send(nil) }},
		{"text message", func(fc *fakeConn) { fc.ws.sendText(string(ping)) }},
		{"oversize frame", func(fc *fakeConn) {
			big := proto.AppendHeader(nil, proto.Header{Op: proto.OpPush}, maxFrameIn)
			fc.send(append(big, make([]byte, maxFrameIn)...))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServerOpts(t, fakeOpts{ws: true})
			c := newClient(t, testConfig(srv.addr()))
			connect(t, c)
			fc := srv.accept(t)
			tt.send(fc)
			select {
			case <-fc.closed:
			case <-time.After(waitTimeout):
				t.Fatal("client kept a connection that sent a malformed message")
			}
			srv.accept(t) // and reconnected
		})
	}
}

func TestWSWrongPath(t *testing.T) {
	srv := newFakeServerOpts(t, fakeOpts{ws: true})
	c := newClient(t, testConfig("ws://"+srv.hostport()+"/elsewhere"))
	err := c.Connect(context.Background())
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != http.StatusNotFound {
		t.Fatalf("Connect err %v; want status 404", err)
	}
}

func TestDispatchTransport(t *testing.T) {
	bad := closedAddr(t)
	srv := newFakeServerOpts(t, fakeOpts{ws: true})
	d := &dispatcher{addrs: []string{"ws://" + bad + WSPath, srv.addr()}, ttl: 60}
	hs := httptest.NewServer(d)
	defer hs.Close()
	cfg := testConfig()
	cfg.DispatchURL = hs.URL
	cfg.Transport = TransportWS
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	q := d.calls()
	if len(q) != 1 || q[0].Get("transport") != "ws" {
		t.Fatalf("dispatch calls %v; want transport=ws", q)
	}
	// The failed list names host:port, not the URL.
	fc.Close()
	srv.accept(t)
	q = d.calls()
	if len(q) != 2 || q[1].Get("failed") != bad || q[1].Get("transport") != "ws" {
		t.Fatalf("second dispatch call %v; want failed=%s", q[len(q)-1], bad)
	}
	// The default transport is named too.
	d2 := &dispatcher{addrs: []string{newFakeServer(t).addr()}, ttl: 60}
	hs2 := httptest.NewServer(d2)
	defer hs2.Close()
	cfg2 := testConfig()
	cfg2.DispatchURL = hs2.URL
	c2 := newClient(t, cfg2)
	connect(t, c2)
	if q := d2.calls(); len(q) != 1 || !slices.Equal(q[0]["transport"], []string{"tcp"}) {
		t.Fatalf("dispatch calls %v; want transport=tcp", q)
	}
}

func TestTLSPinnedReconnectResumes(t *testing.T) {
	// A reconnect resumes the TLS session (the ticket of the first one);
	// the pin check must still see the verified chain then.
	pki := newTestPKI(t)
	srv := newFakeServerOpts(t, fakeOpts{tls: pki.serverConfig(nil)})
	cfg := testConfig(srv.addr())
	cfg.Transport = TransportTLS
	cfg.RootCAs = pki.pool
	cfg.Pins = []string{PinOf(pki.ca)}
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.send(proto.AppendPush(nil, 7, false, 1, nil)) // the client reads the session ticket with it
	recvMsg(t, c)
	fc.Close()
	fc2 := srv.accept(t)
	if cs := fc2.Conn.(*tls.Conn).ConnectionState(); !cs.DidResume {
		t.Fatal("the reconnect did not resume the TLS session")
	}
	fc2.send(proto.AppendPush(nil, 7, false, 2, nil))
	if m := recvMsg(t, c); m.ID != 2 {
		t.Fatalf("message %+v", m)
	}
}

func recvMsg(t *testing.T, c *Client) Message {
	t.Helper()
	select {
	case m := <-c.Messages():
		return m
	case <-time.After(waitTimeout):
		t.Fatal("no message")
		return Message{}
	}
}

func TestPinnedClientRefusesPlaintextRedirect(t *testing.T) {
	pki := newTestPKI(t)
	srv := newFakeServerOpts(t, fakeOpts{tls: pki.serverConfig(nil)})
	plain := newFakeServer(t)
	cfg := testConfig(srv.addr())
	cfg.Transport = TransportTLS
	cfg.RootCAs = pki.pool
	cfg.Pins = []string{PinOf(pki.leaf)}
	c := newClient(t, cfg)
	connect(t, c)
	fc := srv.accept(t)
	fc.send(proto.AppendJSON(nil, proto.Header{Op: proto.OpRedirect}, proto.Redirect{Addrs: []string{"tcp://" + plain.addr()}}))
	srv.accept(t) // back on the TLS gateway
	if n := plain.auths.Load(); n != 0 {
		t.Fatalf("%d AUTHs in plaintext", n)
	}
}
