package saver

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/internal/testkit"
)

func openCommitDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("b"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestGroupCommit: writers that queue while a commit is under way share the
// next commit; a function that fails is taken out and answered alone with
// its own error, the others still commit; a panic reaches only its writer.
func TestGroupCommit(t *testing.T) {
	cases := []struct {
		name    string
		writers int
		fail    int // index of the writer whose function fails, or -1
		panics  int // index of the writer whose function panics, or -1
		max     int
	}{
		{"shared", 8, -1, -1, 100},
		{"one fails", 8, 3, -1, 100},
		{"one panics", 8, -1, 5, 100},
		{"bounded by max", 12, -1, -1, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := openCommitDB(t)
			max := tc.max
			g := newGroupCommit(db, max)

			// Hold the write lock so that the first writer (the leader)
			// blocks in its commit while the others queue behind it.
			release := make(chan struct{})
			held := make(chan struct{})
			go func() {
				_ = db.Update(func(*bolt.Tx) error {
					close(held)
					<-release
					return nil
				})
			}()
			<-held

			var mu sync.Mutex
			txOf := map[int]int{} // writer -> tx id of its last run
			errs := make([]error, tc.writers)
			panicked := make([]any, tc.writers)
			var wg sync.WaitGroup
			queued := func() int { // -1 while nobody leads
				g.mu.Lock()
				defer g.mu.Unlock()
				return cond(g.leading, len(g.queue), -1)
			}
			for i := range tc.writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { panicked[i] = recover() }()
					errs[i] = g.do(func(tx *bolt.Tx) error {
						mu.Lock()
						txOf[i] = tx.ID()
						mu.Unlock()
						if i == tc.fail {
							return fmt.Errorf("writer %d refused", i)
						}
						if i == tc.panics {
							panic(fmt.Sprintf("writer %d", i))
						}
						return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%02d", i), []byte{byte(i)})
					})
				}()
				// One at a time, so writer 0 leads (it took itself off the
				// queue and waits for the lock) and the rest queue in order.
				testkit.WaitFor(t, fmt.Sprintf("writer %d queued", i), 5*time.Second, func() bool { return queued() == i })
			}
			close(release)
			wg.Wait()

			for i := range tc.writers {
				switch {
				case i == tc.panics:
					if panicked[i] == nil {
						t.Errorf("writer %d: no panic", i)
					}
				case i == tc.fail:
					if errs[i] == nil || errs[i].Error() != fmt.Sprintf("writer %d refused", i) {
						t.Errorf("writer %d: err %v, want its own error", i, errs[i])
					}
				default:
					if errs[i] != nil || panicked[i] != nil {
						t.Errorf("writer %d: err %v, panic %v", i, errs[i], panicked[i])
					}
				}
			}
			_ = db.View(func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("b"))
				for i := range tc.writers {
					v := b.Get(fmt.Appendf(nil, "k%02d", i))
					want := i != tc.fail && !(i == tc.panics)
					if (v != nil) != want {
						t.Errorf("writer %d: stored %v, want %v", i, v != nil, want)
					}
				}
				return nil
			})
			// Writer 0 committed alone; the others queued during its commit
			// and share commits of at most max writers.
			commits := map[int]int{}
			for i := 1; i < tc.writers; i++ {
				if i == tc.fail || (i == tc.panics) {
					continue
				}
				commits[txOf[i]]++
			}
			want := (tc.writers - 1 + max - 1) / max
			if len(commits) != want {
				t.Errorf("writers 1..%d committed in %d transactions (%v), want %d", tc.writers-1, len(commits), commits, want)
			}
			for id, n := range commits {
				if n > max {
					t.Errorf("tx %d carried %d writes, max %d", id, n, max)
				}
			}
		})
	}
}

// TestGroupCommitClosed: a write after the file closed fails with ErrClosed
// (through Bolt.batch's mapping), not a hang.
func TestGroupCommitClosed(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	_ = b.db.Close()
	err = b.batch(t.Context(), func(*bolt.Tx) error { return nil })
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err %v, want ErrClosed", err)
	}
}
