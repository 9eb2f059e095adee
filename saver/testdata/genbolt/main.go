//go:build ignore

// genbolt writes saver/testdata/bolt-v1.db, the fixture of
// TestBoltMigratesPreviousVersion: a data file in bolt layout 2, the one
// before broadcast cursors (one backs record per broadcast and uid). It is
// meant to run against that version (git commit 5ba08e2):
//
//	git worktree add /tmp/prev 5ba08e2
//	cp saver/testdata/genbolt/main.go /tmp/prev/genbolt.go
//	(cd /tmp/prev && go run genbolt.go /work/main/saver/testdata/bolt-v1.db)
//
// Nothing expires by the clock: broadcasts never do (one is expired from the
// start, unswept), status records last until 2100.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/saver"
)

const far = 4102444800 // 2100-01-01

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: genbolt out.db")
	}
	_ = os.Remove(os.Args[1])
	st, err := saver.OpenBoltWith(os.Args[1], saver.BoltOptions{Limits: saver.Limits{MaxLoads: 3}})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	bcast := func(id uint64, app uint32, expire int64) {
		must(st.OpenStatus(ctx, push.MessageStatus{MsgID: id, App: app, Kind: push.KindBroadcast,
			Created: time.Now().Unix(), Expires: far, Targets: 10}, nil))
		must(st.SaveBroadcast(ctx, push.Message{ID: id, App: app, QoS: push.QoS1, Broadcast: true,
			Expire: expire, Payload: fmt.Appendf(nil, "b%d", id)}))
	}
	load := func(uid string, apps ...uint32) {
		msgs, err := st.Load(ctx, uid, apps, 0)
		must(err)
		var ids []uint64
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		log.Printf("load %s %v: %v", uid, apps, ids)
	}
	ack := func(uid string, apps []uint32, ids ...uint64) {
		n, err := st.Ack(ctx, uid, apps, ids)
		must(err)
		log.Printf("ack %s %v: %d", uid, ids, n)
	}
	app1 := []uint32{1}

	bcast(101, 1, 0)
	bcast(102, 1, 0)
	bcast(103, 1, 0)
	bcast(201, 2, 0)
	bcast(104, 1, 1000) // expired from the start, never swept

	// acker ACKed broadcast 101 of 101..103, each loaded once.
	load("acker", 1)
	ack("acker", app1, 101)
	// ooo ACKed 103 only, out of order, without loading.
	ack("ooo", app1, 103)
	// parker ACKed 102 and 103, and 101 is parked (three loads).
	load("parker", 1)
	ack("parker", app1, 102, 103)
	load("parker", 1)
	load("parker", 1)
	// loader loaded 101..103 twice: one more load parks them.
	load("loader", 1)
	load("loader", 1)
	// inbox has unicast entries 1, 2 (app 1) and 3 (app 2); 2 is ACKed,
	// and it ACKed broadcast 201 of app 2.
	for _, m := range []struct {
		id  uint64
		app uint32
	}{{1, 1}, {2, 1}, {3, 2}} {
		must(st.Save(ctx, push.Message{ID: m.id, App: m.app, QoS: push.QoS1, Payload: fmt.Appendf(nil, "u%d", m.id)}, []string{"inbox"}))
	}
	load("inbox", 1, 2)
	ack("inbox", []uint32{1, 2}, 2, 201)
	must(st.Close())
}
