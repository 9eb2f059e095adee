package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The peers (nats-server, mosquitto) are measured with the same scenarios:
// N subscribers on one subject/topic and one publisher connection. Their
// clients here are minimal (NATS text protocol: CONNECT/SUB/PUB/MSG/PING/
// PONG; MQTT 3.1.1: CONNECT/SUBSCRIBE/PUBLISH QoS 0) and, unlike Load,
// use one reader goroutine per connection: the peers are measured server
// side, and the client goroutines live in the tool's process, not theirs.

const peerSubject = "bench"

// startPeer starts nats-server or mosquitto on a free loopback port.
func startPeer(ctx context.Context, kind, cpus string, stderr io.Writer) (*Target, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadgen-peer-")
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	t := &Target{Kind: kind, Rooms: []string{addr}, dir: dir, done: make(chan struct{})}
	var args []string
	switch kind {
	case "nats":
		args = []string{"nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(ports[0])}
	case "mqtt":
		conf := filepath.Join(dir, "mosquitto.conf")
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nmax_queued_messages 100000\nlog_dest none\n", ports[0])
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil, err
		}
		args = []string{"mosquitto", "-c", conf}
	case "centrifugo":
		if err := startCentrifugo(t, ports[0], cpus, stderr); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: unknown peer %q (nats, mqtt or centrifugo)", ErrUsage, kind)
	}
	if cpus != "" && t.cmd == nil {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	if t.cmd == nil {
		t.cmd = exec.Command(args[0], args[1:]...)
		t.cmd.Stdout, t.cmd.Stderr = io.Discard, io.Discard // nats-server logs every start and stop
	}
	if err := t.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: start %s: %v", ErrTarget, t.cmd.Path, err)
	}
	t.PID = t.cmd.Process.Pid
	go func() { _ = t.cmd.Wait(); close(t.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-t.done:
			return nil, fmt.Errorf("%w: %s exited", ErrTarget, kind)
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Stop()
			return nil, fmt.Errorf("%w: %s not listening", ErrTimeout, kind)
		}
	}
	if kind == "centrifugo" {
		return t, nil // publishes go through its HTTP API (centrifugo.go)
	}
	pub, err := dialPeer(ctx, kind, addr, "127.0.0.1", "pub", false)
	if err != nil {
		t.Stop()
		return nil, err
	}
	t.publish = pub.publish
	t.closePub = pub.close
	return t, nil
}

// peerConn is one client connection to a peer.
type peerConn struct {
	kind string
	c    net.Conn
	r    *bufio.Reader
	mu   sync.Mutex // writes (PONG from the reader, PUB from the stream)
	buf  []byte
}

func (p *peerConn) write(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.c.Write(b)
	return err
}

func (p *peerConn) close() { _ = p.c.Close() }

// publish sends payload on the subject/topic, QoS 0 / no reply.
func (p *peerConn) publish(_ context.Context, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = p.buf[:0]
	if p.kind == "nats" {
		p.buf = fmt.Appendf(p.buf, "PUB %s %d\r\n", peerSubject, len(payload))
		p.buf = append(append(p.buf, payload...), '\r', '\n')
	} else {
		rem := 2 + len(peerSubject) + len(payload)
		p.buf = appendMQTTHeader(p.buf, 0x30, rem)
		p.buf = appendMQTTString(p.buf, peerSubject)
		p.buf = append(p.buf, payload...)
	}
	_, err := p.c.Write(p.buf)
	return err
}

func appendMQTTHeader(b []byte, typ byte, rem int) []byte {
	b = append(b, typ)
	for {
		d := byte(rem % 128)
		rem /= 128
		if rem > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if rem == 0 {
			return b
		}
	}
}

