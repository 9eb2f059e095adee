package room

import (
	"net/netip"
	"sync"
)

// Connection admission (OnOpen, admitConn): the allow/deny lists, caps per
// process and per client IP, on every connection and on those that have not
// authenticated yet, and a connect rate per IP. A connection that has not
// authenticated is cheap to open and to hold, so it has caps of its own,
// well below the others: idle sockets from a handful of addresses must not
// lock out every new login.

// admitConn counts a new connection from ip in the caps, or names why it is
// refused (OnOpen). An admitted connection is unauthenticated until
// authenticated (session.go) and gives its counts back in releaseConn.
//
// proxied means the peer is a trusted proxy (proxy.go): its address is not
// the client's, so the lists and the per-IP caps wait for the PROXY header
// (readmit) and only the process-wide caps apply here.
func (r *Room) admitConn(ip netip.Addr, proxied bool) admitResult {
	cfg := &r.deps.Config.Load().Room
	if r.isClosing() {
		return refusedShutdown
	}
	if !proxied && !cfg.IPAllowed(ip) {
		return refusedIPDenied
	}
	// The cap counts every admitted connection, authenticated or not: it is
	// what keeps the process below its open-files limit, where an accept
	// error (EMFILE) would stop the whole engine.
	if r.conns.Add(1) > int64(cfg.MaxConns) {
		r.conns.Add(-1)
		return refusedMaxConns
	}
	if r.unauthed.Add(1) > int64(cfg.MaxUnauthed) {
		r.unauthed.Add(-1)
		r.conns.Add(-1)
		return refusedUnauthAll
	}
	if proxied {
		return admitted
	}
	if res := r.ips.acquire(ip, cfg.MaxConnsPerIP, cfg.MaxUnauthedPerIP,
		connectLimit(cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP), r.nowMS()); res != admitted {
		r.unauthed.Add(-1)
		r.conns.Add(-1)
		return res
	}
	return admitted
}

// readmit moves a connection in its transport's handshake (still
// unauthenticated) to the client address the transport learned (a PROXY
// header): the allow/deny lists and the per-IP caps apply to that address
// from then on, not to the peer's. It reports false, counted as refused,
// when that address may not connect; the connection keeps its counts under
// its old address, which its close gives back (loop only). A connection
// from a trusted proxy has no old address (s.ip() invalid, counted nowhere).
func (r *Room) readmit(s *connState, ip netip.Addr) bool {
	cfg := &r.deps.Config.Load().Room
	res := admitted
	if !cfg.IPAllowed(ip) {
		res = refusedIPDenied
	} else {
		res = r.ips.acquire(ip, cfg.MaxConnsPerIP, cfg.MaxUnauthedPerIP,
			connectLimit(cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP), r.nowMS())
	}
	if res != admitted {
		mRefused.WithLabelValues(string(res)).Inc()
		return false
	}
	r.ips.release(s.ip(), s.unauthed)
	s.setIP(ip)
	return true
}

// ipState is what the room keeps per client IP.
type ipState struct {
	conns    int32  // admitted connections
	unauthed int32  // of them, not authenticated yet
	rate     bucket // connect rate
}

// ipCounter counts connections per client IP. Accepts are far rarer than
// frames, so one lock is enough.
type ipCounter struct {
	mu sync.Mutex
	m  map[netip.Addr]*ipState
}

func (c *ipCounter) init() { c.m = make(map[netip.Addr]*ipState) }

// admitResult names why acquire refused, "" when it admitted.
type admitResult string

const (
	admitted         admitResult = ""
	refusedPerIP     admitResult = "max_conns_per_ip"
	refusedUnauthIP  admitResult = "max_unauthed_per_ip"
	refusedRateIP    admitResult = "connect_rate"
	refusedUnauthAll admitResult = "max_unauthed"
	refusedMaxConns  admitResult = "max_conns"
	refusedIPDenied  admitResult = "ip_denied"
	refusedShutdown  admitResult = "shutdown"
)

// acquire counts one more (unauthenticated) connection from ip unless a
// per-IP cap or the IP's connect rate refuses it. The connect rate is
// charged for every attempt, admitted or not.
func (c *ipCounter) acquire(ip netip.Addr, maxConns, maxUnauthed int, rate opLimit, nowMS uint32) admitResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[ip]
	if st == nil {
		st = &ipState{}
		c.m[ip] = st
	}
	switch {
	case !st.rate.allow(rate, nowMS):
		return refusedRateIP
	case int(st.conns) >= maxConns:
		return refusedPerIP
	case int(st.unauthed) >= maxUnauthed:
		return refusedUnauthIP
	}
	st.conns++
	st.unauthed++
	return admitted
}

// authed moves one connection of ip out of the unauthenticated count.
func (c *ipCounter) authed(ip netip.Addr) {
	c.mu.Lock()
	if st := c.m[ip]; st != nil && st.unauthed > 0 {
		st.unauthed--
	}
	c.mu.Unlock()
}

// release forgets one connection from ip; unauthed says whether it was
// still counted as not authenticated. The IP's entry stays while its
// connect bucket is not full again (purge).
func (c *ipCounter) release(ip netip.Addr, unauthed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[ip]
	if st == nil {
		return
	}
	st.conns--
	if unauthed && st.unauthed > 0 {
		st.unauthed--
	}
}

// purge drops the entries of IPs with no connection whose connect bucket
// has refilled, so the map holds the IPs connected now or recently.
func (c *ipCounter) purge(rate opLimit, nowMS uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ip, st := range c.m {
		if st.conns > 0 {
			continue
		}
		if st.rate.used == 0 || (nowMS-st.rate.at)/rate.msPerToken >= uint32(st.rate.used) {
			delete(c.m, ip)
		}
	}
}

// count returns the connections counted for ip (tests).
func (c *ipCounter) count(ip netip.Addr) (conns, unauthed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.m[ip]; st != nil {
		return int(st.conns), int(st.unauthed)
	}
	return 0, 0
}

// connectLimit turns the configured connect rate into a bucket shape: 0
// means unlimited (a bucket too large to empty).
func connectLimit(perSec float64, burst int) opLimit {
	if perSec <= 0 {
		return opLimit{burst: 65535, msPerToken: 1}
	}
	ms := uint32(1000 / perSec)
	if ms == 0 {
		ms = 1
	}
	return opLimit{burst: uint16(min(burst, 65535)), msPerToken: ms}
}
