package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/lcpush/lcpush/internal/testkit"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lcpush/lcpush/loadgen/naive"
)

// The test binary doubles as the tool's worker and naive server: the tests
// that spread over processes re-run it with this variable set.
const childEnv = "LOADGEN_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := Main(ctx, os.Args[1:], os.Stdout, io.Discard)
		stop()
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startNaive(t *testing.T) *naive.Server {
	t.Helper()
	return startNaiveWith(t, naive.Config{})
}

// startNaiveWith starts a naive server of cfg (app 1's demo secret when it
// has none), shut down at the test's end.
func startNaiveWith(t *testing.T, cfg naive.Config) *naive.Server {
	t.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = map[uint32][]byte{1: []byte(demoSecret)}
	}
	s, err := naive.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

func readResult(t *testing.T, out, prefix string) *Result {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(out, prefix+"*", "result.json"))
	if len(m) != 1 {
		t.Fatalf("want one %s result, got %v", prefix, m)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"report.md"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(m[0]), f)); err != nil {
			t.Error(err)
		}
	}
	return &r
}

// TestSmokeAgainstNaive is the smoke mode against the baseline server
// running in this process: idle then fanout, N=50.
func TestSmokeAgainstNaive(t *testing.T) {
	s := startNaive(t)
	out := t.TempDir()
	var stdout strings.Builder
	err := Main(context.Background(), []string{"smoke", "-quiet", "-room", s.Addr(),
		"-api", "http://" + s.HTTPAddr(), "-admin", "http://" + s.HTTPAddr(),
		"-pid", strconv.Itoa(os.Getpid()), "-out", out, "-stream-rate", "50"}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("smoke: %v\n%s", err, stdout.String())
	}
	idle := readResult(t, out, "idle-")
	if idle.Connect.Authed != 50 || idle.Idle == nil || idle.Idle.After.HeapInuse == 0 {
		t.Errorf("idle: authed %d, idle %+v", idle.Connect.Authed, idle.Idle)
	}
	fo := readResult(t, out, "fanout-")
	if fo.Fanout == nil || fo.Fanout.Complete != 3 {
		t.Fatalf("fanout rounds: %+v", fo.Fanout)
	}
	for _, r := range fo.Fanout.Rounds {
		if r.Received != 50 || r.LastMs <= 0 {
			t.Errorf("round %+v", r)
		}
	}
	st := fo.Stream
	if st == nil || st.Sent == 0 || !st.Drained || st.Delivered != st.Expected || st.Expected != 50*st.Sent {
		t.Errorf("stream: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(out, filepath.Base(filepath.Dir(mustGlob(t, out, "fanout-*/fanout.svg"))), "fanout.svg")); err != nil {
		t.Error(err)
	}
	if !strings.Contains(stdout.String(), "last client has it") {
		t.Errorf("summary missing:\n%s", stdout.String())
	}
}

func mustGlob(t *testing.T, dir, pat string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pat))
	if len(m) == 0 {
		t.Fatalf("no %s in %s", pat, dir)
	}
	return m[0]
}

// TestWorkersAndSpawnedTarget spreads 40 connections over two worker
// processes (-per-proc 20, sources 127.0.0.2 and .3) against a naive server
// the tool starts itself, and checks the merged figures.
func TestWorkersAndSpawnedTarget(t *testing.T) {
	t.Setenv(childEnv, "1")
	out := t.TempDir()
	var stdout strings.Builder
	err := Main(context.Background(), []string{"fanout", "-quiet", "-target", "naive", "-bin", os.Args[0],
		"-self-args", "", "-n", "40", "-per-proc", "20", "-rounds", "2", "-stream", "0", "-out", out},
		&stdout, io.Discard)
	if err != nil {
		t.Fatalf("fanout: %v\n%s", err, stdout.String())
	}
	r := readResult(t, out, "fanout-naive-40")
	if r.Processes != 2 || r.Connect.Authed != 40 || r.Fanout.Complete != 2 || r.Final.Pushes != 80 {
		t.Errorf("processes %d authed %d complete %d pushes %d", r.Processes, r.Connect.Authed, r.Fanout.Complete, r.Final.Pushes)
	}
	if r.Target.PID == 0 {
		t.Error("spawned target has no pid")
	}
}

