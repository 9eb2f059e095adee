package rpc

// Benchmarks of a small echo call (16-byte request, 16-byte reply) through
// three designs, all against servers in a child process so that allocs/op
// counts the client side only:
//
//   mux:    this package, over 1 or 4 connections;
//   netrpc: Go's net/rpc (gob) over one connection, which multiplexes too;
//   pool:   the old design, a pool of N connections that each carry one
//           call at a time (write, wait for the reply, give the connection
//           back), implemented below.
//
// Run: go test -run='^$' -bench=BenchmarkEcho -benchtime=2s ./pkg/rpc/

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const benchServerEnv = "LCPUSH_RPC_BENCH_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) != "" {
		if err := serveBench(); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	stopBenchServer()
	os.Exit(code)
}

// EchoService is the net/rpc service of the benchmark.
type EchoService struct{}

// Echo replies with its argument.
func (EchoService) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

// serveBench is the child process: it serves the three designs on loopback,
// prints their addresses and runs until its stdin closes.
func serveBench() error {
	srv, _ := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	srv.Handle(mEcho, func(_ context.Context, req []byte, rep *Reply) error {
		_, err := rep.Write(req)
		return err
	})
	if err := srv.Start(context.Background()); err != nil {
		return err
	}
	rs := rpc.NewServer()
	if err := rs.Register(EchoService{}); err != nil {
		return err
	}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go rs.Accept(rl)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go servePool(pl)
	fmt.Printf("%s %s %s\n", srv.Addr(), rl.Addr(), pl.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// servePool is the old design's server: one goroutine per connection,
// reading a length-prefixed request and writing the reply before reading
// the next.
func servePool(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
			var hdr [4]byte
			buf := make([]byte, 0, 64)
			for {
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					return
				}
				n := binary.BigEndian.Uint32(hdr[:])
				if n > 1<<20 {
					return
				}
				buf = buf[:n]
				if _, err := io.ReadFull(r, buf); err != nil {
					return
				}
				_, _ = w.Write(hdr[:])
				_, _ = w.Write(buf)
				if w.Flush() != nil {
					return
				}
			}
		}()
	}
}

var benchSrv struct {
	once              sync.Once
	cmd               *exec.Cmd
	stdin             io.WriteCloser
	mux, netrpc, pool string
	err               error
}

// benchServer starts the child process once per test binary.
func benchServer(b *testing.B) {
	benchSrv.once.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			benchSrv.err = err
			return
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), benchServerEnv+"=1")
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			benchSrv.err = err
			return
		}
		benchSrv.cmd, benchSrv.stdin = cmd, stdin
		line, err := bufio.NewReader(stdout).ReadString('\n')
		f := strings.Fields(line)
		if err != nil || len(f) != 3 {
			benchSrv.err = fmt.Errorf("child said %q: %v", line, err)
			return
		}
		benchSrv.mux, benchSrv.netrpc, benchSrv.pool = f[0], f[1], f[2]
	})
	if benchSrv.err != nil {
		b.Fatal(benchSrv.err)
	}
}

func stopBenchServer() {
	if benchSrv.cmd != nil {
		_ = benchSrv.stdin.Close()
		_ = benchSrv.cmd.Wait()
	}
}

