package room

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/lcpush/lcpush/pkg/push"
)

// Sessions returns a snapshot of the registered sessions held here. A
// register that restarted empty is re-filled from it: recovery by re-filling
// rather than by replicating the session store.
func (r *Room) Sessions(ctx context.Context) ([]push.Session, error) {
	var (
		mu   sync.Mutex
		out  []push.Session
		over bool // the caller gave up: loops that run late must not append
	)
	ran := r.onLoops(ctx, func(l *loopState) {
		var mine []push.Session
		l.each(func(s *connState) {
			if s.state == stAuthed && s.registered && !s.cleaned {
				mine = append(mine, push.Session{
					UID: s.uid, Room: r.cfg.ID, ConnID: s.id, Apps: slices.Clone(s.appList()),
					Since: s.since, IP: s.ip.String(),
				})
			}
		})
		mu.Lock()
		if !over {
			out = append(out, mine...)
		}
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	over = true
	if err := ctx.Err(); err != nil && ran < len(r.allLoops()) {
		return nil, fmt.Errorf("room sessions: %w", err)
	}
	return out, nil
}
