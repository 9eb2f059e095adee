package loadgen

import (
	"container/heap"
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

// dialBatch bounds the connections a loop starts before it polls again, so
// a fast rate does not starve the reads (and the handshake times).
const dialBatch = 64

var (
	errDialTimeout = errors.New("connect timed out")
	errEOF         = errors.New("closed by the server")
)

// loop is one client event loop: an epoll instance, the connections it
// owns and the goroutine that runs it. The loop dials too: each pass it
// starts the connections that are due (the pacing is shared by the
// loops), so a descriptor never passes from one goroutine to another.
// Everything here is touched by that goroutine only.
type loop struct {
	l      *Load
	epfd   int
	byFD   []*conn // indexed by descriptor
	conns  []*conn // walked by the heartbeat sweep
	events []syscall.EpollEvent
	rbuf   []byte
	acks   []uint64
	out    []byte
	wsOut  []byte // a masked client message (wsclient.go)
	retry  retryQ // refused logins waiting to dial again (LoadConfig.Retry)
}

// retryAt is a login the server refused, due to dial again at at.
type retryAt struct {
	at    int64 // unix nanos
	idx   int
	tries int
}

// retryQ is a min-heap of retries by due time.
type retryQ []retryAt

func (q retryQ) Len() int           { return len(q) }
func (q retryQ) Less(i, j int) bool { return q[i].at < q[j].at }
func (q retryQ) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *retryQ) Push(x any)        { *q = append(*q, x.(retryAt)) }
func (q *retryQ) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// retryDelay backs off 0.5 s, 1 s, 2 s, ... up to 8 s, spread by idx so
// refused logins do not come back in one burst.
func retryDelay(tries, idx int) time.Duration {
	d := 500 * time.Millisecond << min(tries-1, 4)
	return d + time.Duration(idx%1000)*d/1000
}

// conn is one client connection.
type conn struct {
	fd        int
	start     int64 // unix nanos when the dial began
	nextPing  int64
	hb        int64
	slot      int // index in loop.conns
	idx       int // which of the load's connections (uid index)
	tries     int // dials before this one (LoadConfig.Retry)
	connected bool
	authed    bool
	ws        bool     // -transport ws: frames travel in WebSocket messages
	upgraded  bool     // ws: the 101 answer was read
	in        []byte   // a partial frame left by the last read
	pending   []byte   // bytes the socket had no room for
	seen      []uint64 // rounds this connection had, a bit each (grown on use)
}

// markSeen records round r for c; false when c had it already (a
// redelivery), so that a round's count is the connections that had it.
func (c *conn) markSeen(r int) bool {
	w := r >> 6
	if w >= len(c.seen) {
		c.seen = append(c.seen, make([]uint64, w+1-len(c.seen))...)
	}
	b := uint64(1) << (r & 63)
	if c.seen[w]&b != 0 {
		return false
	}
	c.seen[w] |= b
	return true
}

func newLoop(l *Load) (*loop, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &loop{l: l, epfd: fd, events: make([]syscall.EpollEvent, 256), rbuf: make([]byte, 64<<10)}, nil
}

// run serves the loop until the load stops; while ctx lives it also dials
// and sends the heartbeats.
func (lp *loop) run(ctx context.Context) {
	l := lp.l
	defer lp.closeAll()
	sweep := time.Now().Add(time.Second)
	for !l.stop.Load() {
		now := time.Now()
		wait := 100 * time.Millisecond
		if ctx.Err() == nil {
			first, k, next := l.claim(now, dialBatch)
			for i := first; i < first+k; i++ {
				lp.dial(i, 0)
			}
			if k > 0 {
				wait = 0
			} else if next >= 0 {
				wait = min(wait, next)
			}
			for n := 0; len(lp.retry) > 0 && n < dialBatch; n++ {
				r := lp.retry[0]
				if d := time.Duration(r.at - now.UnixNano()); d > 0 {
					wait = min(wait, d)
					break
				}
				heap.Pop(&lp.retry)
				l.retrying.Add(-1)
				lp.dial(r.idx, r.tries)
			}
			if !now.Before(sweep) {
				lp.sweep(now)
				sweep = now.Add(time.Second)
			}
			wait = min(wait, sweep.Sub(now))
		}
		n, err := syscall.EpollWait(lp.epfd, lp.events, msCeil(wait))
		if err != nil {
			if err != syscall.EINTR {
				l.lastErr.Store("epoll: " + err.Error())
				time.Sleep(time.Millisecond)
			}
			continue
		}
		now = time.Now()
		for _, ev := range lp.events[:n] {
			if c := lp.byFD[ev.Fd]; c != nil {
				lp.event(c, ev.Events, now)
			}
		}
	}
}

