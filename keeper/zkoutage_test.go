package keeper

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// These tests need no ZooKeeper: the freeze and grace logic runs on a fake
// clock, the handshake bound against a server that never answers.

// mirrorOf builds a mirror from "role/id" or "role/id=load" names.
func mirrorOf(names ...string) map[string]map[string]push.Member {
	out := make(map[string]map[string]push.Member)
	for _, n := range names {
		role, id, _ := strings.Cut(n, "/")
		id, load, _ := strings.Cut(id, "=")
		if out[role] == nil {
			out[role] = make(map[string]push.Member)
		}
		m := push.Member{Role: role, ID: id}
		if load != "" {
			m.Load = len(load) // "=x" is load 1, "=xx" load 2
		}
		out[role][id] = m
	}
	return out
}

// namesOf lists a view as sorted "role/id" (with "=x..." when Load > 0).
func namesOf(v map[string]map[string]push.Member) []string {
	var out []string
	for role, byID := range v {
		for id, m := range byID {
			n := role + "/" + id
			if m.Load > 0 {
				n += "=" + strings.Repeat("x", m.Load)
			}
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func TestMemberViewFreezeAndGrace(t *testing.T) {
	const grace = 10 * time.Second
	type step struct {
		at      time.Duration // on the fake clock
		do      string        // show (with mirror), freeze, thaw
		mirror  []string
		want    []string      // shown after a show
		removed []string      // removed by that show
		left    time.Duration // grace left after the step, checked when set; none: 0
	}
	const none = -1
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"healthy: the mirror as is, a leave at once", []step{
			{at: 0, do: "show", mirror: []string{"room/a", "saver/s"}, want: []string{"room/a", "saver/s"}},
			{at: 1 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a"}},
			{at: 2 * time.Second, do: "show", mirror: []string{"room/a", "room/b"}, want: []string{"room/a", "room/b"}},
		}},
		{"frozen: the last list stays whatever the mirror says", []step{
			{at: 0, do: "show", mirror: []string{"room/a", "saver/s"}, want: []string{"room/a", "saver/s"}},
			{at: 1 * time.Second, do: "freeze", left: none},
			{at: 2 * time.Second, do: "show", mirror: nil, want: []string{"room/a", "saver/s"}},
			{at: 60 * time.Second, do: "show", mirror: []string{"room/z"}, want: []string{"room/a", "saver/s"}},
		}},
		{"after the thaw the missing are held for the grace, then removed", []step{
			{at: 0, do: "show", mirror: []string{"room/a", "room/b", "saver/s"}, want: []string{"room/a", "room/b", "saver/s"}},
			{at: 1 * time.Second, do: "freeze"},
			{at: 61 * time.Second, do: "thaw", left: grace},
			// Our new session sees only room/a: the others are re-creating theirs.
			{at: 61 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a", "room/b", "saver/s"}, left: grace},
			{at: 64 * time.Second, do: "show", mirror: []string{"room/a", "saver/s"}, want: []string{"room/a", "room/b", "saver/s"}, left: 7 * time.Second},
			// saver/s came back and goes again within the grace (its old
			// session expired after our reconnect): still held.
			{at: 66 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a", "room/b", "saver/s"}},
			{at: 71 * time.Second, do: "show", mirror: []string{"room/a", "saver/s"}, want: []string{"room/a", "saver/s"}, removed: []string{"room/b"}, left: none},
			// The grace is over: a leave is a leave again.
			{at: 72 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a"}},
		}},
		{"members first seen after the thaw are not protected", []step{
			{at: 0, do: "show", mirror: []string{"room/a"}, want: []string{"room/a"}},
			{at: 1 * time.Second, do: "freeze"},
			{at: 2 * time.Second, do: "thaw"},
			{at: 3 * time.Second, do: "show", mirror: []string{"room/a", "room/c"}, want: []string{"room/a", "room/c"}},
			{at: 4 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a"}},
		}},
		{"a held member keeps its latest data", []step{
			{at: 0, do: "show", mirror: []string{"register/r=x"}, want: []string{"register/r=x"}},
			{at: 1 * time.Second, do: "freeze"},
			{at: 2 * time.Second, do: "thaw"},
			{at: 3 * time.Second, do: "show", mirror: nil, want: []string{"register/r=x"}},
			{at: 4 * time.Second, do: "show", mirror: []string{"register/r=xx"}, want: []string{"register/r=xx"}},
			{at: 5 * time.Second, do: "show", mirror: nil, want: []string{"register/r=xx"}},
		}},
		{"a second outage within the grace protects what was shown, grace restarts", []step{
			{at: 0, do: "show", mirror: []string{"room/a", "room/b"}, want: []string{"room/a", "room/b"}},
			{at: 1 * time.Second, do: "freeze"},
			{at: 2 * time.Second, do: "thaw"},
			{at: 3 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a", "room/b"}},
			{at: 4 * time.Second, do: "freeze", left: none},
			{at: 30 * time.Second, do: "thaw", left: grace},
			{at: 31 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a", "room/b"}},
			{at: 40 * time.Second, do: "show", mirror: []string{"room/a"}, removed: []string{"room/b"}, want: []string{"room/a"}},
		}},
		{"a blip with nothing shown yet protects nothing", []step{
			{at: 0, do: "freeze"},
			{at: 1 * time.Second, do: "thaw", left: none},
			{at: 2 * time.Second, do: "show", mirror: []string{"room/a"}, want: []string{"room/a"}},
			{at: 3 * time.Second, do: "show", mirror: nil, want: nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := memberView{grace: grace}
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				switch s.do {
				case "freeze":
					if !v.freeze() || v.freeze() {
						t.Fatalf("step %d: freeze did not report once", i)
					}
				case "thaw":
					if !v.thaw(now) || v.thaw(now) {
						t.Fatalf("step %d: thaw did not report once", i)
					}
				case "show":
					shown, removed := v.show(now, mirrorOf(s.mirror...))
					if got := namesOf(shown); !slices.Equal(got, s.want) {
						t.Fatalf("step %d at %v: shown %v, want %v", i, s.at, got, s.want)
					}
					if !slices.Equal(removed, s.removed) {
						t.Fatalf("step %d at %v: removed %v, want %v", i, s.at, removed, s.removed)
					}
					if v.expired(now) {
						t.Fatalf("step %d: still expired after a show", i)
					}
				}
				if s.left != 0 {
					if got := v.graceLeft(now); got != max(s.left, 0) {
						t.Fatalf("step %d at %v: grace left %v, want %v", i, s.at, got, s.left)
					}
				}
			}
		})
	}
}

// TestMemberViewExpired: once the grace has run out, expired says so until a
// show publishes the list without protection.
func TestMemberViewExpired(t *testing.T) {
	v := memberView{grace: 5 * time.Second}
	t0 := time.Now()
	v.show(t0, mirrorOf("room/a", "room/b"))
	v.freeze()
	if v.expired(t0) {
		t.Fatal("expired while frozen")
	}
	v.thaw(t0)
	if v.expired(t0.Add(4 * time.Second)) {
		t.Fatal("expired within the grace")
	}
	if !v.expired(t0.Add(5 * time.Second)) {
		t.Fatal("not expired at the end of the grace")
	}
	shown, removed := v.show(t0.Add(5*time.Second), mirrorOf("room/a"))
	if !slices.Equal(namesOf(shown), []string{"room/a"}) || !slices.Equal(removed, []string{"room/b"}) {
		t.Fatalf("shown %v removed %v", namesOf(shown), removed)
	}
	if v.expired(t0.Add(6 * time.Second)) {
		t.Fatal("expired twice")
	}
}

func TestZKOutageDefaults(t *testing.T) {
	for _, tc := range []struct {
		session, handshake, grace      time.Duration
		wantSession, wantHS, wantGrace time.Duration
	}{
		{0, 0, 0, 10 * time.Second, 3 * time.Second, 21 * time.Second},
		{2 * time.Second, 0, 0, 2 * time.Second, 2 * time.Second, 11 * time.Second},
		{30 * time.Second, 0, 0, 30 * time.Second, 3 * time.Second, 41 * time.Second},
		{10 * time.Second, time.Second, 0, 10 * time.Second, time.Second, 17 * time.Second},
		{10 * time.Second, 0, time.Minute, 10 * time.Second, 3 * time.Second, time.Minute},
	} {
		c := ZKConfig{Servers: []string{"x:1"}, SessionTimeout: tc.session, HandshakeTimeout: tc.handshake, OutageGrace: tc.grace}
		if err := c.defaults(); err != nil {
			t.Fatal(err)
		}
		if c.SessionTimeout != tc.wantSession || c.HandshakeTimeout != tc.wantHS || c.OutageGrace != tc.wantGrace {
			t.Errorf("%v/%v/%v: got session %v handshake %v grace %v, want %v %v %v", tc.session, tc.handshake, tc.grace,
				c.SessionTimeout, c.HandshakeTimeout, c.OutageGrace, tc.wantSession, tc.wantHS, tc.wantGrace)
		}
	}
}

// TestHandshakeConnClamp: until the session is established every deadline
// (none included) is at most the handshake deadline; after, they are the
// library's own.
func TestHandshakeConnClamp(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	hc := newHandshakeConn(a, 150*time.Millisecond)
	for _, set := range []func(time.Time) error{hc.SetReadDeadline, hc.SetDeadline} {
		if err := set(time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := hc.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := hc.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("handshake read: %v after %v, want a deadline at 150 ms", err, time.Since(start))
	}
	if err := hc.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Write([]byte{1}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("handshake write: %v, want the handshake deadline", err)
	}

	hc.established()
	// No deadline any more: a read waits for data.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = b.Write([]byte{7})
	}()
	buf := make([]byte, 1)
	if _, err := hc.Read(buf); err != nil || buf[0] != 7 {
		t.Fatalf("read after the handshake: %v %v", buf, err)
	}
	// The library's deadline, later than the handshake's, is honoured.
	if err := hc.SetReadDeadline(time.Now().Add(400 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := hc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("read with the library's deadline: %v after %v", err, time.Since(start))
	}
}

// blackHole accepts connections and never answers, as a stalled ZooKeeper
// server does (a stopped JVM whose kernel still accepts, a hung proxy).
type blackHole struct {
	ln       net.Listener
	accepted atomic.Int32
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{ln: ln}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			h.accepted.Add(1)
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return h
}

func (h *blackHole) addr() string { return h.ln.Addr().String() }

// TestZKHandshakeBounded: against a server that accepts and never answers,
// the client gives up the handshake after HandshakeTimeout and tries again
// (the next server of the list), instead of waiting 10 x recvTimeout (~67 s
// for a 10 s session) on the first connection.
func TestZKHandshakeBounded(t *testing.T) {
	hole := newBlackHole(t)
	ctx := context.Background()
	start := time.Now()
	_, err := DialZK(ctx, ZKConfig{Servers: []string{hole.addr()}, SessionTimeout: 10 * time.Second,
		HandshakeTimeout: 300 * time.Millisecond, ConnectTimeout: 3 * time.Second, Logger: testLogger()})
	if !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("DialZK to a black hole: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("DialZK took %v, ConnectTimeout is 3 s", d)
	}
	// Attempts at 0, ~1.3 s and ~2.6 s (handshake 0.3 s, then the client's 1 s backoff).
	if n := hole.accepted.Load(); n < 2 {
		t.Fatalf("%d connection(s) in 3 s: the stalled handshake was not given up", n)
	}
}
