//go:build linux

package saver

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/lcpush/lcpush/internal/pace"
)

// BenchmarkPacedSave measures what a push waits for in the store alone, at
// the rates of `scripts/bench.sh unicast`: open loop, one unicast QoS 1
// Save every 1/rate from the scheduled time (a late schedule is not
// forgiven), 10,000 users, and each message ACKed right after its Save
// returns, as a room would (not timed, but in the same commits). b.N is the
// number of pushes. Reported: the latency from the scheduled time to the
// Save's return, p50 / p99 / max in ms.
//
// "log" is the floor of a group-committed fsync on the same disk: one
// writer appends whatever records queued while its previous fdatasync ran,
// then fdatasyncs once; a record waits for that. A durable store cannot
// answer sooner than the fsync that holds its write. gap is a least pause
// between two fdatasyncs (a time.Sleep: about 1 ms at the least), which
// keeps the fsync rate down at the cost of the pause. Run it pinned to one
// core, like the server in the load tool:
//
//	taskset -c 0 go test -run '^$' -bench PacedSave -benchtime 20000x ./saver/
func BenchmarkPacedSave(b *testing.B) {
	for _, rate := range []int{1000, 5000} {
		for _, bs := range benchStores {
			b.Run(fmt.Sprintf("%s/rate=%d", bs.name, rate), func(b *testing.B) {
				st := bs.open(b)
				defer st.Close()
				uids := benchUIDs(10000)
				payload := make([]byte, 256)
				expire := future()
				paced(b, rate, func(i int) error {
					m := msg(uint64(i+1), 1, expire)
					m.Payload = payload
					return st.Save(bg, m, []string{uids[i%len(uids)]})
				}, func(i int) error {
					_, err := st.Ack(bg, uids[i%len(uids)], benchApps, []uint64{uint64(i + 1)})
					return err
				})
			})
		}
		for _, gap := range []time.Duration{0, time.Millisecond} {
			b.Run(fmt.Sprintf("log/gap=%v/rate=%d", gap, rate), func(b *testing.B) {
				lg, err := openFsyncLog(filepath.Join(b.TempDir(), "log"), gap)
				if err != nil {
					b.Fatal(err)
				}
				defer lg.close()
				rec := make([]byte, 300) // a 256 B push and its key
				paced(b, rate, func(int) error { return lg.append(rec) }, func(int) error { return nil })
				lg.close()
				slices.Sort(lg.syncs)
				b.ReportMetric(float64(len(lg.syncs))/float64(b.N), "syncs/op")
				b.ReportMetric(float64(lg.syncs[len(lg.syncs)*99/100])/1e6, "sync-p99-ms")
				b.ReportMetric(float64(lg.syncs[len(lg.syncs)-1])/1e6, "sync-max-ms")
			})
		}
	}
}

// paced runs op(i) for i < b.N, the i-th started at start + i/rate on its
// own goroutine (open loop), and reports the latency of the part of op
// before it returns; after(i) runs once op(i) returned, untimed.
func paced(b *testing.B, rate int, op, after func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	var failed sync.Once
	var ferr error
	pacer := pace.New()
	defer pacer.Close()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		sched := start.Add(time.Duration(i) * interval)
		pacer.Until(sched)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := op(i)
			lat[i] = time.Since(sched)
			if err == nil {
				err = after(i)
			}
			if err != nil {
				failed.Do(func() { ferr = err })
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if ferr != nil {
		b.Fatal(ferr)
	}
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / 1e6 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
}

// fsyncLog is the benchmark's floor store: a log file whose one writer
// group-commits (no timer: a lone record is written and synced at once, the
// records that queue meanwhile share the next fdatasync). Like a real
// write-ahead log its segment is written once before use, so a commit's
// fdatasync carries data and no block allocation.
type fsyncLog struct {
	f     *os.File
	off   int64           // the writer's: where the next write goes
	syncs []time.Duration // the writer's: each fdatasync's time
	gap   time.Duration   // least time from one fdatasync's end to the next write
	mu    sync.Mutex
	cond  *sync.Cond
	buf   []byte // queued, not yet written
	gen   uint64 // generation of buf: records appended now are synced by gen
	done  uint64 // the last generation synced
	err   error
	stop  bool
	wg    sync.WaitGroup
}

const fsyncLogSize = 64 << 20

func openFsyncLog(path string, gap time.Duration) (*fsyncLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < fsyncLogSize; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	l := &fsyncLog{f: f, gen: 1, gap: gap}
	l.cond = sync.NewCond(&l.mu)
	l.wg.Add(1)
	go l.run()
	return l, nil
}

func (l *fsyncLog) append(rec []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, rec...)
	g := l.gen
	l.cond.Broadcast()
	for l.done < g && l.err == nil {
		l.cond.Wait()
	}
	return l.err
}

