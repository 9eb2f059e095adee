package center

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
)

// pushesOf returns the uids pushed msg id on room.
func (e *env) pushesOf(room string, id string) []string {
	var out []string
	for _, p := range e.rooms.pushed() {
		if p.room == room && strconv.FormatUint(p.msg.ID, 10) == id {
			for _, t := range p.targets {
				out = append(out, t.UID)
			}
		}
	}
	return out
}

// A registry that fails (a register restart) and then recovers: the QoS 1
// push is stored, answered with online 0 (nobody was reached), queued, and
// reaches the connected recipient once the register answers, without any
// reconnect.
func TestPushLookupFailsThenRecovers(t *testing.T) {
	e := newEnv(t, Config{LookupRetry: 50 * time.Millisecond}, nil)
	e.reg.add(session("u1", "room-a", 11, 1), session("u2", "room-b", 22, 1))
	e.reg.setLookup(errDown)
	a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1","u2"],"text":"x"}`)
	m := a.json(t)
	if a.status != 200 || m["online"] != 0.0 || m["stored"] != 2.0 {
		t.Fatalf("answer %d %s, want 200 online 0 stored 2", a.status, a.body)
	}
	id := m["msg_id"].(string)
	if len(e.store.saved) != 1 || len(e.rooms.pushed()) != 0 {
		t.Fatalf("saved %d, pushed %v", len(e.store.saved), e.rooms.pushed())
	}
	if n := e.svc.retry.len(); n != 1 {
		t.Fatalf("retry queue holds %d, want 1", n)
	}
	lookups := func() int {
		n := 0
		for _, c := range e.ev.list() {
			if c == "lookup" {
				n++
			}
		}
		return n
	}
	testkit.WaitFor(t, "the queue to retry", 5*time.Second, func() bool { return lookups() >= 4 })
	e.reg.setLookup(nil)
	testkit.WaitFor(t, "the pushes after recovery", 5*time.Second, func() bool {
		return slices.Equal(e.pushesOf("room-a", id), []string{"u1"}) && slices.Equal(e.pushesOf("room-b", id), []string{"u2"})
	})
	testkit.WaitFor(t, "the queue to empty", 5*time.Second, func() bool { return e.svc.retry.len() == 0 })
	if e.svc.retry.answered.Load() != 1 || e.svc.retry.droppedFull.Load() != 0 {
		t.Fatalf("answered %d dropped %d", e.svc.retry.answered.Load(), e.svc.retry.droppedFull.Load())
	}
	// No more lookups once answered.
	n := lookups()
	time.Sleep(3 * retryFirst) // a quiet period, not a wait for a state
	if lookups() != n {
		t.Fatal("the queue keeps looking up after the answer")
	}
}

// A registry that recovers within LookupRetry: the request itself reaches
// the recipient and reports it online.
func TestPushLookupRetriedInRequest(t *testing.T) {
	e := newEnv(t, Config{LookupRetry: 3 * time.Second}, nil)
	e.reg.add(session("u1", "room-a", 11, 1))
	e.reg.setLookup(errDown)
	time.AfterFunc(150*time.Millisecond, func() { e.reg.setLookup(nil) })
	a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1","u4"],"text":"x"}`)
	m := a.json(t)
	if a.status != 200 || m["online"] != 1.0 || m["stored"] != 2.0 {
		t.Fatalf("answer %d %s, want online 1 (reached after the retry) stored 2", a.status, a.body)
	}
	if n := e.svc.retry.len(); n != 0 || e.svc.retry.queued.Load() != 0 {
		t.Fatalf("retry queue holds %d, queued %d: want nothing", n, e.svc.retry.queued.Load())
	}
}

