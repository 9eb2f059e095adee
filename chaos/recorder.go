package chaos

import (
	"sync"
	"time"

	"github.com/lcpush/lcpush/loadgen"
)

// attempt is one push request.
type attempt struct {
	phase      int
	dev        int
	center     int
	sent, done time.Time
	genSent    int // the device's connection generation when it was sent
	upSent     bool
	sinceSent  time.Time // start of that connection
	genDone    int
	upDone     bool
	status     int    // HTTP status, 0 on a transport error
	errKey     string // "" when accepted
	id         uint64 // msg_id when accepted
	online     int
}

// accepted reports whether the API took responsibility for the message.
func (a *attempt) accepted() bool { return a.errKey == "" && a.id != 0 }

// arrival is what the devices saw of one message id.
type arrival struct {
	dev      int // device of the first delivery
	first    time.Time
	firstGen int
	count    int
	wrong    int         // deliveries to another device
	extra    []time.Time // deliveries after the first (duplicates)
}

// recorder holds every push attempt and every delivery of a run.
type recorder struct {
	mu        sync.Mutex
	attempts  []*attempt
	arrivals  map[uint64]*arrival
	authFails []time.Time
	api       loadgen.Hist // push API answer time
	latency   loadgen.Hist // send to first delivery
}

func newRecorder() *recorder { return &recorder{arrivals: map[uint64]*arrival{}} }

func (r *recorder) add(a *attempt) {
	r.api.Record(a.done.Sub(a.sent))
	r.mu.Lock()
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
}

func (r *recorder) delivered(id uint64, dev, gen int, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.arrivals[id]
	if a == nil {
		r.arrivals[id] = &arrival{dev: dev, first: now, firstGen: gen, count: 1}
		return
	}
	a.count++
	a.extra = append(a.extra, now)
	if a.dev != dev {
		a.wrong++
	}
}

func (r *recorder) authFail(now time.Time) {
	r.mu.Lock()
	r.authFails = append(r.authFails, now)
	r.mu.Unlock()
}
