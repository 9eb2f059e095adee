package room

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/panjf2000/gnet/v2"
)

// The room's listeners: raw TCP on Config.Addr and, when Config.WSAddr is
// set, WebSocket on a second address of the same gnet engine (gnet.Rotate),
// so both kinds of connection share the event loops, the caps and the
// sweep. transportFor tells them apart by the listener a connection came in
// on (isWS).

// listeners is the addresses the engine listens on. Set before the engine
// starts (raw, ws, byPort) and in OnBoot (wsBound), before any connection.
type listeners struct {
	raw, ws string // host:port as given to gnet; ws "" when there is no WebSocket listener
	// byPort: the configured ports differ and are fixed, so a connection's
	// LocalAddr (gnet gives the listener's configured address) tells the
	// listeners apart without a system call.
	byPort  bool
	wsPort  int
	wsBound netip.AddrPort // the WebSocket listener's bound address (OnBoot)
}

// newListeners builds the listen addresses. Two ":0"-style addresses that
// are the same string (tests: "127.0.0.1:0" twice) would be the same key to
// gnet's DupListener, so the WebSocket one is written with port "00", which
// binds a port of its own all the same.
func newListeners(addr, ws string) listeners {
	l := listeners{raw: addr, ws: ws}
	if ws == "" {
		return l
	}
	if ws == addr {
		if host, _, err := net.SplitHostPort(ws); err == nil {
			l.ws = net.JoinHostPort(host, "00")
		}
	}
	rp, wp := portOf(addr), portOf(ws)
	l.byPort = rp > 0 && wp > 0 && rp != wp
	l.wsPort = wp
	return l
}

// zeroPort reports whether addr asks for a port chosen at bind.
func zeroPort(addr string) bool { return portOf(addr) == 0 }

func portOf(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(port)
	return p
}

func (l *listeners) gnetAddrs() []string {
	if l.ws == "" {
		return []string{"tcp://" + l.raw}
	}
	return []string{"tcp://" + l.raw, "tcp://" + l.ws}
}

// setBound records the bound WebSocket address (OnBoot).
func (l *listeners) setBound(_, ws string) {
	if ap, err := netip.ParseAddrPort(ws); err == nil {
		l.wsBound = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
}

// isWS reports whether c came in on the WebSocket listener (OnOpen).
func (l *listeners) isWS(c gnet.Conn) bool {
	if l.ws == "" {
		return false
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && l.byPort {
		return la.Port == l.wsPort
	}
	// Ports chosen at bind, or one port on two addresses: ask the socket.
	ap, err := sockName(c.Fd())
	if err != nil || !l.wsBound.IsValid() || ap.Port() != l.wsBound.Port() {
		return false
	}
	wa := l.wsBound.Addr()
	return wa.IsUnspecified() || ap.Addr().Unmap() == wa
}