// Partial answers: what was answered is pushed at once (both QoS), online
// counts only those; the unanswered uid of a QoS 1 push is queued, a QoS 0
// push forgets it.
func TestPushPartialAnswer(t *testing.T) {
	e := newEnv(t, Config{LookupRetry: -1}, nil)
	e.reg.add(session("u1", "room-a", 11, 1), session("u2", "room-b", 22, 1))
	e.reg.setLookup(nil, "u2")

	a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1","u2"],"text":"x","qos":0}`)
	if m := a.json(t); a.status != 200 || m["online"] != 1.0 || m["stored"] != 0.0 {
		t.Fatalf("qos 0: %d %s, want online 1", a.status, a.body)
	}
	if e.svc.retry.len() != 0 {
		t.Fatal("a QoS 0 push was queued")
	}
	// Nothing answered at all: QoS 0 is refused as before.
	if a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u2"],"text":"x","qos":0}`); a.status != 503 {
		t.Fatalf("qos 0, nothing answered: %d %s, want 503", a.status, a.body)
	}

	a = e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1","u2"],"text":"y"}`)
	m := a.json(t)
	if a.status != 200 || m["online"] != 1.0 || m["stored"] != 2.0 {
		t.Fatalf("qos 1: %d %s, want online 1 stored 2", a.status, a.body)
	}
	id := m["msg_id"].(string)
	if !slices.Equal(e.pushesOf("room-a", id), []string{"u1"}) || len(e.pushesOf("room-b", id)) != 0 {
		t.Fatalf("pushed at once: %v %v", e.pushesOf("room-a", id), e.pushesOf("room-b", id))
	}
	if e.svc.retry.len() != 1 {
		t.Fatalf("retry queue holds %d, want 1", e.svc.retry.len())
	}
	e.reg.setLookup(nil)
	testkit.WaitFor(t, "u2's push after recovery", 5*time.Second, func() bool { return slices.Equal(e.pushesOf("room-b", id), []string{"u2"}) })
	// u1 is not pushed twice: only the unanswered uid was queued.
	if got := e.pushesOf("room-a", id); len(got) != 1 {
		t.Fatalf("u1 pushed %d times", len(got))
	}
}

// The queue is bounded per app: when full, the push is still accepted and
// stored, and the drop is counted; other apps have their own bound.
func TestRetryQueueBounded(t *testing.T) {
	e := newEnv(t, Config{LookupRetry: -1, RetryQueue: 2}, nil)
	e.reg.setLookup(errDown)
	for i := range 3 {
		a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1"],"text":"x"}`)
		if m := a.json(t); a.status != 200 || m["online"] != 0.0 || m["stored"] != 1.0 {
			t.Fatalf("push %d: %d %s", i, a.status, a.body)
		}
	}
	if n, d := e.svc.retry.len(), e.svc.retry.droppedFull.Load(); n != 2 || d != 1 {
		t.Fatalf("queue holds %d, dropped %d; want 2 and 1", n, d)
	}
	if len(e.store.saved) != 3 {
		t.Fatalf("stored %d messages, want all 3", len(e.store.saved))
	}
	if a := e.do(t, "POST", "/v1/apps/2/push", key2, `{"uids":["u1"],"text":"x"}`); a.status != 200 || e.svc.retry.len() != 3 {
		t.Fatalf("app 2: %d, queue %d; want its own bound", a.status, e.svc.retry.len())
	}
}

// A queued message whose TTL passes leaves the queue (still stored: the
// store expires it).
func TestRetryQueueExpires(t *testing.T) {
	e := newEnv(t, Config{LookupRetry: -1}, nil)
	e.reg.setLookup(errDown)
	if a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1"],"text":"x","ttl":1}`); a.status != 200 {
		t.Fatalf("push: %d %s", a.status, a.body)
	}
	testkit.WaitFor(t, "the message to expire from the queue", 5*time.Second, func() bool {
		return e.svc.retry.len() == 0 && e.svc.retry.expired.Load() == 1
	})
}

// Shutdown stops the drainer (Shutdown waits for it), counts what it held
// as dropped, and later pushes are not queued.
func TestRetryQueueShutdown(t *testing.T) {
	e := newEnv(t, Config{LookupRetry: -1}, nil)
	e.reg.setLookup(errDown)
	for range 2 {
		if a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1"],"text":"x"}`); a.status != 200 {
			t.Fatalf("push: %d %s", a.status, a.body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n, d := e.svc.retry.len(), e.svc.retry.droppedShutdown.Load(); n != 0 || d != 2 {
		t.Fatalf("after Shutdown: queue %d, dropped %d; want 0 and 2", n, d)
	}
	// The handler still runs (httptest), the queue refuses.
	if a := e.do(t, "POST", "/v1/apps/1/push", key1, `{"uids":["u1"],"text":"x"}`); a.status != 200 || e.svc.retry.droppedShutdown.Load() != 3 {
		t.Fatalf("push after Shutdown: %d, dropped %d", a.status, e.svc.retry.droppedShutdown.Load())
	}
	e.reg.setLookup(nil)
	time.Sleep(3 * retryFirst) // a quiet period: nothing drains any more
	if len(e.rooms.pushed()) != 0 {
		t.Fatal("pushed after Shutdown")
	}
}
