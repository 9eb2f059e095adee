// Package pace owns an open-loop schedule's sleep: waking at a planned
// time with microsecond precision, for the load tool and the benchmarks.
package pace

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Pacer sleeps until a scheduled time with microsecond precision. The
// runtime's timers are not enough for an open-loop schedule of 200 µs
// gaps: when the process has nothing else to run, Go waits for the next
// timer in epoll_wait, whose timeout is in milliseconds, so every wait
// under 1 ms became ~1 ms and the sender fell behind the timeline by up to
// a millisecond (counted, rightly, as latency). A timerfd read through
// Go's netpoller wakes when the timer expires, whatever the wait.
type Pacer struct {
	f *os.File // nil: fall back to time.Sleep
}

// Linux timerfd constants (include/uapi/linux/timerfd.h).
const (
	clockMonotonic = 1
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
)

type itimerspec struct {
	interval, value syscall.Timespec
}

// New returns a Pacer; without a timerfd it falls back to time.Sleep.
func New() *Pacer {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return &Pacer{}
	}
	// Non-blocking: os.NewFile puts it in the netpoller, so a Read parks
	// the goroutine instead of a thread.
	return &Pacer{f: os.NewFile(fd, "timerfd")}
}

// Until returns once t has come.
func (p *Pacer) Until(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if p.f == nil {
		time.Sleep(d)
		return
	}
	spec := itimerspec{value: syscall.NsecToTimespec(int64(d))}
	_, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, p.f.Fd(), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		time.Sleep(d)
		return
	}
	var buf [8]byte // expirations since the last read
	if _, err := p.f.Read(buf[:]); err != nil {
		time.Sleep(time.Until(t))
	}
}

// Close releases the timer.
func (p *Pacer) Close() {
	if p.f != nil {
		_ = p.f.Close()
	}
}
