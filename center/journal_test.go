package center

import (
	"context"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// The recovery of a center's journal queues what an earlier run of the
// center left there, never a push this run journaled itself: one written
// while the recovery reads the journal is not in the queue yet (it was
// queued twice, and filled app 3's queue, in the root package's
// TestSendQueueJournalRestart/redis).
func TestRecoverJournalSkipsOwnPushes(t *testing.T) {
	e := newEnv(t, Config{ID: "center-a"}, func(c *config.Config) { c.Apps[2].PushQueue = 8 })
	ctx := context.Background()
	old := push.Message{ID: 11, App: 3, Payload: []byte("left by the last run")}
	if err := e.store.Enqueue(ctx, push.QueuedPush{Msg: old, UIDs: []string{"u1"}, Owner: "center-a", At: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	// Another center's entry is not this one's to queue.
	if err := e.store.Enqueue(ctx, push.QueuedPush{Msg: push.Message{ID: 12, App: 3}, UIDs: []string{"u2"}, Owner: "center-b", At: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	// This run's push, journaled and not in the queue yet.
	e.svc.journal(ctx, push.Message{ID: 13, App: 3, Payload: []byte("mine")}, []string{"u3"})
	if n := e.svc.recoverJournal(ctx); n != 1 {
		t.Fatalf("recovered %d pushes, want 1 (the last run's)", n)
	}
	if n := e.svc.recoverJournal(ctx); n != 0 {
		t.Fatalf("a second recovery queued %d more, want 0", n)
	}
	// Released and forgotten, an id is no longer this run's.
	e.svc.unjournal(ctx, []uint64{13})
	if e.svc.mine(13) {
		e.svc.forget(13)
	} else {
		t.Fatal("13 is still this run's after its release")
	}
}
