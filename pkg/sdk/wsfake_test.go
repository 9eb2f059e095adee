package sdk

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/lcpush/lcpush/pkg/proto"
)

// wsServerConn is the fake room's WebSocket side: it upgrades the
// connection (at WSPath, selecting WSSubprotocol), then reads each binary
// message as the next bytes of a stream, so the fake server's frame
// decoder works unchanged, and writes each Write (one whole frame, as
// fakeConn.send does) as one binary message. It records what the client
// did: the subprotocols offered, pongs, its close frame, and messages that
// were not exactly one frame.
type wsServerConn struct {
	net.Conn
	br  *bufio.Reader
	rd  wsutil.Reader
	cur bytes.Reader // the rest of the message being read

	wmu sync.Mutex

	mu        sync.Mutex
	uri       string
	offered   []string
	selected  string
	origin    bool
	pongs     []string
	closeCode int // the client's close frame, 0 before it

	messages atomic.Int32
	bad      atomic.Int32 // binary messages that were not exactly one frame, text messages
}

func newWSServerConn(conn net.Conn) *wsServerConn {
	return &wsServerConn{Conn: conn}
}

// upgrade serves the upgrade request; false if it was refused.
func (c *wsServerConn) upgrade() bool {
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			c.mu.Lock()
			c.uri = string(uri)
			c.mu.Unlock()
			if string(uri) != WSPath {
				return ws.RejectConnectionError(ws.RejectionStatus(404))
			}
			return nil
		},
		OnHeader: func(key, _ []byte) error {
			if bytes.EqualFold(key, []byte("Origin")) {
				c.mu.Lock()
				c.origin = true
				c.mu.Unlock()
			}
			return nil
		},
		Protocol: func(p []byte) bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.offered = append(c.offered, string(p))
			return string(p) == WSSubprotocol
		},
	}
	hs, err := u.Upgrade(c.Conn)
	if err != nil {
		return false
	}
	c.mu.Lock()
	c.selected = hs.Protocol
	c.mu.Unlock()
	c.br = bufio.NewReader(c.Conn)
	c.rd = wsutil.Reader{Source: c.br, State: ws.StateServerSide} // refuses unmasked frames
	return true
}

func (c *wsServerConn) Read(p []byte) (int, error) {
	for c.cur.Len() == 0 {
		msg, err := c.readMessage()
		if err != nil {
			return 0, err
		}
		c.messages.Add(1)
		if _, n, err := proto.Parse(msg, 1<<30); err != nil || n == 0 || n != len(msg) {
			c.bad.Add(1)
		}
		c.cur.Reset(msg)
	}
	return c.cur.Read(p)
}

func (c *wsServerConn) readMessage() ([]byte, error) {
	for {
		hdr, err := c.rd.NextFrame()
		if err != nil {
			return nil, err
		}
		switch hdr.OpCode {
		case ws.OpPong:
			b, err := io.ReadAll(&c.rd)
			if err != nil && hdr.Length > 0 {
				return nil, err
			}
			c.mu.Lock()
			c.pongs = append(c.pongs, string(b))
			c.mu.Unlock()
			continue
		case ws.OpClose:
			b, _ := io.ReadAll(&c.rd)
			code, _ := ws.ParseCloseFrameData(b)
			c.mu.Lock()
			c.closeCode = int(code)
			c.mu.Unlock()
			c.sendClose(code, "")
			return nil, io.EOF
		case ws.OpPing:
			c.wmu.Lock()
			err := wsutil.ControlHandler{Src: &c.rd, Dst: c.Conn, State: ws.StateServerSide, DisableSrcCiphering: true}.Handle(hdr)
			c.wmu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		case ws.OpText:
			c.bad.Add(1)
		}
		if hdr.Length == 0 && hdr.Fin {
			_ = c.rd.Discard()
			return []byte{}, nil
		}
		return io.ReadAll(&c.rd)
	}
}

// Write sends p as one binary message.
func (c *wsServerConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := wsutil.WriteServerBinary(c.Conn, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsServerConn) sendFrame(f ws.Frame) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = ws.WriteFrame(c.Conn, f)
}

func (c *wsServerConn) sendClose(code ws.StatusCode, reason string) {
	c.sendFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}

func (c *wsServerConn) sendPing(payload string) {
	c.sendFrame(ws.NewPingFrame([]byte(payload)))
}

func (c *wsServerConn) sendText(payload string) {
	c.sendFrame(ws.NewTextFrame([]byte(payload)))
}

func (c *wsServerConn) gotPongs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.pongs...)
}

func (c *wsServerConn) clientClose() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

// testPKI is a self-signed CA and a server certificate it signed, for the
// names lcpush.test and 127.0.0.1.
type testPKI struct {
	ca, leaf *x509.Certificate
	pool     *x509.CertPool
	cert     tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lcpush test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "lcpush.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"lcpush.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{
		ca: ca, leaf: leaf, pool: pool,
		cert: tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key, Leaf: leaf},
	}
}

// serverConfig is the fake server's TLS config; it records the SNI of each
// ClientHello in sni.
func (p *testPKI) serverConfig(sni *sniLog) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert},
		MinVersion:   tls.VersionTLS12,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if sni != nil {
				sni.add(h.ServerName)
			}
			return nil, nil
		},
	}
}

type sniLog struct {
	mu    sync.Mutex
	names []string
}

func (l *sniLog) add(n string) {
	l.mu.Lock()
	l.names = append(l.names, n)
	l.mu.Unlock()
}

func (l *sniLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.names...)
}
