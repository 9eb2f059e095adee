package room

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// events is the gnet.EventHandler of a room. It is a separate type so the
// gnet callbacks do not become part of Room's exported API. Each callback
// only dispatches: the session lifecycle is in session.go, the reading of
// frames in dispatch.go.
type events struct {
	gnet.BuiltinEventEngine
	r *Room
}

func (h *events) OnBoot(eng gnet.Engine) gnet.Action {
	r := h.r
	addr, err := boundAddr(eng, r.lns.raw)
	if err != nil {
		r.log.Error("cannot learn the bound address", "err", err)
		addr = r.cfg.Addr
	}
	if r.lns.ws != "" {
		ws, err := boundAddr(eng, r.lns.ws)
		if err != nil {
			r.log.Error("cannot learn the bound WebSocket address", "err", err)
			ws = r.cfg.WSAddr
		}
		r.wsAddr = ws
		r.lns.setBound(addr, ws)
	}
	r.eng = eng
	r.addr = addr
	close(r.booted)
	return gnet.None
}

// boundAddr reads the real address of the listener on listen (its host:port
// as given to gnet), so that ":0" works.
func boundAddr(eng gnet.Engine, listen string) (string, error) {
	fd, err := eng.DupListener("tcp", listen)
	if err != nil {
		return "", err
	}
	defer syscall.Close(fd)
	ap, err := sockName(fd)
	if err != nil {
		return "", err
	}
	return ap.String(), nil
}

// sockName is getsockname(2) of fd as a netip.AddrPort.
func sockName(fd int) (netip.AddrPort, error) {
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), nil
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("unexpected socket address %T", sa)
}

func (h *events) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	return h.r.openConn(c)
}

func (h *events) OnClose(c gnet.Conn, _ error) gnet.Action {
	if s, _ := c.Context().(*connState); s != nil { // nil: refused in OnOpen
		h.r.connClosed(s)
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
	case s.shaking:
		return h.r.shake(s)
	}
	return h.r.drainFrames(s)
}

func (h *events) OnTick() (time.Duration, gnet.Action) {
	return h.r.tick(), gnet.None
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
