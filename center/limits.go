package center

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lcpush/lcpush/pkg/config"
)

// limiters holds one push rate limiter per app. The map is rebuilt when the
// configuration value changes (hot reload), keeping each app's limiter and
// its tokens and only adjusting its rate and burst. Reads are one atomic load.
type limiters struct {
	mu  sync.Mutex // serializes rebuilds
	cur atomic.Pointer[limiterSet]
}

type limiterSet struct {
	cfg *config.Config
	m   map[uint32]*rate.Limiter
}

// allow takes one push token of app and, when there is none, says how long
// until there will be.
func (l *limiters) allow(cfg *config.Config, app uint32) (bool, time.Duration) {
	set := l.cur.Load()
	if set == nil || set.cfg != cfg {
		set = l.rebuild(cfg)
	}
	lim := set.m[app]
	if lim == nil { // the app is in cfg, so rebuild made one; be safe anyway
		return true, 0
	}
	now := time.Now()
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (l *limiters) rebuild(cfg *config.Config) *limiterSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.cur.Load()
	if old != nil && old.cfg == cfg {
		return old
	}
	set := &limiterSet{cfg: cfg, m: make(map[uint32]*rate.Limiter, len(cfg.Apps))}
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		r, b := rate.Limit(a.PushRate), max(a.PushBurst, 1)
		if old != nil && old.m[a.ID] != nil {
			lim := old.m[a.ID]
			if lim.Limit() != r {
				lim.SetLimit(r)
			}
			if lim.Burst() != b {
				lim.SetBurst(b)
			}
			set.m[a.ID] = lim
			continue
		}
		set.m[a.ID] = rate.NewLimiter(r, b)
	}
	l.cur.Store(set)
	return set
}
