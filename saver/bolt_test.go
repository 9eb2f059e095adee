package saver

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/push"
)

func openBolt(t *testing.T, path string) *Bolt {
	t.Helper()
	b, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// A restart loses nothing that was not ACKed, and brings back nothing that was.
func TestBoltReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	b := openBolt(t, path)
	exp := future()
	mustSave(t, b, msg(1, 1, exp), "u", "v")
	mustSave(t, b, msg(2, 2, 0), "u")
	mustSave(t, b, msg(3, 1, exp), "u")
	mustBroadcast(t, b, msg(4, 1, exp))
	mustBroadcast(t, b, msg(5, 2, 0))
	mustAck(t, b, "u", 2, 3, 4, 99) // unicast 3 and broadcast 4; 99 is unknown
	before := mustStats(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBolt(t, path)
	for _, tc := range []struct {
		uid  string
		want []uint64
	}{
		{"u", []uint64{1, 2, 5}},
		{"v", []uint64{1, 4, 5}},
		{"new", []uint64{4, 5}},
	} {
		if got := loadIDs(t, b, tc.uid, []uint32{1, 2}, 0); !slices.Equal(got, tc.want) {
			t.Errorf("%s after reopen loads %v, want %v", tc.uid, got, tc.want)
		}
	}
	after := mustStats(t, b)
	if after.Pending != before.Pending || after.Broadcasts != before.Broadcasts ||
		!mapsEqual(after.PendingPerApp, before.PendingPerApp) {
		t.Errorf("stats after reopen %+v, before %+v", after, before)
	}
	if after.Saved != 0 || after.Acked != 0 {
		t.Errorf("activity counters are per run: %+v", after)
	}
	// The expiry index survived too.
	if n, err := b.Expire(bg, time.Unix(exp, 0)); err != nil || n != 3 {
		t.Errorf("expire after reopen = %d %v, want 3 (1 for u and v, broadcast 4)", n, err)
	}
	if got := loadIDs(t, b, "u", []uint32{1, 2}, 0); !slices.Equal(got, []uint64{2, 5}) {
		t.Errorf("u after expiry: %v", got)
	}
}

func mapsEqual(a, b map[uint32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A big sweep runs in bounded transactions. A broadcast leaves no per-uid
// record to sweep: the uids' cursors drop it when next normalized.
func TestBoltExpireInChunks(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "saver.db"))
	b.chunk = 7
	now := time.Now().Unix()
	var uids []string
	for i := range 50 {
		uids = append(uids, fmt.Sprint("u", i))
	}
	mustSave(t, b, msg(1, 1, now-5), uids...)
	mustSave(t, b, msg(2, 1, now+3600), uids...)
	mustBroadcast(t, b, msg(3, 1, now-1))
	mustBroadcast(t, b, msg(4, 1, now+3600))
	for _, uid := range uids[:30] {
		mustAck(t, b, uid, 1, 3, 4) // 3 expired already: as if unknown
	}
	n, err := b.Expire(bg, time.Unix(now, 0))
	if err != nil || n != 51 {
		t.Fatalf("expire = %d %v, want 51", n, err)
	}
	counts := bucketCounts(t, b)
	// expiry: the 50 inbox entries of message 2, broadcast 4, and the
	// delivery status records Save opened for messages 1 and 2 (dropped
	// StatusGrace after their expiry).
	want := map[string]int{"inbox": 50, "bcast": 1, "bcur": 30, "expiry": 53}
	if !maps2Equal(counts, want) {
		t.Fatalf("records after chunked expire %v, want %v", counts, want)
	}
	if s := mustStats(t, b); s.Pending != 50 || s.Broadcasts != 1 || s.Expired != 51 {
		t.Fatalf("stats %+v", s)
	}
}

func maps2Equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func bucketCounts(t *testing.T, b *Bolt) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := b.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketInbox, bucketBcast, bucketBcur, bucketExpiry} {
			out[string(name)] = tx.Bucket(name).Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Corrupt records are skipped by Load and at open, deleted by Ack, and never panic.
func TestBoltCorruptRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	b := openBolt(t, path)
	mustSave(t, b, msg(2, 1, 0), "u")
	mustBroadcast(t, b, msg(3, 1, 0))
	err := b.db.Update(func(tx *bolt.Tx) error {
		inbox, bc := tx.Bucket(bucketInbox), tx.Bucket(bucketBcast)
		if err := inbox.Put(inboxKey(nil, "u", 1), []byte{valueVersion, 1}); err != nil { // too short
			return err
		}
		if err := inbox.Put(inboxKey(nil, "u", 5), []byte("\x09 wrong version...")); err != nil {
			return err
		}
		if err := bc.Put([]byte("short"), []byte("x")); err != nil {
			return err
		}
		return bc.Put(idKey(nil, 7), []byte{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := loadIDs(t, b, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("load with corrupt records: %v", got)
	}
	mustAck(t, b, "u", 1, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBolt(t, path)
	if got := loadIDs(t, b, "u", []uint32{1}, 0); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("load after reopen: %v", got)
	}
	if s := mustStats(t, b); s.Pending != 1 || s.Broadcasts != 1 {
		t.Fatalf("corrupt records counted: %+v", s)
	}
}

func TestBoltOpenErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	b := openBolt(t, path)
	if _, err := OpenBoltWith(path, BoltOptions{LockTimeout: 50 * time.Millisecond}); err == nil {
		t.Fatal("a second open of a locked file succeeded")
	}
	if err := b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte{99})
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open of an unknown layout: %v, want ErrCorrupt", err)
	}
	if _, err := OpenBolt(filepath.Join(t.TempDir(), "missing", "dir", "saver.db")); err == nil {
		t.Fatal("open in a missing directory succeeded")
	}
}

// Broadcast payloads come from the cache; callers share them read-only, but
// the cache must not share the caller's buffer.
func TestBoltBroadcastPayloadOwned(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "saver.db"))
	m := push.Message{ID: 1, App: 1, QoS: push.QoS1, Broadcast: true, Payload: []byte("abc")}
	if err := b.SaveBroadcast(bg, m); err != nil {
		t.Fatal(err)
	}
	m.Payload[0] = 'X'
	got, err := b.Load(bg, "u", []uint32{1}, 0)
	if err != nil || len(got) != 1 || string(got[0].Payload) != "abc" {
		t.Fatalf("load %+v %v", got, err)
	}
}

