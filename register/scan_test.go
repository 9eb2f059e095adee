package register

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// scanAll pages through every session with app bound and fails on a
// duplicate session, an over-full page or an empty page before the end. The
// map is keyed by uid, and by "uid#connID" for a uid's further connections.
func scanAll(t *testing.T, s *Service, app uint32, limit int) map[string]push.Session {
	t.Helper()
	all := map[string]push.Session{}
	var cursor uint64
	for pages := 0; ; pages++ {
		if pages > 1_000_000 {
			t.Fatal("scan does not end")
		}
		page, next, err := s.Scan(context.Background(), app, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d over limit %d", len(page), limit)
		}
		if len(page) == 0 && next != 0 {
			t.Fatalf("empty page with next cursor %#x", next)
		}
		for _, se := range page {
			key := se.UID
			if prev, ok := all[key]; ok && prev.ConnID != se.ConnID {
				key = fmt.Sprintf("%s#%d", se.UID, se.ConnID)
			}
			if _, dup := all[key]; dup {
				t.Fatalf("session %s returned twice", key)
			}
			if app != 0 && !se.HasApp(app) {
				t.Fatalf("uid %s without app %d returned: %v", se.UID, app, se.Apps)
			}
			all[key] = se
		}
		if next == 0 {
			return all
		}
		cursor = next
	}
}

func TestScan(t *testing.T) {
	ctx := context.Background()
	const users = 1000
	for _, shards := range []int{1, 7, 256} {
		s := newTest(t, shards)
		for i := range users {
			apps := []uint32{1}
			if i%4 == 0 {
				apps = append(apps, 2)
			}
			if _, err := s.Register(ctx, sess(fmt.Sprint("u", i), "r", uint64(i), apps...)); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			app   uint32
			limit int
			want  int
		}{
			{0, 1, users}, {0, 3, users}, {0, 100, users}, {0, 5000, users},
			{1, 50, users}, {2, 1, users / 4}, {2, 33, users / 4}, {3, 10, 0},
		} {
			t.Run(fmt.Sprintf("shards=%d/app=%d/limit=%d", shards, tc.app, tc.limit), func(t *testing.T) {
				if got := len(scanAll(t, s, tc.app, tc.limit)); got != tc.want {
					t.Fatalf("scan returned %d sessions, want %d", got, tc.want)
				}
			})
		}
	}
}

func TestScanLimitDefaultAndCursor(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 4)
	for i := range DefaultScanLimit + 10 {
		if _, err := s.Register(ctx, sess(fmt.Sprint("u", i), "r", 1)); err != nil {
			t.Fatal(err)
		}
	}
	page, next, err := s.Scan(ctx, 0, 0, 0)
	if err != nil || len(page) != DefaultScanLimit || next == 0 {
		t.Fatalf("default page: %d sessions, next %#x, err %v", len(page), next, err)
	}
	if _, _, err := s.Scan(ctx, 0, uint64(4)<<seqBits, 10); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cursor past the last shard: %v, want ErrInvalid", err)
	}
	empty := newTest(t, 4)
	if page, next, err := empty.Scan(ctx, 0, 0, 10); err != nil || len(page) != 0 || next != 0 {
		t.Fatalf("empty store scan: %v %#x %v", page, next, err)
	}
}

// Removing most sessions compacts the shard order; cursors taken before the
// compaction still resume at the right place.
func TestScanAcrossCompaction(t *testing.T) {
	ctx := context.Background()
	s := newTest(t, 1)
	const users = 2000
	for i := range users {
		if _, err := s.Register(ctx, sess(fmt.Sprint("u", i), "r", uint64(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	page, cursor, err := s.Scan(ctx, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, se := range page {
		seen[se.UID] = true
	}
	for i := range users {
		if i%10 != 0 { // keep every tenth
			if ok, _ := s.Unregister(ctx, fmt.Sprint("u", i), "r", uint64(i)); !ok {
				t.Fatalf("unregister u%d failed", i)
			}
		}
	}
	if sh := &s.shards[0]; sh.n > 2*sh.live {
		t.Fatalf("order not compacted: %d slots for %d sessions", sh.n, sh.live)
	}
	for cursor != 0 {
		page, cursor, err = s.Scan(ctx, 0, cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, se := range page {
			if seen[se.UID] {
				t.Fatalf("%s returned twice", se.UID)
			}
			seen[se.UID] = true
		}
	}
	for i := 0; i < users; i += 10 {
		if !seen[fmt.Sprint("u", i)] {
			t.Fatalf("u%d missed", i)
		}
	}
}

// While other users come and go, and the stable users reconnect and rebind,
// a paged scan returns every stable user exactly once.
func TestScanUnderConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	const stable, churners = 2000, 4
	for _, shards := range []int{1, 16} {
		t.Run(fmt.Sprint("shards=", shards), func(t *testing.T) {
			s := newTest(t, shards)
			for i := range stable {
				if _, err := s.Register(ctx, sess(fmt.Sprint("s", i), "r1", uint64(i), 5)); err != nil {
					t.Fatal(err)
				}
			}
			var stop atomic.Bool
			var ops atomic.Int64
			var wg sync.WaitGroup
			for w := range churners {
				wg.Go(func() {
					for i := 0; !stop.Load(); i++ {
						uid := fmt.Sprintf("c%d-%d", w, i%300)
						conn := uint64(i)
						if _, err := s.Register(ctx, sess(uid, "r2", conn, 5)); err != nil {
							t.Error(err)
							return
						}
						if i%2 == 0 {
							_, _ = s.Unregister(ctx, uid, "r2", conn)
						}
						// A stable user reconnects elsewhere and rebinds, keeping app 5.
						st := fmt.Sprint("s", (i*31+w)%stable)
						if _, err := s.Register(ctx, sess(st, "r3", uint64(1e9)+conn, 5)); err != nil {
							t.Error(err)
							return
						}
						_, _, _ = s.SetApps(ctx, st, uint64(1e9)+conn, []uint32{5, 6})
						ops.Add(1)
					}
				})
			}
			deadline := time.Now().Add(10 * time.Second)
			for ops.Load() < 100 && time.Now().Before(deadline) {
				runtime.Gosched() // let the churn get going before scanning
			}
			before := ops.Load()
			for round := 0; round < 5 && time.Now().Before(deadline); round++ {
				all := scanAllAllowingChurnDups(t, s, 5, 17)
				for i := range stable {
					if n := all[fmt.Sprint("s", i)]; n != 1 {
						stop.Store(true)
						wg.Wait()
						t.Fatalf("round %d: stable user s%d returned %d times", round, i, n)
					}
				}
			}
			stop.Store(true)
			wg.Wait()
			if ops.Load() == before {
				t.Fatal("no change happened while scanning")
			}
			assertCountsMatch(t, s)
		})
	}
}

// scanAllAllowingChurnDups counts how often each uid is returned: a uid that
// left and came back during the scan may legitimately appear twice.
func scanAllAllowingChurnDups(t *testing.T, s *Service, app uint32, limit int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	var cursor uint64
	for {
		page, next, err := s.Scan(context.Background(), app, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		for _, se := range page {
			seen[se.UID]++
		}
		if next == 0 {
			return seen
		}
		cursor = next
	}
}