func appendMQTTString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// dialPeer connects and, with sub, subscribes; it returns once the server
// confirmed (NATS: PONG after SUB; MQTT: SUBACK).
func dialPeer(ctx context.Context, kind, addr, src, id string, sub bool) (*peerConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Control: bindNoPort}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &peerConn{kind: kind, c: c, r: bufio.NewReaderSize(c, 4096)}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := p.handshake(id, sub); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s handshake: %v", ErrTarget, kind, err)
	}
	_ = c.SetDeadline(time.Time{})
	return p, nil
}

func (p *peerConn) handshake(id string, sub bool) error {
	if p.kind == "nats" {
		if _, err := p.r.ReadString('\n'); err != nil { // INFO
			return err
		}
		msg := `CONNECT {"verbose":false,"pedantic":false,"name":"` + id + "\"}\r\n"
		if sub {
			msg += "SUB " + peerSubject + " 1\r\n"
		}
		if err := p.write([]byte(msg + "PING\r\n")); err != nil {
			return err
		}
		for {
			line, err := p.r.ReadString('\n')
			if err != nil {
				return err
			}
			if line == "PONG\r\n" {
				return nil
			}
			if len(line) >= 4 && line[:4] == "-ERR" {
				return errors.New(line)
			}
		}
	}
	// MQTT 3.1.1 CONNECT: clean session, keep-alive 0 (idle forever).
	body := appendMQTTString(nil, "MQTT")
	body = append(body, 4, 0x02, 0, 0)
	body = appendMQTTString(body, id)
	pkt := append(appendMQTTHeader(nil, 0x10, len(body)), body...)
	if sub {
		sb := binary.BigEndian.AppendUint16(nil, 1)
		sb = append(appendMQTTString(sb, peerSubject), 0)
		pkt = append(append(pkt, appendMQTTHeader(nil, 0x82, len(sb))...), sb...)
	}
	if err := p.write(pkt); err != nil {
		return err
	}
	want := byte(0x20) // CONNACK
	for {
		typ, body, err := p.readMQTT()
		if err != nil {
			return err
		}
		if typ&0xF0 == 0x20 && len(body) >= 2 && body[1] != 0 {
			return fmt.Errorf("CONNACK code %d", body[1])
		}
		if typ&0xF0 == want {
			if !sub || want == 0x90 {
				return nil
			}
			want = 0x90 // SUBACK
		}
	}
}

// readMQTT reads one packet; body is valid until the next read.
func (p *peerConn) readMQTT() (byte, []byte, error) {
	typ, err := p.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	rem, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := p.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		rem += int(b&0x7F) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	if rem > 1<<20 {
		return 0, nil, errors.New("mqtt packet too large")
	}
	if cap(p.buf) < rem {
		p.buf = make([]byte, rem)
	}
	body := p.buf[:rem]
	_, err = io.ReadFull(p.r, body)
	return typ, body, err
}

// PeerLoad is N subscribers of a peer; it is a Fleet.
type PeerLoad struct {
	l      *Load // counters and histograms only
	cancel context.CancelFunc
	mu     sync.Mutex
	conn   []*peerConn
	wg     sync.WaitGroup
	stop   atomic.Bool
}