func msCeil(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// dial starts connection i and writes its AUTH at once: on loopback the
// handshake is over when connect returns. If the socket is not writable
// yet, the AUTH waits for EPOLLOUT.
func (lp *loop) dial(i, tries int) {
	l := lp.l
	start := time.Now().UnixNano()
	if tries == 0 {
		l.dialed.Add(1)
	}
	l.firstDial.CompareAndSwap(0, start)
	room := l.rooms[i%len(l.rooms)]
	var src syscall.Sockaddr
	if room.family == syscall.AF_INET && len(l.srcs) > 0 {
		src = l.srcs[i%len(l.srcs)]
	}
	fd, err := dialRaw(src, room.sa, room.family)
	if err != nil {
		l.dialErr.Add(1)
		l.lastErr.Store("dial: " + err.Error())
		return
	}
	c := &conn{fd: fd, start: start, ws: l.ws, idx: i, tries: tries}
	auth := l.authFrame(i)
	n, err := writeFD(fd, auth)
	switch {
	case err == nil && n == len(auth):
	case err == nil || err == syscall.EAGAIN:
		c.pending = auth[max(n, 0):] // full slice: an append copies
	default:
		_ = syscall.Close(fd)
		l.dialErr.Add(1)
		l.lastErr.Store("dial: " + err.Error())
		return
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if len(c.pending) > 0 {
		ev.Events |= syscall.EPOLLOUT
	}
	if err := syscall.EpollCtl(lp.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		_ = syscall.Close(fd)
		l.dialErr.Add(1)
		l.lastErr.Store("epoll add: " + err.Error())
		return
	}
	lp.add(c)
	if len(c.pending) == 0 {
		lp.established(c)
	}
}

func (lp *loop) established(c *conn) {
	c.connected = true
	lp.l.connected.Add(1)
	lp.l.open.Add(1)
}

func (lp *loop) event(c *conn, events uint32, now time.Time) {
	if events&syscall.EPOLLOUT != 0 {
		if err := lp.flush(c); err != nil {
			lp.close(c, err)
			return
		}
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		lp.read(c, now)
	}
}

// read takes what the socket holds, decodes every whole frame and keeps
// the rest of a partial one; the QoS 1 pushes of one read are ACKed with
// one frame.
func (lp *loop) read(c *conn, now time.Time) {
	for {
		n, err := syscall.Read(c.fd, lp.rbuf)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		if err != nil || n <= 0 {
			if err == nil {
				err = errEOF
			}
			lp.close(c, err)
			return
		}
		if !c.connected {
			lp.established(c)
		}
		data, held := lp.rbuf[:n], len(c.in) > 0
		if held {
			c.in = append(c.in, data...)
			data = c.in
		}
		used, bad := lp.frames(c, data, now)
		switch rest := data[used:]; {
		case len(rest) == 0:
			c.in = c.in[:0]
			if cap(c.in) > 64<<10 {
				c.in = nil
			}
		case held:
			c.in = c.in[:copy(c.in, rest)]
		default:
			c.in = append(c.in[:0], rest...)
		}
		if bad {
			lp.close(c, errEOF)
			return
		}
		if n < len(lp.rbuf) {
			return
		}
	}
}

// frames handles the whole frames at the start of data; it returns the
// bytes used and true when the connection must close.
func (lp *loop) frames(c *conn, data []byte, now time.Time) (int, bool) {
	if c.ws {
		return lp.wsFrames(c, data, now)
	}
	l := lp.l
	lp.acks = lp.acks[:0]
	used := 0
	for {
		f, n, err := proto.Parse(data[used:], l.cfg.MaxFrame)
		if err != nil {
			l.errs.Add(1)
			l.lastErr.Store("parse: " + err.Error())
			return used, true
		}
		if n == 0 {
			break
		}
		used += n
		if l.frame(c, f, now, lp) {
			return used, true
		}
	}
	if len(lp.acks) > 0 {
		lp.out = proto.AppendAck(lp.out[:0], 0, lp.acks)
		if lp.write(c, lp.out) {
			l.acked.Add(int64(len(lp.acks)))
		}
	}
	return used, false
}

// write sends b or queues what the socket cannot take; false: the
// connection is broken (its read side will see the close).
func (lp *loop) write(c *conn, b []byte) bool {
	if len(c.pending) > 0 {
		c.pending = append(c.pending, b...)
		return true
	}
	n, err := writeFD(c.fd, b)
	if err == syscall.EAGAIN {
		n, err = 0, nil
	}
	if err != nil {
		return false
	}
	if n < len(b) {
		c.pending = append(c.pending[:0], b[n:]...)
		lp.watchOut(c, true)
	}
	return true
}

// flush writes what is pending; the first successful flush of a dial
// means the connection is established.
func (lp *loop) flush(c *conn) error {
	if len(c.pending) > 0 {
		n, err := writeFD(c.fd, c.pending)
		if err == syscall.EAGAIN {
			return nil
		}
		if err != nil {
			return err
		}
		if c.pending = c.pending[n:]; len(c.pending) > 0 {
			return nil
		}
	}
	c.pending = nil
	lp.watchOut(c, false)
	if !c.connected {
		lp.established(c)
	}
	return nil
}

func (lp *loop) watchOut(c *conn, on bool) {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
	if on {
		ev.Events |= syscall.EPOLLOUT
	}
	_ = syscall.EpollCtl(lp.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev)
}

func writeFD(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Write(fd, b)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// sweep runs once a second: PING every authenticated connection whose
// interval has passed, give up on connects older than the dial timeout.
func (lp *loop) sweep(now time.Time) {
	l := lp.l
	ns := now.UnixNano()
	dialTO := int64(l.cfg.DialTOms) * int64(time.Millisecond)
	for j := len(lp.conns) - 1; j >= 0; j-- { // close swaps the last one in: go backwards
		c := lp.conns[j]
		switch {
		case c.authed && ns >= c.nextPing:
			c.nextPing = ns + c.hb
			if lp.send(c, pingFrame) {
				l.pings.Add(1)
			}
		case !c.connected && ns-c.start > dialTO:
			lp.close(c, errDialTimeout)
		}
	}
}

func (lp *loop) add(c *conn) {
	if c.fd >= len(lp.byFD) {
		lp.byFD = append(lp.byFD, make([]*conn, c.fd+1-len(lp.byFD)+len(lp.byFD)/2)...)
	}
	lp.byFD[c.fd] = c
	c.slot = len(lp.conns)
	lp.conns = append(lp.conns, c)
}

// close closes c (which also takes it out of the epoll set) and counts
// why: a dial that never connected, or a close by the server before or
// after AUTH_OK.
func (lp *loop) close(c *conn, err error) {
	l := lp.l
	_ = syscall.Close(c.fd)
	lp.byFD[c.fd] = nil
	last := len(lp.conns) - 1
	moved := lp.conns[last]
	lp.conns[c.slot], moved.slot = moved, c.slot
	lp.conns[last] = nil
	lp.conns = lp.conns[:last]
	if !c.connected {
		l.dialErr.Add(1)
		l.lastErr.Store("dial: " + err.Error())
		return
	}
	l.open.Add(-1)
	switch {
	case l.stop.Load():
	case c.authed:
		l.dropped.Add(1)
	case c.tries < l.cfg.Retry:
		// Refused before AUTH_OK (e.g. ERROR overloaded): log in again
		// later, as a client SDK would.
		heap.Push(&lp.retry, retryAt{at: time.Now().Add(retryDelay(c.tries+1, c.idx)).UnixNano(), idx: c.idx, tries: c.tries + 1})
		l.retried.Add(1)
		l.retrying.Add(1)
	default:
		l.refused.Add(1)
	}
}

func (lp *loop) closeAll() {
	for _, c := range lp.conns {
		_ = syscall.Close(c.fd)
		if c.connected {
			lp.l.open.Add(-1)
		}
	}
	lp.conns, lp.byFD = nil, nil
	_ = syscall.Close(lp.epfd)
}
