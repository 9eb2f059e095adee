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
// until enough is free (acquire: first come, first served within the app),
// or is not started at all (tryAcquire: the job runner leaves its task
// pending, holding no worker, and tries again at its next scan). A job
// alone always runs, even when a reload lowered the app's rate below it.
// Other apps are never affected: each app has its own budget. The budget is
// this center's: N centers may run an app's tasks at up to N times its
// broadcast_rate (docs/api.md).
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

// tryAcquire is acquire without the wait: it takes want of app's budget
// when it fits now (and no job of the app waits in acquire's line), else
// it returns false. The job runner uses it before it claims a task, so a
// task that does not fit holds no worker and stays pending on the board.
func (br *bcastRates) tryAcquire(app uint32, want, limit float64) (func(), bool) {
	br.mu.Lock()
	defer br.mu.Unlock()
	ar := br.apps[app]
	if ar != nil && (len(ar.line) > 0 || ar.jobs > 0 && ar.used+want > limit*(1+1e-9)) {
		return nil, false
	}
	if ar == nil {
		if br.apps == nil {
			br.apps = make(map[uint32]*appRates)
		}
		ar = &appRates{}
		br.apps[app] = ar
	}
	ar.used += want
	ar.jobs++
	var once sync.Once
	return func() {
		once.Do(func() {
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
		})
	}, true
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
