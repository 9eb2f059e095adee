package room

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// events is the gnet.EventHandler of a room. It is a separate type so the
// gnet callbacks do not become part of Room's exported API.
type events struct {
	gnet.BuiltinEventEngine
	r *Room
}

func (h *events) OnBoot(eng gnet.Engine) gnet.Action {
	r := h.r
	addr, err := boundAddr(eng)
	if err != nil {
		r.log.Error("cannot learn the bound address", "err", err)
		addr = r.cfg.Addr
	}
	r.eng = eng
	r.addr = addr
	close(r.booted)
	return gnet.None
}

// boundAddr reads the listener's real address, so that ":0" works.
func boundAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", err
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return "", err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String(), nil
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String(), nil
	}
	return "", fmt.Errorf("unexpected socket address %T", sa)
}

func (h *events) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	r := h.r
	cfg := &r.deps.Config.Load().Room
	ip := remoteIP(c.RemoteAddr())
	refuse := func(reason string) ([]byte, gnet.Action) {
		mRefused.WithLabelValues(reason).Inc()
		return nil, gnet.Close
	}
	if r.isClosing() {
		return refuse("shutdown")
	}
	if !cfg.IPAllowed(ip) {
		return refuse("ip_denied")
	}
	// The cap counts every admitted connection, authenticated or not: it is
	// what keeps the process below its open-files limit, where an accept
	// error (EMFILE) would stop the whole engine.
	if r.conns.Add(1) > int64(cfg.MaxConns) {
		r.conns.Add(-1)
		return refuse("max_conns")
	}
	if r.unauthed.Add(1) > int64(cfg.MaxUnauthed) {
		r.unauthed.Add(-1)
		r.conns.Add(-1)
		return refuse(string(refusedUnauthAll))
	}
	if res := r.ips.acquire(ip, cfg.MaxConnsPerIP, cfg.MaxUnauthedPerIP,
		connectLimit(cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP), r.nowMS()); res != admitted {
		r.unauthed.Add(-1)
		r.conns.Add(-1)
		return refuse(string(res))
	}
	l := r.loopOf(c.EventLoop())
	now := r.now()
	s := &connState{c: c, loop: l, id: r.nextID.Add(1), ip: ip, active: now, unauthed: true}
	l.link(s)
	c.SetContext(s)
	mConns.Inc()
	return nil, gnet.None
}

func remoteIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func (h *events) OnClose(c gnet.Conn, _ error) gnet.Action {
	s, _ := c.Context().(*connState)
	if s == nil { // refused in OnOpen
		return gnet.None
	}
	switch {
	case s.lingering:
		s.lingering = false
		h.r.releaseConn(s)
	case s.state != stClosed:
		h.r.endSession(s)
		h.r.releaseConn(s)
	}
	return gnet.None
}

func (h *events) OnTraffic(c gnet.Conn) gnet.Action {
	s, _ := c.Context().(*connState)
	switch {
	case s == nil:
		return gnet.Close
	case s.lingering:
		h.r.lingerTraffic(s)
		return gnet.None
	case s.state == stClosed:
		return gnet.Close
	}
	return h.r.drainFrames(s)
}

func (h *events) OnTick() (time.Duration, gnet.Action) {
	return h.r.tick(), gnet.None
}

// endSession ends the session of a connection that gnet closed or that
// lingers before its close (loop only): nothing is delivered to it any more.
func (r *Room) endSession(s *connState) {
	was := s.state
	s.state = stClosed
	s.pending = nil
	if was == stAuthing || was == stAuthed {
		r.idx.remove(s)
	}
	if was == stAuthed {
		r.onl.Add(-1)
		mOnline.Dec()
	}
	// An auth still in flight (stAuthing) cleans up after itself when its
	// result comes back to the loop and finds the connection closed.
	if s.registered && !s.cleaned {
		s.cleaned = true // a lingering connection must not be unregistered twice
		r.unregisterAsync(s)
	}
}

// releaseConn gives back what an open connection holds: its place on the
// loop and in the connection caps (loop only, from OnClose).
func (r *Room) releaseConn(s *connState) {
	s.loop.unlink(s)
	r.conns.Add(-1)
	r.ips.release(s.ip, s.unauthed)
	if s.unauthed {
		s.unauthed = false
		r.unauthed.Add(-1)
	}
	mConns.Dec()
	if !s.byUs {
		mClosePeer.Inc()
	}
}

// authenticated takes s out of the caps on unauthenticated connections
// once its token checked out (loop only).
func (r *Room) authenticated(s *connState) {
	if s.unauthed {
		s.unauthed = false
		r.unauthed.Add(-1)
		r.ips.authed(s.ip)
	}
}

// closeConn closes s from a runnable or sweep on its loop (not from
// OnTraffic, which returns gnet.Close instead). OnClose runs before it
// returns. A lingering connection is closed for good.
func (r *Room) closeConn(s *connState, reason string) {
	if s.state == stClosed && !s.lingering {
		return
	}
	r.markClose(s, reason)
	_ = s.loop.el.Close(s.c)
}

// markClose counts why the room closes s.
func (r *Room) markClose(s *connState, reason string) {
	if !s.byUs {
		s.byUs = true
		mCloses.WithLabelValues(reason).Inc()
	}
}

// gnetLogger sends gnet's own logs to the room's slog logger. gnet's info
// lines are start-up chatter, so they go out at debug level.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) log(level slog.Level, format string, args []any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, "gnet: "+fmt.Sprintf(format, args...))
	}
}

func (g gnetLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args) }
func (g gnetLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.log(slog.LevelWarn, format, args) }
func (g gnetLogger) Errorf(format string, args ...any) { g.log(slog.LevelError, format, args) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.log(slog.LevelError, format, args) }
