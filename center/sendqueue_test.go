package center

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// The send queue on a fake clock: every sendQueues method takes now.

var t0 = time.Unix(1_700_000_000, 0)

func lim(rate float64, burst, bound int) queueLimits {
	return queueLimits{rate: rate, burst: float64(burst), bound: bound, boundBytes: 1 << 30}
}

func uidsN(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// queuePush admits and, when queued, commits a push of uids; it returns the
// admission.
func queuePush(sq *sendQueues, now time.Time, app uint32, l queueLimits, id uint64, uids []string) admission {
	msg := push.Message{ID: id, App: app, Expire: now.Unix() + 3600}
	a := sq.admit(now, app, l, len(uids), pushCost(msg, uids))
	if a.kind == admitQueued {
		sq.commit(now, a, msg, uids)
	}
	return a
}

func TestSendQueueAdmit(t *testing.T) {
	type push struct {
		n      int
		want   int // admit kind
		queued int
		retry  time.Duration
	}
	for _, tc := range []struct {
		name   string
		lim    queueLimits
		pushes []push // all at t0
	}{
		{"burst then queue then full", lim(10, 3, 5), []push{
			{n: 2, want: admitNow}, {n: 1, want: admitNow}, // bucket of 3 spent
			{n: 1, want: admitQueued, queued: 1},
			{n: 4, want: admitQueued, queued: 5},
			// depth 5 + 1 over 5: one recipient must leave, at 10/s after
			// the 0.1 s the bucket needs for its next token: 0.2 s -> 1 s.
			{n: 1, want: admitFull, retry: time.Second},
		}},
		{"never overtakes the queue", lim(10, 10, 100), []push{
			{n: 9, want: admitNow},
			{n: 5, want: admitQueued, queued: 5}, // 1 token left, 5 wanted
			{n: 1, want: admitQueued, queued: 6}, // 1 token would do, but 5 wait
		}},
		{"retry-after from depth and rate", lim(2, 1, 20), []push{
			{n: 1, want: admitNow},
			{n: 20, want: admitQueued, queued: 20},
			// 20 + 10 over 20: 10 must leave at 2/s = 5 s, + 0.5 s for
			// the first token -> 6 s.
			{n: 10, want: admitFull, retry: 6 * time.Second},
		}},
		{"bigger than the queue but within the burst", lim(10, 50, 20), []push{
			{n: 30, want: admitNow},
			// 30 over the queue of 20: only an empty queue and a bucket
			// of 30 let it through: 50-30 = 20 tokens, 10 more at 10/s
			// -> (after(1)=0) + 2.9 s -> 3 s.
			{n: 30, want: admitFull, retry: 3 * time.Second},
		}},
		{"bigger than queue and burst: never", lim(10, 5, 20), []push{
			{n: 21, want: admitNever},
			{n: 20, want: admitQueued, queued: 20},
		}},
		{"no queue: refused past the rate", lim(10, 2, -1), []push{
			{n: 2, want: admitNow},
			{n: 1, want: admitFull, retry: time.Second},
			{n: 3, want: admitNever},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sq := newSendQueues()
			for i, p := range tc.pushes {
				a := queuePush(sq, t0, 1, tc.lim, uint64(i+1), uidsN("u", p.n))
				if a.kind != p.want || a.queued != p.queued || a.retry != p.retry {
					t.Fatalf("push %d of %d: kind %d queued %d retry %v, want %d %d %v",
						i, p.n, a.kind, a.queued, a.retry, p.want, p.queued, p.retry)
				}
			}
		})
	}
}

func TestSendQueueBytesBound(t *testing.T) {
	sq := newSendQueues()
	l := lim(10, 1, 1000)
	one := pushCost(push.Message{}, []string{"u0"})
	l.boundBytes = 3 * one
	queuePush(sq, t0, 1, l, 1, []string{"u0"}) // at once
	for i := range 3 {
		if a := queuePush(sq, t0, 1, l, uint64(i+2), []string{"u0"}); a.kind != admitQueued {
			t.Fatalf("push %d: %d, want queued", i, a.kind)
		}
	}
	a := queuePush(sq, t0, 1, l, 9, []string{"u0"})
	if a.kind != admitFull || a.retry != time.Second {
		t.Fatalf("push over the bytes bound: kind %d retry %v, want full, 1s", a.kind, a.retry)
	}
	// A cancelled reservation gives its bytes back.
	b, ok, _ := sq.next(t0.Add(100 * time.Millisecond))
	if !ok || b.n != 1 {
		t.Fatalf("release %v %v", b, ok)
	}
	sq.done(1)
	a = sq.admit(t0.Add(100*time.Millisecond), 1, l, 1, one)
	if a.kind != admitQueued {
		t.Fatalf("after a release: %d, want queued", a.kind)
	}
	sq.cancel(a)
	if st := sq.stat(1, t0); st.Depth != 2 || st.Bytes != 2*one {
		t.Fatalf("after cancel: %+v, want depth 2, %d bytes", st, 2*one)
	}
}

// drive runs the scheduler on the fake clock from start to end in steps
// of tick, delivering each release at once, and returns the releases.
func drive(sq *sendQueues, start, end time.Time, tick time.Duration) []releaseBatch {
	var out []releaseBatch
	for now := start; !now.After(end); now = now.Add(tick) {
		for {
			b, ok, _ := sq.next(now)
			if !ok {
				break
			}
			out = append(out, b)
			sq.done(b.app)
		}
	}
	return out
}

func TestSendQueueReleaseRate(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
		n     int // unicasts queued at t0
	}{
		{1000, 1, 5000},
		{1000, 1001, 5000},
		{7, 1, 30},
		{250, 10, 1000},
	} {
		t.Run(fmt.Sprint(tc.rate, "/s burst ", tc.burst), func(t *testing.T) {
			sq := newSendQueues()
			l := lim(tc.rate, tc.burst, tc.n)
			now := 0
			for i := range tc.n {
				if a := queuePush(sq, t0, 1, l, uint64(i+1), []string{fmt.Sprint("u", i)}); a.kind == admitNow {
					now++
				}
			}
			if now != tc.burst {
				t.Fatalf("%d sent at once, want the burst %d", now, tc.burst)
			}
			// The queue drains at the rate: the last release comes
			// (n-burst)/rate after t0, within one release step.
			want := time.Duration(float64(tc.n-tc.burst) / tc.rate * float64(time.Second))
			released, last := 0, time.Duration(0)
			for ms := 0; ms <= int(want/time.Millisecond)+1000; ms++ {
				at := t0.Add(time.Duration(ms) * time.Millisecond)
				for {
					b, ok, _ := sq.next(at)
					if !ok {
						break
					}
					released += b.n
					last = at.Sub(t0)
					sq.done(b.app)
					// Never ahead of the rate by more than a step: the
					// burst was spent at t0.
					if limit := at.Sub(t0).Seconds()*tc.rate + math.Max(1, tc.rate*releaseStep.Seconds()) + 1; float64(released) > limit {
						t.Fatalf("at %v released %d, over the rate (at most %.0f)", at.Sub(t0), released, limit)
					}
				}
			}
			if released != tc.n-tc.burst {
				t.Fatalf("released %d, want %d", released, tc.n-tc.burst)
			}
			step := releaseStep + time.Duration(float64(time.Second)/tc.rate)
			if last < want-step || last > want+step {
				t.Fatalf("last release at %v, want %v ± %v", last, want, step)
			}
		})
	}
}

