package keeper

import (
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// What keeper does while ZooKeeper is away (docs/cluster.md, "During a
// ZooKeeper outage"):
//
//   - The session handshake is bounded (handshakeConn): go-zookeeper v1.0.4
//     gives a server 10 x recvTimeout (2/3 of the session timeout, so ~67 s
//     for 10 s) to answer the connect request; a server that accepts and
//     then stalls held every process that long. Now it gets
//     ZKConfig.HandshakeTimeout, then the next server is tried.
//   - Membership is frozen while the session is down, and for
//     ZKConfig.OutageGrace after it is back the members known at the freeze
//     stay listed even if their znodes are missing (memberView): they may be
//     reconnecting, or re-creating their ephemerals in a new session, after
//     the same outage.

// DefaultHandshakeTimeout bounds the session handshake on one connection
// (see ZKConfig.HandshakeTimeout).
const DefaultHandshakeTimeout = 3 * time.Second

// defaultGrace is ZKConfig.OutageGrace when unset. A peer that did not get
// back in time loses its session up to one session timeout plus one server
// tick (tickTime, 2 s by default: expiries are rounded up to it) after
// ZooKeeper is back. It learns so at its next handshake, which a stalled
// server can delay by up to two handshake bounds (the one it is stuck in, and
// one more), plus 1 s to dial and the client's 1 s backoff, then re-creates
// its znode in its next sync pass (at most 1 s later). Hence session timeout
// + 2 x handshake + 5 s: 21 s for the defaults (10 s, 3 s).
func defaultGrace(session, handshake time.Duration) time.Duration {
	return session + 2*handshake + 5*time.Second
}

// handshakeConn is a connection to a ZooKeeper server during its session
// handshake: every deadline go-zookeeper sets is clamped to the handshake
// deadline, so the connect request and its answer (whose body the library
// reads without any deadline) take at most ZKConfig.HandshakeTimeout. Once
// the session is established (ZKClient.onEvent) the clamp is lifted and the
// library's own deadlines apply.
type handshakeConn struct {
	net.Conn
	deadline time.Time
	done     atomic.Bool
}

func newHandshakeConn(conn net.Conn, timeout time.Duration) *handshakeConn {
	hc := &handshakeConn{Conn: conn, deadline: time.Now().Add(timeout)}
	_ = conn.SetDeadline(hc.deadline)
	return hc
}

func (c *handshakeConn) clamp(t time.Time) time.Time {
	if c.done.Load() || (!t.IsZero() && t.Before(c.deadline)) {
		return t
	}
	return c.deadline
}

// established lifts the clamp. It runs from the library's StateHasSession
// event, on its connection goroutine, before its send and receive loops
// start: no other goroutine uses the connection yet.
func (c *handshakeConn) established() {
	if c.done.CompareAndSwap(false, true) {
		_ = c.Conn.SetDeadline(time.Time{})
	}
}

func (c *handshakeConn) SetDeadline(t time.Time) error     { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *handshakeConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *handshakeConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// memberView decides what the directory shows of the ZooKeeper mirror
// around an outage. It is pure (time comes in as arguments) and not safe
// for concurrent use: the zkBackend calls it under its mutex.
//
//   - Healthy: the mirror as is; a member whose znode goes is gone at once
//     (it left, or its session expired while ZooKeeper was up).
//   - Frozen (freeze: the session is lost): the last list shown stays.
//   - Thawed (thaw: a session again, the same or a new one): until
//     now + grace, every member of the list shown at the freeze is still
//     shown while its znode is missing (with its last known data); one
//     whose znode is there is shown as ZooKeeper has it (and remembered so,
//     should it go again within the grace). Members first seen
//     after the thaw are not protected. When the grace ends (expire), the
//     protected members still missing are removed.
type memberView struct {
	grace   time.Duration
	frozen  bool
	protect map[string]map[string]push.Member // the list at the freeze; nil: none
	until   time.Time                         // end of the grace
	shown   map[string]map[string]push.Member // the last list handed out (never mutated)
	held    int                               // protected members shown though missing
}

// freeze reports whether the view was not frozen already.
func (v *memberView) freeze() bool {
	if v.frozen {
		return false
	}
	v.frozen = true
	v.protect = nil
	for role, byID := range v.shown {
		if len(byID) == 0 {
			continue
		}
		if v.protect == nil {
			v.protect = make(map[string]map[string]push.Member, len(v.shown))
		}
		v.protect[role] = maps.Clone(byID)
	}
	v.until = time.Time{}
	return true
}

// thaw ends a freeze and starts the grace; it reports whether the view was frozen.
func (v *memberView) thaw(now time.Time) bool {
	if !v.frozen {
		return false
	}
	v.frozen = false
	v.until = now.Add(v.grace)
	return true
}

// graceLeft is how long the current grace lasts still; 0 when none runs.
func (v *memberView) graceLeft(now time.Time) time.Duration {
	if v.frozen || v.protect == nil {
		return 0
	}
	return max(v.until.Sub(now), 0)
}

// expired reports, once, that a grace has ended and the mirror must be shown
// again without its protection.
func (v *memberView) expired(now time.Time) bool {
	return !v.frozen && v.protect != nil && !now.Before(v.until)
}

// show returns the list to hand out for mirror (role -> id -> member, which
// it does not keep) and the protected members it removed because the grace
// ended ("role/id"). While frozen it returns the last list shown.
func (v *memberView) show(now time.Time, mirror map[string]map[string]push.Member) (map[string]map[string]push.Member, []string) {
	if v.frozen {
		return v.shown, nil
	}
	out := make(map[string]map[string]push.Member, len(mirror))
	for role, byID := range mirror {
		out[role] = maps.Clone(byID)
	}
	var removed []string
	held := 0
	for role, byID := range v.protect {
		for id, m := range byID {
			if cur, ok := out[role][id]; ok {
				byID[id] = cur // the latest data (a new Epoch) if it goes again
				continue
			}
			if !now.Before(v.until) {
				removed = append(removed, role+"/"+id)
				continue
			}
			if out[role] == nil {
				out[role] = make(map[string]push.Member)
			}
			out[role][id] = m
			held++
		}
	}
	if !now.Before(v.until) {
		v.protect = nil
	}
	slices.Sort(removed)
	v.held = held
	v.shown = out
	return out, removed
}
