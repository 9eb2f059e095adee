package loadgen

import (
	"context"
	"github.com/lcpush/lcpush/internal/testkit"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

func TestSpreadSources(t *testing.T) {
	tests := []struct {
		name          string
		srcs          []string
		n, rooms, per int
		want          []string
	}{
		{"fits", []string{"127.0.0.1"}, 1000, 1, 1764, []string{"127.0.0.1"}},
		{"storm", []string{"127.0.0.60"}, 17000, 1, 1764, []string{"127.0.0.60", "127.1.0.60", "127.2.0.60",
			"127.3.0.60", "127.4.0.60", "127.5.0.60", "127.6.0.60", "127.7.0.60", "127.8.0.60", "127.9.0.60"}},
		{"two rooms halve the need", []string{"127.0.0.2"}, 7000, 2, 1764, []string{"127.0.0.2", "127.1.0.2"}},
		{"several given", []string{"127.0.0.2", "127.0.0.3"}, 7000, 1, 1764, []string{"127.0.0.2", "127.0.0.3", "127.1.0.2", "127.1.0.3"}},
		{"ipv6 kept", []string{"::1"}, 7000, 1, 1764, []string{"::1"}},
		{"top of 127/8", []string{"127.254.0.1"}, 7000, 1, 1764, []string{"127.254.0.1", "127.255.0.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := spreadSources(tc.srcs, tc.n, tc.rooms, tc.per); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if b := perSourceBudget(); b < 64 {
		t.Errorf("budget %d", b)
	}
}

func TestAuthOKHB(t *testing.T) {
	tests := []struct {
		body string
		want int
	}{
		{`{"hb":10,"room":"r1","server_time":1}`, 10},
		{`{"room":"r1","hb":300}`, 300},
		{`{"hb": 25, "room":"r1"}`, 25}, // spaces: the JSON decoder
		{`{"room":"\"hb\":7","hb":9}`, 9},
		{`{"hb":12345678901}`, 12345678901}, // past 9 digits: the decoder
		{`{"room":"r1"}`, 0},
		{`not json`, 0},
	}
	for _, tc := range tests {
		if got := authOKHB([]byte(tc.body)); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.body, got, tc.want)
		}
	}
}

func TestClaimPacing(t *testing.T) {
	t0 := time.Now()
	l := &Load{cfg: LoadConfig{N: 100, Rate: 1000}, t0: t0, burst: 10}
	steps := []struct {
		at          time.Duration
		most        int
		first, k    int
		wantWaitPos bool
	}{
		{0, 64, 0, 10, false},                    // the bucket at once
		{0, 64, 0, 0, true},                      // nothing more due yet
		{20 * time.Millisecond, 5, 10, 5, false}, // 30 due, batch of 5
		{20 * time.Millisecond, 64, 15, 15, false},
		{time.Second, 64, 30, 64, false},
		{time.Second, 64, 94, 6, false},
	}
	for i, s := range steps {
		first, k, wait := l.claim(t0.Add(s.at), s.most)
		if k != s.k || (k > 0 && first != s.first) || (s.wantWaitPos && wait <= 0) {
			t.Fatalf("step %d: got first %d k %d wait %v", i, first, k, wait)
		}
	}
	if _, k, wait := l.claim(t0.Add(2*time.Second), 64); k != 0 || wait != -1 {
		t.Errorf("after the last: k %d wait %v", k, wait)
	}
}

// TestLoadCloseAccounting checks the counts of the raw client against a
// listener that refuses (accepts and closes) and a port nobody listens on.
func TestLoadCloseAccounting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	l, err := StartLoad(context.Background(), LoadConfig{Rooms: []string{ln.Addr().String(), deadAddr}, N: 10, App: 1, Secret: demoSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testkit.WaitFor(t, "condition", 10*time.Second, func() bool { s := l.Stats(); return s.Refused == 5 && s.DialErrors == 5 })
	if s := l.Stats(); s.Authed != 0 || s.Open != 0 || s.Dialed != 10 || s.Connected != 5 {
		t.Errorf("stats %+v", s)
	}
}

// TestLoadSplitFrames feeds AUTH_OK and a PUSH in pieces: the client keeps
// partial frames across reads.
func TestLoadSplitFrames(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		d := proto.NewDecoder(c, proto.DefaultMaxLen)
		if f, err := d.Next(); err != nil || f.Op != proto.OpAuth {
			return
		}
		out := proto.AppendJSON(nil, proto.Header{Op: proto.OpAuthOK}, proto.AuthOK{HB: 30, Room: "r"})
		out = proto.AppendPush(out, 1, true, 42, payload(64, time.Now(), 3))
		for _, cut := range [][2]int{{0, 3}, {3, 20}, {20, len(out) - 5}, {len(out) - 5, len(out)}} {
			if _, err := c.Write(out[cut[0]:cut[1]]); err != nil {
				return
			}
			// Not waiting for a state: a pause between the pieces makes
			// them arrive in separate reads, which is what is tested.
			time.Sleep(20 * time.Millisecond)
		}
		if f, err := d.Next(); err != nil || f.Op != proto.OpAck {
			t.Errorf("want the ACK, got %v %v", f.Op, err)
		}
	}()
	l, err := StartLoad(context.Background(), LoadConfig{Rooms: []string{ln.Addr().String()}, N: 1, App: 1, Secret: demoSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testkit.WaitFor(t, "condition", 10*time.Second, func() bool { s := l.Stats(); return s.Authed == 1 && s.Pushes == 1 && s.Acked == 1 })
	<-done
	if s := l.Stats(); s.Round(3).Count != 1 || s.Handshake.Count() != 1 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}
