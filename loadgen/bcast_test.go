package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

// roundFrame is a QoS 1 push of round r, sent a millisecond ago.
func roundFrame(id uint64, r int) []byte {
	return proto.AppendPush(nil, 1, true, id, payload(64, time.Now().Add(-time.Millisecond), r))
}

// A round counts each connection once: a redelivery is a dup, and the
// merged stats keep the earliest first receive and the latest last one.
func TestRoundsDistinct(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rounds []int // rounds one connection receives, in order
		count  map[int]int64
		dups   int64
	}{
		{"once each", []int{1, 2, 3}, map[int]int64{1: 1, 2: 1, 3: 1}, 0},
		{"redelivered", []int{1, 2, 1, 2, 2}, map[int]int64{1: 1, 2: 1}, 3},
		{"past a word", []int{63, 64, 65, 4000, 64}, map[int]int64{63: 1, 64: 1, 65: 1, 4000: 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Load{cfg: LoadConfig{MaxFrame: 1 << 20}}
			lp := &loop{l: l}
			st := &conn{authed: true}
			for i, r := range tc.rounds {
				f, _, err := parseFrame(roundFrame(uint64(i+1), r))
				if err != nil {
					t.Fatal(err)
				}
				l.frame(st, f, time.Now(), lp)
			}
			s := l.Stats()
			if s.Dups != tc.dups {
				t.Errorf("dups %d, want %d", s.Dups, tc.dups)
			}
			for r, want := range tc.count {
				if got := s.Round(r); got.Count != want || got.MinNs <= 0 || got.MaxNs < got.MinNs {
					t.Errorf("round %d: %+v, want count %d and 0 < min <= max", r, got, want)
				}
			}
		})
	}
}