// runCallers shares b.N calls among n goroutines, each with its own call
// function (made before the timer starts), and reports calls per second.
func runCallers(b *testing.B, n int, newCaller func() func() error) {
	fns := make([]func() error, n)
	for i := range fns {
		fns[i] = newCaller()
	}
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		callErr error
	)
	b.ReportAllocs()
	b.ResetTimer()
	for _, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := f(); err != nil {
					errOnce.Do(func() { callErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if callErr != nil {
		b.Fatal(callErr)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

var benchPayload = []byte("0123456789abcdef") // 16 bytes

func benchMux(b *testing.B, conns, callers int) {
	c, err := NewClient(ClientConfig{Addr: benchSrv.mux, Conns: conns, MaxInFlight: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for !c.Ready() || c.Call(ctx, mEcho, nil, nil) != nil {
		time.Sleep(time.Millisecond)
	}
	w0 := counterValue(clientIO.writes)
	defer func() {
		// Batching: requests per client write syscall.
		if w := counterValue(clientIO.writes) - w0; w > 0 {
			b.ReportMetric(float64(b.N)/w, "calls/write")
		}
	}()
	runCallers(b, callers, func() func() error {
		req := Bytes(bytes.Clone(benchPayload))
		resp := make(Bytes, 0, 64)
		return func() error {
			if err := c.Call(ctx, mEcho, &req, &resp); err != nil {
				return err
			}
			if len(resp) != len(req) {
				return errors.New("short reply")
			}
			return nil
		}
	})
}

func benchNetRPC(b *testing.B, callers int) {
	c, err := rpc.Dial("tcp", benchSrv.netrpc)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	runCallers(b, callers, func() func() error {
		req := bytes.Clone(benchPayload)
		var resp []byte
		return func() error {
			if err := c.Call("EchoService.Echo", req, &resp); err != nil {
				return err
			}
			if len(resp) != len(req) {
				return errors.New("short reply")
			}
			return nil
		}
	})
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// poolConn is one connection of the old design, with its buffers.
type poolConn struct {
	nc  net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	hdr [4]byte
	buf []byte
}

// connPool is the old design's client: a call takes a connection, writes,
// waits for the reply and gives the connection back.
type connPool struct{ free chan *poolConn }

func newConnPool(addr string, n int) (*connPool, error) {
	p := &connPool{free: make(chan *poolConn, n)}
	for i := 0; i < n; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			p.close()
			return nil, err
		}
		p.free <- &poolConn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc), buf: make([]byte, 0, 64)}
	}
	return p, nil
}

func (p *connPool) call(req []byte) (int, error) {
	pc := <-p.free
	defer func() { p.free <- pc }()
	binary.BigEndian.PutUint32(pc.hdr[:], uint32(len(req)))
	_, _ = pc.w.Write(pc.hdr[:])
	_, _ = pc.w.Write(req)
	if err := pc.w.Flush(); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(pc.r, pc.hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(pc.hdr[:])
	pc.buf = pc.buf[:n]
	_, err := io.ReadFull(pc.r, pc.buf)
	return int(n), err
}

func (p *connPool) close() {
	for {
		select {
		case pc := <-p.free:
			pc.nc.Close()
		default:
			return
		}
	}
}

func benchPool(b *testing.B, conns, callers int) {
	p, err := newConnPool(benchSrv.pool, conns)
	if err != nil {
		b.Fatal(err)
	}
	defer p.close()
	runCallers(b, callers, func() func() error {
		req := bytes.Clone(benchPayload)
		return func() error {
			n, err := p.call(req)
			if err == nil && n != len(req) {
				err = errors.New("short reply")
			}
			return err
		}
	})
}

// BenchmarkEcho compares the three designs at 1, 16 and 256 concurrent
// callers. allocs/op is the client process only (the servers run in a child
// process).
func BenchmarkEcho(b *testing.B) {
	benchServer(b)
	for _, callers := range []int{1, 16, 256} {
		for _, conns := range []int{1, 4} {
			b.Run(fmt.Sprintf("callers=%d/mux/conns=%d", callers, conns), func(b *testing.B) { benchMux(b, conns, callers) })
		}
		b.Run(fmt.Sprintf("callers=%d/netrpc/conns=1", callers), func(b *testing.B) { benchNetRPC(b, callers) })
		for _, conns := range []int{1, 4} {
			b.Run(fmt.Sprintf("callers=%d/pool/conns=%d", callers, conns), func(b *testing.B) { benchPool(b, conns, callers) })
		}
	}
}

// BenchmarkEchoInProcess is the same call with the server in this process:
// the whole round trip on one pair of cores, and allocs/op of both sides.
func BenchmarkEchoInProcess(b *testing.B) {
	srv, _ := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	srv.Handle(mEcho, func(_ context.Context, req []byte, rep *Reply) error {
		_, err := rep.Write(req)
		return err
	})
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	benchSrv.mux = srv.Addr()
	defer func() { benchSrv.mux = "" }()
	for _, callers := range []int{1, 256} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchMux(b, 2, callers) })
	}
}

// BenchmarkFrameReader decodes a stream of small frames.
func BenchmarkFrameReader(b *testing.B) {
	var stream []byte
	for i := 0; i < 1000; i++ {
		stream = append(stream, rawFrame(kindReply, uint64(i), benchPayload)...)
	}
	r := bytes.NewReader(stream)
	fr := newFrameReader(r, 32<<10, DefaultMaxFrame)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream) / 1000))
	for i := 0; b.Loop(); i++ {
		if i%1000 == 0 {
			r.Reset(stream)
			fr.r.Reset(r)
			fr.skip = 0
		}
		if _, _, err := fr.next(); err != nil {
			b.Fatal(err)
		}
	}
}