// TestSendQueueCatchUp: releases slower than the pacing step (a busy
// lookup) do not slow the queue below its rate: the bucket banks up to
// catchUp of the rate while recipients wait.
func TestSendQueueCatchUp(t *testing.T) {
	for _, lag := range []time.Duration{5 * time.Millisecond, 30 * time.Millisecond, 100 * time.Millisecond} {
		t.Run(lag.String(), func(t *testing.T) {
			sq := newSendQueues()
			l := lim(1000, 1, 10000)
			for i := range 5000 {
				queuePush(sq, t0, 1, l, uint64(i+1), []string{fmt.Sprint("u", i)})
			}
			released, busyUntil, last := 0, t0, time.Duration(0)
			for now := t0; released < 4999 && now.Before(t0.Add(10*time.Second)); now = now.Add(time.Millisecond) {
				if now.Before(busyUntil) {
					continue
				}
				sq.done(1)
				if b, ok, _ := sq.next(now); ok {
					released += b.n
					busyUntil, last = now.Add(lag), now.Sub(t0)
				}
			}
			if released != 4999 || last < 4900*time.Millisecond || last > 5100*time.Millisecond {
				t.Fatalf("released %d, the last at %v, want 4999 by 5 s ± 100 ms", released, last)
			}
		})
	}
}

