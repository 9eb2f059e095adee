package saver

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Bolt's status records survive a reopen, and Expire deletes them with
// every per-uid state, over several chunks when there are many.
func TestBoltStatusDurableAndSwept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "saver.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	uids := []string{"a", "b", "c", "d", "e", "f", "g"}
	if err := st.OpenStatus(bg, push.MessageStatus{MsgID: 3, App: 1, Kind: push.KindMulticast, Expires: exp}, uids); err != nil {
		t.Fatal(err)
	}
	mustSave(t, st, msg(3, 1, exp), "a", "b")
	_ = st.Close()
	st, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.chunk = 3
	wantStatus(t, st, 1, 3, counts{stored: 2})
	wantState(t, st, 1, 3, "b", push.StateStored)
	if _, err := st.Expire(bg, time.Unix(statusDrop(exp), 0)); err != nil {
		t.Fatal(err)
	}
	wantNoStatus(t, st, 1, 3)
	err = st.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketStatus, bucketSState, bucketExpiry} {
			if n := tx.Bucket(name).Stats().KeyN; n != 0 {
				t.Errorf("bucket %s holds %d keys after the sweep", name, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
