package center

import "sync"

// bcastRates shares each app's broadcast_rate among the app's running
// broadcast tasks on this center: the rates of the tasks that run at once
// never add up to more than the app's broadcast_rate, so N jobs of one app
// share its rate instead of each getting it. A task's rate is fixed when
// its room call starts (the rooms pace themselves), so a task whose rate
// does not fit beside the app's running ones is not started (tryAcquire):
// the job runner leaves it pending, holding no worker, and tries again at
// its next scan or when a task of this center ends. A task alone always
// runs, even when a reload lowered the app's rate below it. Other apps are
// never affected: each app has its own budget. The budget is this
// center's: N centers may run an app's tasks at up to N times its
// broadcast_rate (docs/api.md).
type bcastRates struct {
	mu   sync.Mutex
	apps map[uint32]*appRates
}

type appRates struct {
	used float64 // rates of the running tasks
	jobs int     // running tasks
}

// tryAcquire takes want of app's budget when it fits now beside the app's
// running tasks within limit (the app's broadcast_rate), or when none runs;
// else it returns false. The release it returns gives the rate back
// (idempotent).
func (br *bcastRates) tryAcquire(app uint32, want, limit float64) (func(), bool) {
	br.mu.Lock()
	defer br.mu.Unlock()
	ar := br.apps[app]
	if ar != nil && ar.jobs > 0 && ar.used+want > limit*(1+1e-9) {
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
			if ar.jobs--; ar.jobs == 0 {
				delete(br.apps, app) // no float residue, no state kept
			}
		})
	}, true
}

// usage returns the rate the running tasks of app use.
func (br *bcastRates) usage(app uint32) float64 {
	br.mu.Lock()
	defer br.mu.Unlock()
	if ar := br.apps[app]; ar != nil {
		return ar.used
	}
	return 0
}