func (l *fsyncLog) run() {
	defer l.wg.Done()
	var out []byte
	l.mu.Lock()
	for {
		for len(l.buf) == 0 && !l.stop {
			l.cond.Wait()
		}
		if len(l.buf) == 0 {
			l.mu.Unlock()
			return
		}
		if l.gap > 0 && len(l.syncs) > 0 {
			l.mu.Unlock()
			time.Sleep(l.gap)
			l.mu.Lock()
		}
		out, l.buf = l.buf, out[:0]
		g := l.gen
		l.gen++
		l.mu.Unlock()
		if l.off+int64(len(out)) > fsyncLogSize {
			l.off = 0 // the segment wraps: the benchmark never reads it back
		}
		_, err := l.f.WriteAt(out, l.off)
		l.off += int64(len(out))
		if err == nil {
			t := time.Now()
			err = syscall.Fdatasync(int(l.f.Fd()))
			l.syncs = append(l.syncs, time.Since(t))
		}
		l.mu.Lock()
		l.done, l.err = g, err
		l.cond.Broadcast()
	}
}

func (l *fsyncLog) close() {
	l.mu.Lock()
	if l.stop {
		l.mu.Unlock()
		return
	}
	l.stop = true
	l.cond.Broadcast()
	l.mu.Unlock()
	l.wg.Wait()
	_ = l.f.Close()
}

// BenchmarkPacedSaveBesideFsync: the memory store at 5k/s, alone and while
// another goroutine of the process writes 24 pages and fdatasyncs them
// every ~1 ms (what a bbolt commit does twice). Pinned to one core
// (GOMAXPROCS=1), the difference is the time the one processor stays
// with the thread that waits for the disk:
//
//	taskset -c 0 go test -run '^$' -bench PacedSaveBesideFsync -benchtime 20000x -count 3 ./saver/
func BenchmarkPacedSaveBesideFsync(b *testing.B) {
	for _, fsyncs := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsyncs=%v", fsyncs), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "f"), os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			pages := make([]byte, 24*4096)
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for fsyncs {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					if _, err := f.WriteAt(pages, 0); err != nil {
						return
					}
					_ = syscall.Fdatasync(int(f.Fd()))
				}
			}()
			pacedMemorySaves(b)
			close(stop)
			<-done
		})
	}
}

// BenchmarkPacedSaveBesideEpoll: the memory store at 5k/s, alone and
// beside a goroutine that does what a gnet event loop does between its
// events: it blocks in epoll_wait(-1) (a plain syscall, outside the Go
// netpoller), here woken by a kernel timer every 200 µs (a client's ACK
// in the server). Pinned to one core, the difference is the time the one
// processor stays with that thread:
//
//	taskset -c 0 go test -run '^$' -bench PacedSaveBesideEpoll -benchtime 20000x -count 3 ./saver/
func BenchmarkPacedSaveBesideEpoll(b *testing.B) {
	for _, loop := range []bool{false, true} {
		b.Run(fmt.Sprintf("loop=%v", loop), func(b *testing.B) {
			stop := func() {}
			if loop {
				var err error
				if stop, err = epollLoop(200 * time.Microsecond); err != nil {
					b.Fatal(err)
				}
			}
			pacedMemorySaves(b)
			stop()
		})
	}
}

// epollLoop starts a goroutine blocked in epoll_wait on a timerfd that
// fires every period; stop ends it.
func epollLoop(period time.Duration) (stop func(), err error) {
	tfd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, 1 /* CLOCK_MONOTONIC */, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return nil, errno
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		syscall.Close(int(tfd))
		return nil, err
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(tfd), &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(tfd)}); err != nil {
		syscall.Close(ep)
		syscall.Close(int(tfd))
		return nil, err
	}
	spec := [4]int64{0, int64(period), 0, int64(period)} // interval, value (itimerspec)
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, tfd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		syscall.Close(ep)
		syscall.Close(int(tfd))
		return nil, errno
	}
	var quit atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		events := make([]syscall.EpollEvent, 8)
		var buf [8]byte
		for !quit.Load() {
			if _, err := syscall.EpollWait(ep, events, -1); err != nil && err != syscall.EINTR {
				return
			}
			_, _ = syscall.Read(int(tfd), buf[:])
		}
	}()
	return func() {
		quit.Store(true)
		<-done // the timer wakes it within a period
		syscall.Close(ep)
		syscall.Close(int(tfd))
	}, nil
}

// pacedMemorySaves runs the memory store's Save on the 5k/s timeline: the
// workload that the "beside" benchmarks disturb.
func pacedMemorySaves(b *testing.B) {
	st := NewMemory()
	defer st.Close()
	uids := benchUIDs(10000)
	expire := future()
	paced(b, 5000, func(i int) error {
		return st.Save(bg, msg(uint64(i+1), 1, expire), []string{uids[i%len(uids)]})
	}, func(int) error { return nil })
}

func benchUIDs(n int) []string {
	uids := make([]string, n)
	for i := range uids {
		uids[i] = "user-" + strconv.Itoa(i)
	}
	return uids
}
