package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"
)

// serverConn is one client connection: a reader goroutine that decodes
// requests and queues them to the worker pool, and a writer goroutine that
// batches the replies.
type serverConn struct {
	s    *Server
	nc   net.Conn
	out  *outbox
	ebuf []byte // the reader's scratch for error frames
}

func (sc *serverConn) serve() {
	s := sc.s
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
		serverConns.Dec()
		s.wg.Done()
	}()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		_ = sc.out.run(sc.nc, s.cfg.WriteTimeout, serverIO)
		// After a write error, or a drain once everything was written:
		// either way the reader must stop too.
		_ = sc.nc.Close()
	}()
	err := sc.read()
	if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge) {
		serverBadFrames.Inc()
		s.log.Warn("rpc bad frame, closing connection", "remote", sc.nc.RemoteAddr().String(), "err", err)
	}
	_ = sc.nc.Close()
	sc.out.close()
	<-writerDone
}

// maxQueuedReplies is how many reply bytes may wait for the writer before
// the reader stops reading: a client that does not read its replies is
// slowed by TCP instead of growing our memory.
func (sc *serverConn) maxQueuedReplies() int { return sc.s.cfg.MaxFrame + 1<<20 }

// read decodes requests until the connection fails or a frame is bad.
func (sc *serverConn) read() error {
	s := sc.s
	fr := newFrameReader(sc.nc, 32<<10, s.cfg.MaxFrame)
	limit := sc.maxQueuedReplies()
	for {
		h, body, err := fr.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if h.kind != kindRequest {
			return fmt.Errorf("%w: kind %d from a client", ErrBadFrame, h.kind)
		}
		sc.out.waitRoom(limit)
		if s.draining.Load() {
			mSrvUnavailable.Inc()
			sc.replyError(h, CodeUnavailable, "server shutting down")
			continue
		}
		hd := s.handlers[h.method]
		if hd == nil {
			mSrvUnknown.Inc()
			sc.replyError(h, CodeUnknownMethod, "unknown method")
			continue
		}
		t := taskPool.Get().(*task)
		t.sc, t.h, t.method, t.id = sc, hd, h.method, h.id
		t.deadline = 0
		if h.aux != 0 {
			t.deadline = time.Now().UnixNano() + int64(h.aux)*int64(time.Millisecond)
		}
		t.req = append(t.req[:0], body...)
		if !s.pool.TrySubmit(t.fn) {
			putTask(t)
			mSrvOverloaded.Inc()
			sc.replyError(h, CodeOverloaded, "server queue full")
		}
	}
}

func (sc *serverConn) replyError(h header, code uint32, msg string) {
	sc.ebuf = appendError(sc.ebuf[:0], h.method, h.id, code, msg)
	sc.out.add(sc.ebuf)
}

// task is one request on its way through the worker pool. Tasks are pooled;
// fn is t.run bound once, so that submitting a task does not allocate.
type task struct {
	sc       *serverConn
	h        Handler
	method   uint16
	id       uint64
	deadline int64 // unix nanoseconds; 0: none
	req      []byte
	rep      Reply
	fn       func()
}

var taskPool sync.Pool

func init() {
	// Set here, not in the declaration: run refers back to taskPool.
	taskPool.New = func() any {
		t := &task{}
		t.fn = t.run
		return t
	}
}

func putTask(t *task) {
	t.sc, t.h = nil, nil
	if cap(t.req) > maxKeep {
		t.req = nil
	}
	if cap(t.rep.buf) > maxKeep {
		t.rep.buf = nil
	}
	taskPool.Put(t)
}

// run executes the handler on a worker and queues the reply.
func (t *task) run() {
	sc := t.sc
	rep := &t.rep
	switch {
	case t.deadline != 0 && time.Now().UnixNano() > t.deadline:
		// The caller has given up: do not spend a worker on it.
		mSrvExpired.Inc()
		rep.buf = appendError(rep.buf[:0], t.method, t.id, CodeDeadline, "deadline passed in queue")
	default:
		rep.buf = appendHeader(rep.buf[:0], header{kind: kindReply, method: t.method, id: t.id})
		rep.deadline = t.deadline
		if err := t.call(sc.s.ctx); err != nil {
			mSrvErr.Inc()
			code, msg := errorCode(err)
			rep.buf = appendError(rep.buf[:0], t.method, t.id, code, msg)
		} else if finishFrame(rep.buf, 0, sc.s.cfg.MaxFrame) != nil {
			mSrvErr.Inc()
			rep.buf = appendError(rep.buf[:0], t.method, t.id, CodeTooLarge, "reply too large")
		} else {
			mSrvOK.Inc()
		}
	}
	sc.out.add(rep.buf)
	putTask(t)
}

// call runs the handler; a panic becomes an error, not a dead server.
func (t *task) call(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 4096)
			buf = buf[:runtime.Stack(buf, false)]
			t.sc.s.log.Error("rpc handler panic", "method", t.method, "panic", r, "stack", string(buf))
			err = fmt.Errorf("rpc: handler panic: %v", r)
		}
	}()
	return t.h(ctx, t.req, &t.rep)
}
