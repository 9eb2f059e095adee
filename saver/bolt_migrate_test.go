package saver

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/push"
)

// copyFixture copies testdata/bolt-v1.db, a layout 2 file written by the
// previous version (testdata/genbolt/main.go says how and what it holds).
func copyFixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bolt-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "saver.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The previous version's data file opens with every uid's broadcast state
// folded into cursors: nothing lost, nothing ACKed comes back, parked stays
// parked, load counts count on. Once as is, once after a crash that left
// the migration one chunk in.
func TestBoltMigratesPreviousVersion(t *testing.T) {
	defer func(n int) { migrateChunk = n }(migrateChunk)
	migrateChunk = 2 // the fixture's 13 backs records take several transactions
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, path string)
	}{
		{"fresh", func(*testing.T, string) {}},
		{"resumed after a crash", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				if _, err := tx.CreateBucketIfNotExists(bucketBseq); err != nil {
					return err
				}
				if _, err := tx.CreateBucketIfNotExists(bucketBcur); err != nil {
					return err
				}
				return assignSeqs(tx)
			})
			if err == nil {
				err = db.Update(func(tx *bolt.Tx) error {
					refs, all := map[uint64]bref{}, map[uint32][]uint64{}
					seqs := tx.Bucket(bucketBseq)
					_ = tx.Bucket(bucketBcast).ForEach(func(k, v []byte) error {
						app, expire, _ := decodeHeader(v)
						r := bref{id: beUint64(k), seq: beUint64(seqs.Get(k)), app: app, expire: expire}
						refs[r.id], all[app] = r, append(all[app], r.seq)
						return nil
					})
					_, _, err := foldBacks(tx, refs, all, 3)
					return err
				})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := copyFixture(t)
			tc.prepare(t, path)
			b, err := OpenBoltWith(path, BoltOptions{Limits: Limits{MaxLoads: 3}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			checkMigrated(t, b)
			var version []byte
			var backs bool
			var cursors int
			_ = b.db.View(func(tx *bolt.Tx) error {
				version = bytes.Clone(tx.Bucket(bucketMeta).Get(keyVersion))
				backs = tx.Bucket(bucketBacks) != nil
				cursors = tx.Bucket(bucketBcur).Stats().KeyN
				return nil
			})
			if !bytes.Equal(version, fileVersion) || backs {
				t.Fatalf("after migration: layout %v (want %v), backs bucket left: %v", version, fileVersion, backs)
			}
			// acker, ooo, parker, loader, inbox for app 1 and app 2 (newcomer
			// and the others' new state included: one record per uid and app).
			if cursors == 0 || cursors > 8 {
				t.Fatalf("%d cursor records", cursors)
			}
			// A reopen does not migrate again, and keeps the answers.
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b, err = OpenBoltWith(path, BoltOptions{Limits: Limits{MaxLoads: 3}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			checkReopened(t, b)
		})
	}
}

// checkMigrated checks what the fixture's uids load and ACK (MaxLoads 3),
// and the counts.
func checkMigrated(t *testing.T, b *Bolt) {
	t.Helper()
	app1, both := []uint32{1}, []uint32{1, 2}
	if s := mustStats(t, b); s.Broadcasts != 5 || s.Pending != 2 || s.PendingPerApp[1] != 1 || s.PendingPerApp[2] != 1 {
		t.Fatalf("stats: %+v", s)
	}
	wantStatus(t, b, 1, 101, counts{stored: 1, acked: 1, parked: 1})
	wantStatus(t, b, 1, 103, counts{stored: 1, acked: 2})
	wantStatus(t, b, 2, 201, counts{stored: 1, acked: 1})
	for _, tc := range []struct {
		uid   string
		id    uint64
		state string
	}{
		{"acker", 101, push.StateAcked}, {"acker", 102, push.StateStored},
		{"ooo", 103, push.StateAcked}, {"ooo", 101, push.StateStored},
		{"parker", 101, push.StateParked}, {"parker", 102, push.StateAcked}, {"parker", 103, push.StateAcked},
		{"loader", 101, push.StateStored},
		{"inbox", 201, push.StateAcked}, {"inbox", 101, push.StateStored},
		{"newcomer", 101, push.StateStored},
	} {
		wantState(t, b, cond(tc.id > 200, uint32(2), 1), tc.id, tc.uid, tc.state)
	}
	// ACKed: never again; unACKed: still there.
	mustAckFor(t, b, "acker", app1, 0, 101)
	wantLoadApps(t, b, "acker", app1, 102, 103)
	mustAckFor(t, b, "ooo", app1, 0, 103)
	wantLoadApps(t, b, "ooo", app1, 101, 102)
	// Parked: never loaded; its ACK still takes effect.
	wantLoadApps(t, b, "parker", app1)
	// Two loads before: the third parks.
	wantLoadApps(t, b, "loader", app1, 101, 102, 103)
	wantLoadApps(t, b, "loader", app1)
	wantState(t, b, 1, 102, "loader", push.StateParked)
	wantStatus(t, b, 1, 101, counts{stored: 1, acked: 1, parked: 2})
	mustAckFor(t, b, "parker", app1, 1, 101)
	wantStatus(t, b, 1, 101, counts{stored: 1, acked: 2, parked: 2})
	// Unicast entries and their load counts are untouched; 201 was ACKed.
	wantLoadApps(t, b, "inbox", both, 1, 3, 101, 102, 103)
	mustUserStats(t, b, "inbox", 2, 0)
	// The expired broadcast 104 is not delivered.
	wantLoadApps(t, b, "newcomer", both, 101, 102, 103, 201)
	// New broadcasts come after the migrated ones, for everyone.
	mustBroadcast(t, b, msg(50, 1, 0)) // a lower id, saved later
	wantLoadApps(t, b, "parker", app1, 50)
	mustAckFor(t, b, "acker", app1, 3, 102, 103, 50)
	wantLoadApps(t, b, "acker", app1)
	if n, err := b.Expire(bg, time.Now()); err != nil || n != 1 {
		t.Fatalf("expire = %d %v, want 1 (broadcast 104)", n, err)
	}
}

// checkReopened checks the state checkMigrated left, after a reopen.
func checkReopened(t *testing.T, b *Bolt) {
	t.Helper()
	app1 := []uint32{1}
	wantLoadApps(t, b, "acker", app1)
	wantLoadApps(t, b, "parker", app1, 50)
	wantLoadApps(t, b, "ooo", app1, 50, 101, 102)
	wantLoadApps(t, b, "ooo", app1, 50, 101, 102) // the third load of 101 and 102
	wantLoadApps(t, b, "ooo", app1, 50)
	wantLoadApps(t, b, "ooo", app1)
	wantLoadApps(t, b, "loader", app1, 50)
	wantState(t, b, 1, 101, "loader", push.StateParked)
	wantState(t, b, 1, 101, "acker", push.StateAcked)
	if s := mustStats(t, b); s.Broadcasts != 5 || s.Pending != 2 {
		t.Fatalf("stats after reopen: %+v", s)
	}
}
