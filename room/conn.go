package room

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// Session states of a connection. Loop-owned.
const (
	stNew     uint8 = iota // waiting for AUTH
	stAuthing              // AUTH accepted offline, workers are registering it
	stAuthed               // AUTH_OK sent
	stClosed               // OnClose ran, or the connection lingers (lingerClose)
)

// connState is everything the room keeps per connection, set as the gnet
// connection's context. It is kept small: ~1M of these per instance is the
// design point.
//
// Ownership: the connection's loop owns every field, except that
//   - c, loop, id and ip never change after OnOpen, and uid never changes
//     after the state leaves stNew (it is set before the connection enters
//     the index, under the shard lock), so any goroutine may read them;
//   - apps is an atomic copy-on-write set, read by Push on any goroutine;
//   - sameNext is guarded by the index shard lock;
//   - setMu serialises this connection's Register.SetApps calls on workers.
type connState struct {
	c    gnet.Conn
	loop *loopState
	id   uint64
	uid  string
	ip   netip.Addr

	apps     atomic.Pointer[[]uint32]
	sameNext *connState // older connection of the same uid (index)
	setMu    sync.Mutex

	prev, next *connState // loop's list of connections

	active     int64    // monotonic ns: open time while stNew, then last frame
	since      int64    // login time, unix seconds (the session's Since)
	pending    [][]byte // PUSH frames that arrived while stAuthing
	ping, ack  bucket   // op limits (limits.go)
	bind, up   bucket
	errs       bucket // ERROR replies
	hb         int32  // negotiated heartbeat, seconds
	state      uint8
	registered bool // Register succeeded: closing must unregister
	byUs       bool // the room decided to close it (counted by reason)
	cleaned    bool // its unregister is queued, or Shutdown took it over
	lingering  bool // session over, socket kept until the client closes (linger.go)
	finSent    bool // lingering and shutdown(SHUT_WR) done
	paused     bool // output past replyBudget: frames are not read (write.go)
	unauthed   bool // counted in the unauthenticated caps (admit.go)
}

// hasApp reports whether app is bound. Safe on any goroutine.
func (s *connState) hasApp(app uint32) bool {
	p := s.apps.Load()
	return p != nil && slices.Contains(*p, app)
}

// appList returns the bound apps; the slice must not be modified.
func (s *connState) appList() []uint32 {
	if p := s.apps.Load(); p != nil {
		return *p
	}
	return nil
}

// addApp binds app (loop only); false when it was already bound.
func (s *connState) addApp(app uint32) bool {
	cur := s.appList()
	if slices.Contains(cur, app) {
		return false
	}
	next := make([]uint32, len(cur), len(cur)+1)
	copy(next, cur)
	next = append(next, app)
	s.apps.Store(&next)
	return true
}

// removeApp unbinds app (loop only); false when it was not bound.
func (s *connState) removeApp(app uint32) bool {
	cur := s.appList()
	i := slices.Index(cur, app)
	if i < 0 {
		return false
	}
	next := make([]uint32, 0, len(cur)-1)
	next = append(next, cur[:i]...)
	next = append(next, cur[i+1:]...)
	s.apps.Store(&next)
	return true
}