func TestSendQueueFairness(t *testing.T) {
	sq := newSendQueues()
	big, small := lim(1000, 1, 100000), lim(1000, 1, 100000)
	// App 1 queues 50,000 recipients in multicasts of 1000; app 2 has
	// spent its bucket and queues one unicast.
	for i := range 50 {
		queuePush(sq, t0, 1, big, uint64(i+1), uidsN(fmt.Sprint("a", i, "-"), 1000))
	}
	queuePush(sq, t0, 2, small, 100, []string{"b0"})
	if a := queuePush(sq, t0, 2, small, 101, []string{"b1"}); a.kind != admitQueued {
		t.Fatalf("app 2's second push: %d, want queued", a.kind)
	}
	// App 2's push is released with its own rate, within its first
	// millisecond-token, however deep app 1's backlog is.
	rels := drive(sq, t0, t0.Add(10*time.Millisecond), time.Millisecond)
	var got2 bool
	for _, b := range rels {
		if b.app == 2 {
			got2 = true
			if b.n != 1 || b.parts[0].msg.ID != 101 {
				t.Fatalf("app 2 release %+v", b)
			}
		}
		if b.n > maxRelease {
			t.Fatalf("release of %d recipients, over %d", b.n, maxRelease)
		}
	}
	if !got2 {
		t.Fatalf("app 2 not released within 10 ms behind app 1's backlog: %d releases", len(rels))
	}
	// An app with a release in flight gets no second one; others do.
	queuePush(sq, t0, 3, small, 200, []string{"c0"})
	queuePush(sq, t0, 3, small, 201, []string{"c1"})
	at := t0.Add(time.Second)
	seen := map[uint32]int{}
	for {
		b, ok, _ := sq.next(at)
		if !ok {
			break
		}
		seen[b.app]++
	}
	if seen[1] != 1 || seen[3] != 1 || len(seen) != 2 {
		t.Fatalf("releases without done: %v, want one each of apps 1 and 3", seen)
	}
	// Round robin: after done, the cursor moves on; both apps alternate.
	sq.done(1)
	sq.done(3)
	queuePush(sq, at, 3, small, 202, uidsN("c-more-", 500))
	var order []uint32
	for now := at.Add(100 * time.Millisecond); len(order) < 6; now = now.Add(100 * time.Millisecond) {
		for {
			b, ok, _ := sq.next(now)
			if !ok {
				break
			}
			order = append(order, b.app)
			sq.done(b.app)
		}
	}
	if fmt.Sprint(order[:4]) != "[1 3 1 3]" && fmt.Sprint(order[:4]) != "[3 1 3 1]" {
		t.Fatalf("release order of apps %v, want alternating", order)
	}
}

func TestSendQueueReleaseOrder(t *testing.T) {
	sq := newSendQueues()
	l := lim(100, 1, 10000) // step 2 recipients
	queuePush(sq, t0, 1, l, 1, []string{"x"})
	queuePush(sq, t0, 1, l, 2, []string{"a", "b", "c"})
	queuePush(sq, t0, 1, l, 3, []string{"d"})
	queuePush(sq, t0, 1, l, 4, []string{"e", "f"})
	var got []string
	for _, b := range drive(sq, t0, t0.Add(time.Second), time.Millisecond) {
		if b.n > 2 {
			t.Fatalf("release of %d at 100/s, want steps of 2", b.n)
		}
		for _, p := range b.parts {
			for _, u := range p.uids {
				got = append(got, fmt.Sprint(p.msg.ID, u))
			}
		}
	}
	if fmt.Sprint(got) != "[2a 2b 2c 3d 4e 4f]" {
		t.Fatalf("release order %v", got)
	}
	if st := sq.stat(1, t0.Add(time.Second)); st.Depth != 0 || st.Bytes != 0 {
		t.Fatalf("drained queue %+v", st)
	}
	if len(sq.ring) != 0 {
		t.Fatalf("ring %d after drain", len(sq.ring))
	}
}

func TestSendQueueNextWait(t *testing.T) {
	sq := newSendQueues()
	l := lim(10, 1, 100)
	if _, ok, wait := sq.next(t0); ok || wait >= 0 {
		t.Fatalf("empty: ok %v wait %v, want none and no timer", ok, wait)
	}
	queuePush(sq, t0, 1, l, 1, []string{"a"})
	queuePush(sq, t0, 1, l, 2, []string{"b"})
	if _, ok, wait := sq.next(t0); ok || wait != 100*time.Millisecond {
		t.Fatalf("bucket empty: ok %v wait %v, want 100ms", ok, wait)
	}
	if _, ok, _ := sq.next(t0.Add(100 * time.Millisecond)); !ok {
		t.Fatal("no release once the token is there")
	}
	st := sq.stats(t0.Add(100 * time.Millisecond))
	if len(st) != 0 {
		t.Fatalf("stats of a drained queue: %v", st)
	}
}

