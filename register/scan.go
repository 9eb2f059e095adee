package register

import (
	"context"
	"fmt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Scan cursor layout.
//
// Every shard numbers the uids it admits with an increasing seq (starting at
// 1) and keeps them in that order; a uid keeps its seq as long as it stays
// online, even when it reconnects or changes its apps. A cursor is
//
//	shard index << seqBits | last seq returned (or skipped) in that shard
//
// so a page resumes right after the last session it saw, however many
// sessions were added or removed meanwhile. A session online during the whole
// scan is therefore returned exactly once; one that arrives during the scan
// is returned at most once (only if its shard has not been passed yet); one
// that leaves is not returned after it left. Cursor 0 is the start (shard 0,
// before seq 1) and a returned next of 0 means the scan is complete: a real
// position is never 0, because shard 0 positions carry a seq >= 1 and later
// shards a non-zero index.
//
// Cursors are only meaningful for the store instance that made them: a
// restarted register renumbers its sessions, and the caller starts over. The
// caller is a room's reconciliation (pkg/remote, Registers.reconcile), which
// scans with app 0 and keeps its own room's sessions; a scan cut short by a
// restart only delays the reconciliation to its next check.
const (
	shardBits = 16
	seqBits   = 64 - shardBits
	seqMask   = 1<<seqBits - 1
)

// Page sizes of Scan.
const (
	DefaultScanLimit = 500
	MaxScanLimit     = 10000
)

// Scan returns a page of the sessions that have app bound (app 0: every
// session), starting at cursor (0 for the first page), and the cursor of the
// next page, 0 when the scan is complete. limit is a soft target
// (0 = DefaultScanLimit, capped at MaxScanLimit): a page never holds more, and
// may hold fewer when a shard ends, but is only empty when the scan ends.
// See the cursor layout above for what a scan guarantees under concurrent
// changes.
func (s *Service) Scan(ctx context.Context, app uint32, cursor uint64, limit int) ([]push.Session, uint64, error) {
	if err := s.check(ctx, "scan"); err != nil {
		return nil, 0, err
	}
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	limit = min(limit, MaxScanLimit)
	idx, after := int(cursor>>seqBits), cursor&seqMask
	if idx >= len(s.shards) {
		return nil, 0, fmt.Errorf("register scan cursor %#x: %w", cursor, ErrInvalid)
	}
	out := make([]push.Session, 0, min(limit, 64))
	var apps []uint32
	for ; idx < len(s.shards); idx, after = idx+1, 0 {
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("register scan: %w", err)
		}
		var last uint64
		var full bool
		out, apps, last, full = s.shards[idx].scan(app, after, limit, out, apps)
		if full {
			return out, uint64(idx)<<seqBits | last, nil
		}
	}
	return out, 0, nil
}

// scan appends to out the sessions with app bound whose seq is above after,
// until out holds limit. It returns the seq of the last slot it looked at and
// whether it stopped because out was full with slots left in the shard.
func (sh *shard) scan(app uint32, after uint64, limit int, out []push.Session, apps []uint32) ([]push.Session, []uint32, uint64, bool) {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	last := after
	for i := sh.find(after + 1); i < sh.n; i++ {
		head := sh.at(i)
		if head.uid == "" { // dead slot
			last = head.seq
			continue
		}
		n := 0 // the uid's connections this page would take
		for e := head; e != nil; e = e.more {
			if app == 0 || hasApp(e.appList(), app) {
				n++
			}
		}
		if len(out) >= limit || (len(out) > 0 && len(out)+n > limit) {
			return out, apps, last, true
		}
		last = head.seq
		for e := head; e != nil; e = e.more { // every connection of the uid
			if app != 0 && !hasApp(e.appList(), app) {
				continue
			}
			out = append(out, push.Session{})
			apps = e.copyTo(&out[len(out)-1], apps)
		}
	}
	return out, apps, last, false
}

func hasApp(apps []uint32, app uint32) bool {
	for _, a := range apps {
		if a == app {
			return true
		}
	}
	return false
}