func TestRoundMerge(t *testing.T) {
	a := Stats{Dups: 1, Rounds: []Round{{ID: 1, Count: 2, MinNs: 50, MaxNs: 90}}}
	b := Stats{Dups: 2, Rounds: []Round{{ID: 1, Count: 3, MinNs: 30, MaxNs: 80}, {ID: 2, Count: 1, MinNs: 5, MaxNs: 5}}}
	m := a.Merge(b)
	if m.Dups != 3 || m.Round(1) != (Round{ID: 1, Count: 5, MinNs: 30, MaxNs: 90}) || m.Round(2).Count != 1 {
		t.Errorf("merged %+v", m)
	}
}

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{2}, Spread{2, 2, 2, 1}},
		{[]float64{3, 1, 2}, Spread{2, 1, 3, 3}},
		{[]float64{4, 1, 2, 3}, Spread{2.5, 1, 4, 4}},
	} {
		if got := spreadOf(tc.in); got != tc.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// bcast-qos against the naive server in this process (its RSS is this
// test's): both runs complete, every client checked, the ratio computed.
func TestBcastQoSAgainstNaive(t *testing.T) {
	s := startNaive(t)
	out := t.TempDir()
	var stdout strings.Builder
	err := Main(context.Background(), []string{"bcast-qos", "-quiet", "-room", s.Addr(),
		"-api", "http://" + s.HTTPAddr(), "-admin", "http://" + s.HTTPAddr(), "-pid", strconv.Itoa(os.Getpid()),
		"-n", "30", "-stream", "1s", "-stream-rate", "20", "-drain", "5s", "-out", out}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("bcast-qos: %v\n%s", err, stdout.String())
	}
	m, _ := filepath.Glob(filepath.Join(out, "bcast-qos-external-30-*", "result.json"))
	if len(m) != 1 {
		t.Fatalf("want one bcast-qos result, got %v", m)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	var c QoSCompare
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Pairs) != 1 || !c.Complete || c.Peak.Runs != 1 || c.Peak.Median <= 0 {
		t.Fatalf("compare: %+v", c)
	}
	for _, r := range []*QoSStreamResult{c.Pairs[0].QoS0, c.Pairs[0].QoS1} {
		if r.Sent == 0 || r.Delivered != 30*r.Sent || r.Missing != 0 || r.RSSPeak == 0 || len(r.Samples) == 0 {
			t.Errorf("QoS %d: %+v", r.QoS, r)
		}
	}
	if q1 := c.Pairs[0].QoS1; q1.Acked != q1.Delivered {
		t.Errorf("QoS 1: acked %d of %d", q1.Acked, q1.Delivered)
	}
	if !strings.Contains(stdout.String(), "QoS 1 / QoS 0") {
		t.Errorf("summary missing:\n%s", stdout.String())
	}
}

// bcast against the naive server: every client had it, the clients'
// rate is measured, and the job the naive server cannot show is reported,
// not taken for done.
func TestBcastAgainstNaive(t *testing.T) {
	s := startNaive(t)
	out := t.TempDir()
	var stdout strings.Builder
	err := Main(context.Background(), []string{"bcast", "-quiet", "-room", s.Addr(),
		"-api", "http://" + s.HTTPAddr() + ",http://" + s.HTTPAddr(), "-n", "40", "-qos", "1",
		"-bcast-rate", "1000", "-drain", "1s", "-out", out}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("bcast: %v\n%s", err, stdout.String())
	}
	r := readResult(t, out, "bcast-external-40")
	b := r.Bcast
	if b == nil || !b.Complete || b.Received != 40 || b.Dups != 0 || b.Acked != 40 || b.JobID == "" {
		t.Fatalf("bcast: %+v", b)
	}
	// The clients' rate needs two distinct receive times: 40 clients of a
	// fast server may all read it in the same tick.
	if b.LastMs > b.FirstMs && b.ClientRate <= 0 {
		t.Fatalf("bcast: no client rate from receives %v..%v ms: %+v", b.FirstMs, b.LastMs, b)
	}
	if b.JobDone || len(b.Jobs) != 2 || !strings.Contains(b.Jobs[0].Fetch, "404") {
		t.Errorf("jobs: done %v %+v", b.JobDone, b.Jobs)
	}
}

// A client that misses a broadcast fails the run with ErrIncomplete.
func TestMissingCounted(t *testing.T) {
	s := Stats{Rounds: []Round{{ID: 1, Count: 3}, {ID: 2, Count: 1}}}
	for _, tc := range []struct {
		ids    []int
		online int64
		want   int64
	}{
		{[]int{1}, 3, 0},
		{[]int{1, 2}, 3, 2},
		{[]int{1, 2, 3}, 3, 5},
	} {
		if got := missing(s, tc.ids, tc.online); got != tc.want {
			t.Errorf("missing(%v, %d) = %d, want %d", tc.ids, tc.online, got, tc.want)
		}
	}
	if !errors.Is(ErrIncomplete, ErrIncomplete) {
		t.Fatal("ErrIncomplete")
	}
}

// A login the server refuses before AUTH_OK (ERROR overloaded, then a
// close) dials again with -retry, and counts as refused only when the
// retries run out.
func TestRetryRefusedLogin(t *testing.T) {
	for _, tc := range []struct {
		name              string
		retry, refuse     int // refuse: the first so many connections
		authed, refused   int64
		retriedAtLeast    int64
		authErrorsAtLeast int64
	}{
		{"no retry", 0, 3, 0, 3, 0, 3},
		{"retried", 2, 3, 3, 0, 3, 0},
		{"retries run out", 1, 6, 0, 3, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := refusingServer(t, tc.refuse)
			l, err := StartLoad(context.Background(), LoadConfig{Rooms: []string{addr}, N: 3, App: 1, Secret: demoSecret, Retry: tc.retry})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			testkit.WaitFor(t, "every login settled", 20*time.Second, func() bool {
				s := l.Stats()
				return s.Authed+s.Refused == 3 && s.Retrying == 0
			})
			s := l.Stats()
			if s.Authed != tc.authed || s.Refused != tc.refused || s.Retried < tc.retriedAtLeast || s.AuthErrors < tc.authErrorsAtLeast {
				t.Errorf("authed %d refused %d retried %d auth errors %d", s.Authed, s.Refused, s.Retried, s.AuthErrors)
			}
		})
	}
}

// refusingServer answers ERROR overloaded and closes the first refuse
// connections, AUTH_OK to the others; it lives until the test ends.
func refusingServer(t *testing.T, refuse int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil {
					return
				}
				if n < refuse {
					_, _ = c.Write(proto.AppendError(nil, 0, proto.ErrCodeOverloaded, "server busy, retry later"))
					c.Close()
					return
				}
				_, _ = c.Write(proto.AppendJSON(nil, proto.Header{Op: proto.OpAuthOK, App: 1}, proto.AuthOK{HB: 30}))
				_, _ = io.Copy(io.Discard, c)
			}(n)
		}
	}()
	return ln.Addr().String()
}
