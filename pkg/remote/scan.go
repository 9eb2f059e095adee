package remote

import (
	"context"
	"fmt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Registers scan cursor layout:
//
//	register index << 56 | that register's own cursor
//
// where the index is into the live registers sorted by ID. A register's own
// cursor keeps its shard index in its top 16 bits (register.Scan), so it
// fits in 56 bits while the register has at most 256 shards (the default);
// a larger one fails the scan with ErrCursor. The index has 8 bits: past
// 256 registers, the ones after the 256th in ID order are not scanned. Cursor 0 is the start (first
// register, its start) and a returned 0 is the end, as for one register.
//
// If membership changes during a scan, the index may point at another
// register than before: the scan then skips or repeats part of the sessions,
// or ends early when the index is past the end. A broadcast loses nothing by
// it (users it misses get the message from storage at their next login) and
// clients drop duplicates by message id.
const (
	scanIdxShift = 56
	scanInner    = 1<<scanIdxShift - 1
	maxScanIdx   = 1<<(64-scanIdxShift) - 1
)

// Scan returns a page of the sessions that have app bound (0: all), walking
// the live registers in ID order; see the cursor layout above. A page is
// empty only when the scan is complete.
func (r *Registers) Scan(ctx context.Context, app uint32, cursor uint64, limit int) ([]push.Session, uint64, error) {
	ms := live(r.m, RoleRegister)
	if len(ms) == 0 {
		return nil, 0, noMember(RoleRegister)
	}
	if len(ms) > maxScanIdx+1 {
		ms = ms[:maxScanIdx+1]
	}
	ctx, cancel := withTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	idx, inner := int(cursor>>scanIdxShift), cursor&scanInner
	for ; idx < len(ms); idx, inner = idx+1, 0 {
		c, err := r.client(ms[idx])
		if err != nil {
			return nil, 0, err
		}
		page, next, err := c.Scan(ctx, app, inner, limit)
		if err != nil {
			return nil, 0, fmt.Errorf("remote scan on %s: %w", ms[idx].ID, err)
		}
		if next > scanInner {
			return nil, 0, fmt.Errorf("%w: register %s answered %#x", ErrCursor, ms[idx].ID, next)
		}
		var out uint64
		switch {
		case next != 0:
			out = uint64(idx)<<scanIdxShift | next
		case idx+1 < len(ms):
			out = uint64(idx+1) << scanIdxShift
		}
		if len(page) > 0 || out == 0 {
			return page, out, nil
		}
	}
	return nil, 0, nil
}