// startPeerLoad subscribes cfg.N connections at cfg.Rate, cfg.Dialers at a time.
func startPeerLoad(ctx context.Context, kind string, cfg LoadConfig) *PeerLoad {
	cfg.defaults()
	ctx, cancel := context.WithCancel(ctx)
	pl := &PeerLoad{l: &Load{cfg: cfg}, cancel: cancel}
	idx := make(chan int)
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		defer close(idx)
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate * 64))
		defer tick.Stop()
		for i := 0; i < cfg.N; i++ {
			if i%64 == 0 && i > 0 {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
			select {
			case idx <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range cfg.Dialers {
		pl.wg.Add(1)
		go func() {
			defer pl.wg.Done()
			for i := range idx {
				pl.dial(ctx, kind, i)
			}
		}()
	}
	return pl
}

func (pl *PeerLoad) dial(ctx context.Context, kind string, i int) {
	l := pl.l
	start := time.Now()
	l.dialed.Add(1)
	src := l.cfg.Sources[i%len(l.cfg.Sources)]
	var p *peerConn
	var err error
	if kind == "centrifugo" {
		p, err = dialCentrifugo(ctx, l.cfg.Rooms[0], src)
	} else {
		p, err = dialPeer(ctx, kind, l.cfg.Rooms[0], src, l.cfg.Prefix+strconv.Itoa(l.cfg.First+i), true)
	}
	if err != nil {
		l.dialErr.Add(1)
		l.lastErr.Store(err.Error())
		return
	}
	l.connected.Add(1)
	l.authed.Add(1)
	l.open.Add(1)
	l.handshake.Record(time.Since(start))
	pl.mu.Lock()
	pl.conn = append(pl.conn, p)
	pl.mu.Unlock()
	pl.wg.Add(1)
	go func() { defer pl.wg.Done(); pl.read(p) }()
}

// read counts messages until the connection ends.
func (pl *PeerLoad) read(p *peerConn) {
	l := pl.l
	defer func() {
		l.open.Add(-1)
		if !pl.stop.Load() {
			l.dropped.Add(1)
		}
	}()
	if p.kind == "centrifugo" {
		pl.readCentrifugo(p)
		return
	}
	for {
		var payload []byte
		if p.kind == "nats" {
			line, err := p.r.ReadSlice('\n')
			if err != nil {
				return
			}
			switch {
			case len(line) >= 4 && string(line[:4]) == "PING":
				if p.write([]byte("PONG\r\n")) != nil {
					return
				}
				continue
			case len(line) < 4 || string(line[:4]) != "MSG ":
				continue
			}
			// MSG <subject> <sid> <size>\r\n: the size is the last field.
			end := len(line) - 2
			sp := end
			for sp > 0 && line[sp-1] != ' ' {
				sp--
			}
			n, err := strconv.Atoi(string(line[sp:end]))
			if err != nil || n < 0 || n > 1<<20 {
				return
			}
			if cap(p.buf) < n+2 {
				p.buf = make([]byte, n+2)
			}
			if _, err := io.ReadFull(p.r, p.buf[:n+2]); err != nil {
				return
			}
			payload = p.buf[:n]
		} else {
			typ, body, err := p.readMQTT()
			if err != nil {
				return
			}
			if typ&0xF0 != 0x30 || len(body) < 2 {
				continue
			}
			tl := int(binary.BigEndian.Uint16(body))
			off := 2 + tl
			if typ&0x06 != 0 {
				off += 2 // packet id of QoS > 0
			}
			if off > len(body) {
				return
			}
			payload = body[off:]
		}
		pl.count(payload)
	}
}

func (pl *PeerLoad) count(payload []byte) {
	if len(payload) < 16 {
		pl.l.pushes.Add(1)
		return
	}
	pl.countTS(binary.BigEndian.Uint64(payload), binary.BigEndian.Uint64(payload[8:]))
}

// countTS counts one delivery sent at ts (unix nanos, 0: unknown) in round r.
func (pl *PeerLoad) countTS(ts, r uint64) {
	l := pl.l
	l.pushes.Add(1)
	if ts == 0 {
		return
	}
	lat := time.Now().UnixNano() - int64(ts)
	l.latency.Record(time.Duration(lat))
	if r > 0 && r < maxRounds {
		l.roundCount[r].Add(1)
		atomicMax(&l.roundMax[r], lat)
		atomicMinPos(&l.roundMin[r], lat)
	}
}

// Stats is the same snapshot Load gives.
func (pl *PeerLoad) Stats() Stats { return pl.l.Stats() }

// Close ends every connection and waits for the readers.
func (pl *PeerLoad) Close() error {
	pl.stop.Store(true)
	pl.l.stop.Store(true)
	pl.cancel()
	pl.mu.Lock()
	for _, p := range pl.conn {
		p.close()
	}
	pl.mu.Unlock()
	pl.wg.Wait()
	return nil
}
