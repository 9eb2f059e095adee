package saver

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// The delivery status keys of RedisStore carry the record's drop time as
// their TTL, and no step creates a key for a message without a record (an
// HINCRBY alone would make one that never expires).
func TestRedisStatusKeys(t *testing.T) {
	e := newRedisEnv(t)
	st := e.open(t, RedisOptions{})
	exp := time.Now().Add(time.Hour).Unix()
	if err := st.OpenStatus(bg, push.MessageStatus{MsgID: 5, App: 1, Kind: push.KindUnicast, Expires: exp}, []string{"u"}); err != nil {
		t.Fatal(err)
	}
	drop := time.Unix(statusDrop(exp), 0)
	for _, k := range []string{st.k.status(5), st.k.statusUsers(5)} {
		at, err := e.rc.ExpireTime(bg, k).Result()
		if err != nil || at != time.Duration(drop.Unix())*time.Second {
			t.Fatalf("%s expires at %v %v, want %v", k, at, err, drop.Unix())
		}
	}
	if score, err := e.rc.ZScore(bg, st.k.statusIndex(), "5").Result(); err != nil || int64(score) != drop.Unix() {
		t.Fatalf("index score %v %v", score, err)
	}
	// Steps of a message without a record (Save opens one only for a
	// message with an expiry): Save, AddSent, Ack, a broadcast ACK.
	mustSave(t, st, msg(6, 1, 0), "u")
	mustSent(t, st, push.StatusDelta{MsgID: 6, App: 1, UID: "u", Sent: 1})
	mustAck(t, st, "u", 1, 6)
	mustBroadcast(t, st, msg(7, 1, exp))
	mustAck(t, st, "u", 1, 7)
	if err := st.flushStatus(bg); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{6, 7} {
		if n, err := e.rc.Exists(bg, st.k.status(id), st.k.statusUsers(id)).Result(); err != nil || n != 0 {
			t.Fatalf("keys of message %d without a record: %d %v", id, n, err)
		}
	}
	// Expire past the drop time empties the index and deletes the keys.
	if _, err := st.Expire(bg, drop); err != nil {
		t.Fatal(err)
	}
	if n, err := e.rc.Exists(bg, st.k.status(5), st.k.statusUsers(5), st.k.statusIndex()).Result(); err != nil || n != 0 {
		t.Fatalf("keys left after the drop time: %d %v", n, err)
	}
}