// Load counts, parking and the per-user counts survive a reopen.
func TestBoltLimitsReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	lim := Limits{MaxLoads: 2, InboxCap: 3}
	b, err := OpenBoltWith(path, BoltOptions{Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 4; id++ {
		mustSave(t, b, msg(id, 1, 0), "u")
	}
	wantLoad(t, b, "u", 0, 2, 3, 4)
	wantLoad(t, b, "u", 1, 2) // 2 is parked now; 3 and 4 were loaded once
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBoltWith(path, BoltOptions{Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	mustUserStats(t, b, "u", 3, 1)
	if s := mustStats(t, b); s.Parked != 1 || s.Pending != 3 {
		t.Fatalf("stats after reopen: %+v", s)
	}
	wantLoad(t, b, "u", 0, 3, 4) // their second load: parked after it
	wantLoad(t, b, "u", 0)
	mustSave(t, b, msg(5, 1, 0), "u") // the cap still holds: 2 (parked) goes
	mustUserStats(t, b, "u", 3, 2)
	if s := mustStats(t, b); s.Parked != 2 {
		t.Fatalf("stats at the end: %+v", s)
	}
}

// A layout 1 file (before parking and the cap) opens as layout 2 with its
// per-user counts rebuilt; its ACK records keep meaning "ACKed".
func TestBoltMigratesLayout1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	b := openBolt(t, path)
	mustSave(t, b, msg(1, 1, 0), "u", "v")
	mustSave(t, b, msg(2, 1, 0), "u")
	mustBroadcast(t, b, msg(3, 1, 0))
	mustAck(t, b, "u", 1, 3)
	// Turn the file back into layout 1.
	err := b.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketLoads, bucketCount} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte{1})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := OpenBoltWith(path, BoltOptions{Limits: Limits{InboxCap: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close() })
	mustUserStats(t, b2, "u", 2, 0)
	mustUserStats(t, b2, "v", 1, 0)
	wantLoad(t, b2, "u", 0, 1, 2)
	wantLoad(t, b2, "v", 0, 1, 3)
	mustSave(t, b2, msg(4, 1, 0), "u") // counted right: the cap drops 1
	wantLoad(t, b2, "u", 0, 2, 4)
	var version []byte
	_ = b2.db.View(func(tx *bolt.Tx) error {
		version = bytes.Clone(tx.Bucket(bucketMeta).Get(keyVersion))
		return nil
	})
	if !bytes.Equal(version, fileVersion) {
		t.Fatalf("layout after migration %v, want %v", version, fileVersion)
	}
}
