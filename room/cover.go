package room

import (
	"time"

	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
)

// Broadcast coverage: a stored (QoS 1) broadcast reaches a connection
// either live, from the room's task for it, or from a load (AUTH, BIND,
// Redeliver), and never from both. Each loop keeps, per recent broadcast,
// when its live delivery took the loop's connections (cover.live, a value
// of the loop's counter seq) and which connections a load gave it before
// that (loaded). A connection's cover field is the counter's value when it
// last became a target of new broadcasts (AUTH done, an app bound), so:
//
//   - a load skips a broadcast whose live delivery was written here (a
//     paced task's: all its steps on the loop) for a connection whose
//     cover precedes it (the connection had it; before a paced task's
//     last step, a load still writes it: a second copy at worst, none
//     missing if the task ends early);
//   - the live delivery skips the connections a load gave it first (a
//     paced task leaves them out of its snapshot).
//
// Both lists are bounded; past them a connection may get a second copy,
// which clients dedup by id (the protocol's rule), as before.

const (
	// maxCoverIDs bounds the broadcasts one loop keeps coverage of.
	maxCoverIDs = 1024
	// maxCoverLoaded bounds the (broadcast, connection) load notes of a loop.
	maxCoverLoaded = 16384
	// coverRecent: a load notes only broadcasts created this recently; an
	// older one was delivered live long ago, or never will be here.
	coverRecent = 2 * time.Minute
	// coverKeep is how long a loop keeps a broadcast's coverage: longer
	// than a resumed job's lease lapse, and a paced task's steps.
	coverKeep = 15 * time.Minute
)

type coverLog struct {
	seq    uint64
	m      map[uint64]*coverEntry
	order  []uint64 // ids in m, oldest first
	loaded int      // notes in all entries
}

type coverEntry struct {
	went   bool   // the live delivery was written here
	live   uint64 // then: it covered the connections whose cover is at most live
	at     time.Time
	loaded map[uint64]struct{} // connection ids a load gave it before the live delivery
}

// bump returns a fresh counter value for a connection that becomes a
// target of new broadcasts (loop only).
func (c *coverLog) bump() uint64 {
	c.seq++
	return c.seq
}

// entry returns id's coverage, created when create is set (loop only).
func (c *coverLog) entry(id uint64, now time.Time, create bool) *coverEntry {
	if e := c.m[id]; e != nil || !create {
		return e
	}
	c.expire(now)
	if c.m == nil {
		c.m = make(map[uint64]*coverEntry)
	}
	e := &coverEntry{at: now}
	c.m[id] = e
	c.order = append(c.order, id)
	return e
}

// expire drops the oldest entries past coverKeep or past the bounds.
func (c *coverLog) expire(now time.Time) {
	k := 0
	for ; k < len(c.order); k++ {
		e := c.m[c.order[k]]
		if len(c.order)-k < maxCoverIDs && c.loaded < maxCoverLoaded && now.Sub(e.at) < coverKeep {
			break
		}
		c.loaded -= len(e.loaded)
		delete(c.m, c.order[k])
	}
	if k > 0 {
		c.order = append(c.order[:0], c.order[k:]...)
	}
}

// skipLoad reports whether a load must not write the stored message m to s
// because the live delivery covered s; otherwise, for a recent broadcast
// not live here yet, it notes that s has it (loop only).
func (c *coverLog) skipLoad(s *connState, m *push.Message, now time.Time) bool {
	if !m.Broadcast {
		return false
	}
	e := c.entry(m.ID, now, false)
	if e != nil && e.went {
		return s.cover <= e.live
	}
	if now.Sub(idgen.Time(m.ID)) > coverRecent {
		return false
	}
	if e == nil {
		if e = c.entry(m.ID, now, true); e == nil {
			return false
		}
	}
	if c.loaded >= maxCoverLoaded {
		mCoverFull.Inc()
		return false
	}
	if e.loaded == nil {
		e.loaded = make(map[uint64]struct{})
	}
	if _, ok := e.loaded[s.id]; !ok {
		e.loaded[s.id] = struct{}{}
		c.loaded++
	}
	return false
}

// takeLoaded returns the connections a load gave broadcast id so far and
// forgets them, without marking the broadcast live: a paced task's
// snapshot leaves them out, but it reaches the others only step by step,
// so a load before a connection's step still writes the message (a
// second copy at worst, never none if the task ends early) (loop only).
func (c *coverLog) takeLoaded(id uint64) map[uint64]struct{} {
	e := c.m[id]
	if e == nil || e.went {
		return nil
	}
	loaded := e.loaded
	e.loaded = nil
	c.loaded -= len(loaded)
	return loaded
}

// goLive records that the live delivery of broadcast id covered the
// loop's connections whose cover is at most seq (now for an app-wide
// batch: those authenticated when it is written) and returns those a load
// gave it already (nil: none), which the delivery skips (loop only).
func (c *coverLog) goLive(id uint64, now time.Time, seq uint64) map[uint64]struct{} {
	e := c.entry(id, now, true)
	if e.went {
		return nil
	}
	e.went, e.live = true, seq
	loaded := e.loaded
	e.loaded = nil
	c.loaded -= len(loaded)
	return loaded
}