func TestSendQueueDropAll(t *testing.T) {
	sq := newSendQueues()
	l := lim(10, 1, 100)
	queuePush(sq, t0, 1, l, 1, []string{"a"})
	queuePush(sq, t0, 1, l, 2, []string{"b", "c"})
	res := sq.admit(t0, 1, l, 1, 10) // a reservation in a request
	if n, items := sq.dropAll(); n != 2 || items != 1 {
		t.Fatalf("dropped %d recipients of %d pushes, want 2 of 1", n, items)
	}
	sq.cancel(res)
	if st := sq.stat(1, t0); st.Depth != 0 || st.Bytes != 0 {
		t.Fatalf("after drop and cancel: %+v", st)
	}
}

func TestSendQueueReconfigure(t *testing.T) {
	sq := newSendQueues()
	queuePush(sq, t0, 1, lim(10, 1, 100), 1, []string{"a"})
	queuePush(sq, t0, 1, lim(10, 1, 100), 2, []string{"b"})
	queuePush(sq, t0, 2, lim(10, 5, 100), 3, []string{"c"}) // sent at once, nothing waits
	// A reload makes app 1 ten times faster and removes app 2.
	sq.reconfigure(t0, func(app uint32) (queueLimits, bool) {
		if app == 1 {
			return lim(100, 1, 100), true
		}
		return queueLimits{}, false
	})
	if _, ok := sq.apps[2]; ok {
		t.Fatal("a removed app with nothing queued is kept")
	}
	if _, ok, wait := sq.next(t0); ok || wait != 10*time.Millisecond {
		t.Fatalf("after the reload: ok %v wait %v, want the next token in 10ms at 100/s", ok, wait)
	}
}

// TestPushQueuedStoreFails: a QoS 1 push that would be queued but cannot be
// stored is refused (503) and gives its place in the queue back; a queued
// QoS 1 push is stored before its 202.
func TestPushQueuedStoreFails(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	body := `{"uids":["u1","u2"],"text":"x"}`
	if a := e.do(t, "POST", "/v1/apps/3/push", key3, body); a.status != 200 { // app 3: rate 1/s, burst 2
		t.Fatalf("first push: %d %s", a.status, a.body)
	}
	e.store.mu.Lock()
	e.store.err = errDown
	e.store.mu.Unlock()
	if a := e.do(t, "POST", "/v1/apps/3/push", key3, body); a.status != 503 {
		t.Fatalf("push with the store down: %d %s, want 503", a.status, a.body)
	}
	if m := e.do(t, "GET", "/v1/apps/3/queue", key3, "").json(t); m["depth"] != float64(0) {
		t.Fatalf("queue after a refused push: %v, want depth 0", m)
	}
	e.store.mu.Lock()
	e.store.err = nil
	e.store.mu.Unlock()
	a := e.do(t, "POST", "/v1/apps/3/push", key3, body)
	if a.status != 202 || a.json(t)["queued"] != float64(2) {
		t.Fatalf("push past the rate: %d %s, want 202 queued 2", a.status, a.body)
	}
	e.store.mu.Lock()
	n := len(e.store.saved)
	e.store.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d messages stored, want 2 (the queued one before its 202)", n)
	}
}

// An app's rate, burst and bounds are for the whole cluster: each of n
// live centers takes 1/n (rounded up for the bounds, at least 1).
func TestLimitsShared(t *testing.T) {
	app := &config.App{PushRate: 1000, PushBurst: 100, PushQueue: 60001, PushQueueBytes: 64 << 20}
	for _, tc := range []struct {
		n           int
		rate, burst float64
		bound       int
		boundBytes  int64
	}{
		{0, 1000, 100, 60001, 64 << 20},
		{1, 1000, 100, 60001, 64 << 20},
		{2, 500, 50, 30001, 32 << 20},
		{3, 1000.0 / 3, 100.0 / 3, 20001, (64<<20 + 2) / 3},
		{1000, 1, 1, 61, (64<<20 + 999) / 1000},
	} {
		l := limitsOf(app, tc.n)
		if l.rate != tc.rate || l.burst != tc.burst || l.bound != tc.bound || l.boundBytes != tc.boundBytes {
			t.Errorf("n=%d: %+v, want rate %v burst %v bound %d bytes %d", tc.n, l, tc.rate, tc.burst, tc.bound, tc.boundBytes)
		}
	}
	if l := limitsOf(&config.App{PushRate: 10, PushBurst: 1, PushQueue: -1}, 4); l.bound != -1 {
		t.Errorf("no queue stays no queue: %+v", l)
	}
}