// TestLoadHeartbeatAndAck checks PING at the negotiated interval and the
// batched ACK of QoS 1 pushes, with the client engine used directly.
func TestLoadHeartbeatAndAck(t *testing.T) {
	s, err := naive.New(naive.Config{Secrets: map[uint32][]byte{1: []byte(demoSecret)}, HB: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	l, err := StartLoad(context.Background(), LoadConfig{Rooms: []string{s.Addr()}, N: 3, App: 1, Secret: demoSecret, HB: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testkit.WaitFor(t, "condition", 10*time.Second, func() bool { return l.Stats().Authed == 3 })
	tg := &Target{API: "http://" + s.HTTPAddr(), App: 1, APIKey: "x"}
	if err := tg.Broadcast(context.Background(), payload(32, time.Now(), 7), 1); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "condition", 10*time.Second, func() bool { st := l.Stats(); return st.Pongs >= 3 && st.Acked == 3 })
	st := l.Stats()
	if st.Round(7).Count != 3 || st.Latency.Count() != 3 || st.Handshake.Count() != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestBadTokenCounted(t *testing.T) {
	s := startNaive(t)
	l, err := StartLoad(context.Background(), LoadConfig{Rooms: []string{s.Addr()}, N: 2, App: 1, Secret: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testkit.WaitFor(t, "condition", 10*time.Second, func() bool { return l.Stats().AuthErrors == 2 })
	if l.Stats().Authed != 0 {
		t.Error("authed with a bad secret")
	}
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7000", true}, {"127.0.0.5:1", true}, {"[::1]:7000", true}, {"localhost:80", true},
		{"10.0.0.1:7000", false}, {"example.com:7000", false}, {"0.0.0.0:7000", false}, {"7000", false},
	}
	for _, tc := range tests {
		err := checkLoopback(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.addr, err)
		}
	}
	if _, err := StartLoad(context.Background(), LoadConfig{Rooms: []string{"192.168.1.1:7000"}, N: 1}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("StartLoad to a remote address: %v", err)
	}
	if err := Main(context.Background(), []string{"idle", "-room", "127.0.0.1:1", "-api", "http://8.8.8.8"}, io.Discard, io.Discard); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Main with a remote API: %v", err)
	}
}

func TestHist(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	s := h.Snapshot()
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}}
	for _, tc := range tests {
		got := s.Quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d < -0.04 || d > 0.04 {
			t.Errorf("q%.2f = %v, want ~%v", tc.q, got, tc.want)
		}
	}
	if s.Merge(s).Count() != 2000 || s.Merge(s).Sub(s).Count() != 1000 {
		t.Error("merge/sub")
	}
	for v := int64(0); v < 1<<40; v = v*3 + 1 {
		if i := histIndex(v); i < 0 || i >= histBuckets || histIndex(histValue(i)) != i {
			t.Fatalf("index %d of %d round-trips wrong", i, v)
		}
	}
}

func BenchmarkOnTrafficPush(b *testing.B) {
	// decoding cost of one read holding 16 pushes, the client's hot path
	l := &Load{cfg: LoadConfig{MaxFrame: 1 << 20}}
	lp := &loop{l: l}
	st := &conn{authed: true}
	var buf []byte
	for i := 0; i < 16; i++ {
		buf = append(buf, payloadFrame(uint64(i))...)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	now := time.Now()
	for i := 0; i < b.N; i++ {
		used := 0
		lp.acks = lp.acks[:0]
		for used < len(buf) {
			f, n, _ := parseFrame(buf[used:])
			used += n
			l.frame(st, f, now, lp)
		}
	}
}
