package center

import (
	"context"
	"sync"
)

// bcastRates shares each app's broadcast_rate among the app's running
// broadcast jobs on this center: the rates of the jobs that run at once
// never add up to more than the app's broadcast_rate, so N jobs of one app
// share its rate instead of each getting it. A job's rate is fixed when
// its room calls start (the rooms pace themselves), so a job whose rate
// does not fit beside the app's running jobs waits, holding its slot,
// until enough is free: first come, first served within the app (a small
// job does not overtake a waiting big one). A job alone always runs, even
// when a reload lowered the app's rate below it. Other apps are never
// affected: each app has its own budget.
type bcastRates struct {
	mu   sync.Mutex
	apps map[uint32]*appRates
}

type appRates struct {
	used float64       // rates of the running jobs
	jobs int           // running jobs
	line []*rateWaiter // waiting jobs, first come first
}

type rateWaiter struct {
	want, limit float64
	granted     chan struct{} // closed when the job may run
}

// acquire waits until a job of app at rate want may run beside the app's
// running jobs within limit (the app's broadcast_rate), or until ctx ends
// (the job's deadline, Shutdown). It returns the function that gives the
// rate back (idempotent).
func (br *bcastRates) acquire(ctx context.Context, app uint32, want, limit float64) (func(), error) {
	br.mu.Lock()
	if br.apps == nil {
		br.apps = make(map[uint32]*appRates)
	}
	ar := br.apps[app]
	if ar == nil {
		ar = &appRates{}
		br.apps[app] = ar
	}
	w := &rateWaiter{want: want, limit: limit, granted: make(chan struct{})}
	ar.line = append(ar.line, w)
	br.grant(ar)
	br.mu.Unlock()
	release := func() {
		br.mu.Lock()
		defer br.mu.Unlock()
		ar.used -= want
		ar.jobs--
		if ar.jobs == 0 {
			ar.used = 0 // no float residue
		}
		br.grant(ar)
		if ar.jobs == 0 && len(ar.line) == 0 {
			delete(br.apps, app)
		}
	}
	select {
	case <-w.granted:
		var once sync.Once
		return func() { once.Do(release) }, nil
	case <-ctx.Done():
	}
	br.mu.Lock()
	select {
	case <-w.granted: // granted meanwhile: give it back
		br.mu.Unlock()
		release()
		return nil, ctx.Err()
	default:
	}
	for i, x := range ar.line {
		if x == w {
			ar.line = append(ar.line[:i], ar.line[i+1:]...)
			break
		}
	}
	br.grant(ar) // the next in line may fit now
	if ar.jobs == 0 && len(ar.line) == 0 {
		delete(br.apps, app)
	}
	br.mu.Unlock()
	return nil, ctx.Err()
}

// grant starts the waiting jobs at the head of the line that fit.
func (br *bcastRates) grant(ar *appRates) {
	for len(ar.line) > 0 {
		w := ar.line[0]
		if ar.jobs > 0 && ar.used+w.want > w.limit*(1+1e-9) {
			return
		}
		ar.line = ar.line[1:]
		ar.used += w.want
		ar.jobs++
		close(w.granted)
	}
}

// usage returns the rate the running jobs of app use and how many jobs
// wait for theirs.
func (br *bcastRates) usage(app uint32) (used float64, waiting int) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if ar := br.apps[app]; ar != nil {
		return ar.used, len(ar.line)
	}
	return 0, 0
}
