package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gobwas/ws"
)

// Centrifugo v6 as a peer (-target centrifugo): started on a free loopback
// port with a generated configuration (client.insecure: anonymous
// connections that may subscribe to any channel; the HTTP API with a key),
// N WebSocket clients at /connection/websocket speaking its JSON protocol
// (connect, then subscribe to one channel; pushes arrive as
// {"push":{"channel":...,"pub":{"data":...}}}, several per message one a
// line; the server's ping is an empty {} answered with {}), and each
// broadcast one POST /api/publish with X-API-Key. Like the other peers'
// clients these use a reader goroutine per connection (in the tool's
// process, not the server's).

const (
	centrifugoChannel = "bench"
	centrifugoAPIKey  = "loadgen-bench-api-key"
	centrifugoPath    = "/connection/websocket"
)

// centrifugoBin finds the centrifugo binary: PATH, then ~/go/bin (go install).
func centrifugoBin() (string, error) {
	if p, err := exec.LookPath("centrifugo"); err == nil {
		return p, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "centrifugo")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: centrifugo not found on PATH or in ~/go/bin (go install github.com/centrifugal/centrifugo/v6@v6.9.1)", ErrTarget)
}

// centrifugoConfig is the generated v6 configuration (JSON).
func centrifugoConfig(port int) string {
	return fmt.Sprintf(`{
  "http_server": {"address": "127.0.0.1", "port": %d},
  "log": {"level": "error"},
  "client": {"insecure": true, "allowed_origins": ["*"]},
  "http_api": {"key": %q}
}
`, port, centrifugoAPIKey)
}

func startCentrifugo(t *Target, port int, cpus string, stderr io.Writer) error {
	bin, err := centrifugoBin()
	if err != nil {
		return err
	}
	conf := filepath.Join(t.dir, "centrifugo.json")
	if err := os.WriteFile(conf, []byte(centrifugoConfig(port)), 0o600); err != nil {
		return err
	}
	args := []string{bin, "--config", conf}
	if cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	t.cmd = exec.Command(args[0], args[1:]...)
	t.cmd.Stdout, t.cmd.Stderr = io.Discard, stderr // log level error
	t.cmd.Dir = t.dir
	t.API, t.APIKey = "http://"+t.Rooms[0], centrifugoAPIKey
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}}
	t.publish = func(ctx context.Context, payload []byte) error { return centrifugoPublish(ctx, hc, t.API, payload) }
	t.closePub = hc.CloseIdleConnections
	return nil
}

// centrifugoData is the publication's data for payload (payload(): send
// time, round, then letters): {"t":unixnanos,"r":round,"p":"letters"},
// about as long as payload.
func centrifugoData(b, payload []byte) []byte {
	var ts, round uint64
	if len(payload) >= 16 {
		ts, round = binary.BigEndian.Uint64(payload), binary.BigEndian.Uint64(payload[8:])
	}
	b = append(b, `{"t":`...)
	b = strconv.AppendUint(b, ts, 10)
	b = append(b, `,"r":`...)
	b = strconv.AppendUint(b, round, 10)
	b = append(b, `,"p":"`...)
	for _, c := range payload[min(16, len(payload)):] {
		if c >= 'a' && c <= 'z' {
			b = append(b, c)
		}
	}
	return append(b, `"}`...)
}

// centrifugoPublish is one POST /api/publish.
func centrifugoPublish(ctx context.Context, hc *http.Client, api string, payload []byte) error {
	body := append([]byte(`{"channel":"`+centrifugoChannel+`","data":`), centrifugoData(nil, payload)...)
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", centrifugoAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: centrifugo publish: %v", ErrTarget, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || bytes.Contains(msg, []byte(`"error"`)) {
		return fmt.Errorf("%w: centrifugo publish: %s %s", ErrTarget, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// dialCentrifugo opens a WebSocket to addr, connects and subscribes; it
// returns once the subscribe reply came.
func dialCentrifugo(ctx context.Context, addr, src string) (*peerConn, error) {
	nd := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Control: bindNoPort}
	d := ws.Dialer{Timeout: 10 * time.Second, NetDial: nd.DialContext}
	c, br, _, err := d.Dial(ctx, "ws://"+addr+centrifugoPath)
	if err != nil {
		return nil, fmt.Errorf("%w: centrifugo websocket: %v", ErrTarget, err)
	}
	p := &peerConn{kind: "centrifugo", c: c, r: br}
	if p.r == nil {
		p.r = bufio.NewReaderSize(c, 4096)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cmds := []byte(`{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + centrifugoChannel + `"}}`)
	if err := p.write(appendWSMasked(nil, ws.OpText, cmds)); err != nil {
		c.Close()
		return nil, err
	}
	for done := false; !done; {
		msg, err := p.readWS()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: centrifugo handshake: %v", ErrTarget, err)
		}
		for line := range bytes.SplitSeq(msg, []byte("\n")) {
			switch {
			case bytes.Contains(line, []byte(`"error"`)):
				c.Close()
				return nil, fmt.Errorf("%w: centrifugo handshake: %s", ErrTarget, line)
			case bytes.HasPrefix(line, []byte(`{"id":2`)):
				done = true
			}
		}
	}
	_ = c.SetDeadline(time.Time{})
	return p, nil
}

var errWSClosed = errors.New("websocket closed by the server")

// readWS returns the next text or binary message (valid until the next
// read), answering pings on the way.
func (p *peerConn) readWS() ([]byte, error) {
	for {
		h, err := ws.ReadHeader(p.r)
		if err != nil {
			return nil, err
		}
		if h.Length > 1<<20 {
			return nil, errors.New("websocket message too large")
		}
		n := int(h.Length)
		if cap(p.buf) < n {
			p.buf = make([]byte, n)
		}
		body := p.buf[:n]
		if _, err := io.ReadFull(p.r, body); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(body, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			return body, nil
		case ws.OpPing:
			if err := p.write(appendWSMasked(nil, ws.OpPong, body)); err != nil {
				return nil, err
			}
		case ws.OpClose:
			return nil, errWSClosed
		}
	}
}

var centrifugoPong = appendWSMasked(nil, ws.OpText, []byte("{}"))

// readCentrifugo counts the publications of a subscribed connection
// until it ends; it answers the server's {} pings.
func (pl *PeerLoad) readCentrifugo(p *peerConn) {
	for {
		msg, err := p.readWS()
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(msg, []byte("\n")) {
			if len(line) == 2 && line[0] == '{' && line[1] == '}' {
				pl.l.pings.Add(1) // the server's pings, answered
				if p.write(centrifugoPong) != nil {
					return
				}
				continue
			}
			if !bytes.Contains(line, []byte(`"push"`)) || !bytes.Contains(line, []byte(`"pub"`)) {
				continue
			}
			pl.countTS(jsonUint(line, `"t":`), jsonUint(line, `"r":`))
		}
	}
}

// jsonUint is the unsigned number after key in line (0 when absent).
func jsonUint(line []byte, key string) uint64 {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0
	}
	var v uint64
	for _, c := range line[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint64(c-'0')
	}
	return v
}
