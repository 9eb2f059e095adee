package saver

import (
	"cmp"
	"slices"
	"sync"

	"github.com/lcpush/lcpush/pkg/push"
)

// bcache holds live broadcasts in memory, per app in ID order: broadcasts
// are few and every Load reads them, so no Load goes to a server for them.
// Each carries the store-assigned sequence number the broadcast cursors
// order by (bcursor.go; 0: not assigned yet, which keeps it out of
// liveSeqs). RedisStore keeps it in step with Redis by a version number.
type bcache struct {
	mu    sync.RWMutex
	byID  map[uint64]push.Message
	byApp map[uint32][]push.Message
	seqs  map[uint64]uint64   // id -> seq, for the ids that have one
	bySeq map[uint32][]seqRef // per app, ascending seq
	ver   int64               // the Redis version the content reflects; 0: unknown
	// horizon: every broadcast with seq <= horizon is here (or was
	// deleted). A cursor advances only over seqs up to it: another
	// saver may have made a broadcast this cache does not hold yet.
	horizon uint64
}

// seqRef is one sequenced broadcast in an app's seq order.
type seqRef struct {
	seq, id uint64
	expire  int64
}

func newBcache() *bcache {
	return &bcache{byID: map[uint64]push.Message{}, byApp: map[uint32][]push.Message{},
		seqs: map[uint64]uint64{}, bySeq: map[uint32][]seqRef{}}
}

// put adds or replaces a broadcast, keeping the seq it has; the cache
// keeps msg's payload.
func (c *bcache) put(msg push.Message) { c.putSeq(msg, 0) }

// putSeq adds or replaces a broadcast with its seq (0: keep the one it has).
func (c *bcache) putSeq(msg push.Message, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(msg, seq)
}

func (c *bcache) putLocked(msg push.Message, seq uint64) {
	msg.Broadcast = true
	if seq == 0 {
		seq = c.seqs[msg.ID]
	}
	if _, ok := c.byID[msg.ID]; ok {
		c.dropLocked(msg.ID)
	}
	c.byID[msg.ID] = msg
	list := c.byApp[msg.App]
	i, _ := slices.BinarySearchFunc(list, msg.ID, cmpID)
	c.byApp[msg.App] = slices.Insert(list, i, msg)
	if seq == 0 {
		return
	}
	c.seqs[msg.ID] = seq
	refs := c.bySeq[msg.App]
	j, _ := slices.BinarySearchFunc(refs, seq, cmpSeqRef)
	c.bySeq[msg.App] = slices.Insert(refs, j, seqRef{seq: seq, id: msg.ID, expire: msg.Expire})
}

func cmpSeqRef(r seqRef, seq uint64) int { return cmp.Compare(r.seq, seq) }

func (c *bcache) drop(ids ...uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.dropLocked(id)
	}
}

func (c *bcache) dropLocked(id uint64) {
	msg, ok := c.byID[id]
	if !ok {
		return
	}
	delete(c.byID, id)
	list := c.byApp[msg.App]
	if i, found := slices.BinarySearchFunc(list, id, cmpID); found {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(c.byApp, msg.App)
	} else {
		c.byApp[msg.App] = list
	}
	seq, ok := c.seqs[id]
	if !ok {
		return
	}
	delete(c.seqs, id)
	refs := c.bySeq[msg.App]
	if j, found := slices.BinarySearchFunc(refs, seq, cmpSeqRef); found {
		refs = slices.Delete(refs, j, j+1)
	}
	if len(refs) == 0 {
		delete(c.bySeq, msg.App)
	} else {
		c.bySeq[msg.App] = refs
	}
}

// replace sets the whole content, as of version ver; seqs gives the seq
// of each broadcast that has one, horizon the last seq given out when the
// content was read.
func (c *bcache) replace(all []push.Message, seqs map[uint64]uint64, ver int64, horizon uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.horizon = horizon
	c.byID, c.byApp = make(map[uint64]push.Message, len(all)), map[uint32][]push.Message{}
	c.seqs, c.bySeq = make(map[uint64]uint64, len(all)), map[uint32][]seqRef{}
	for _, m := range all {
		c.putLocked(m, seqs[m.ID])
	}
	c.ver = ver
}

// live returns the unexpired broadcasts of apps, in ID order.
func (c *bcache) live(apps []uint32, now int64) []push.Message {
	var out []push.Message
	c.mu.RLock()
	for _, app := range dedupApps(apps) {
		for _, m := range c.byApp[app] {
			if !m.Expired(now) {
				out = append(out, m)
			}
		}
	}
	c.mu.RUnlock()
	sortByID(out)
	return out
}

// lastExpire returns the latest expiry of the unexpired broadcasts of apps
// (0: none); one that never expires is left out.
func (c *bcache) lastExpire(apps []uint32, now int64) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var e int64
	for _, app := range apps {
		for _, m := range c.byApp[app] {
			if m.Expire > now {
				e = max(e, m.Expire)
			}
		}
	}
	return e
}

// hasLasting reports whether app has a live broadcast that never expires:
// the one kind a user's Redis hash does not outlive (its TTL follows the
// latest expiry its cursors cover, `y`).
func (c *bcache) hasLasting(app uint32) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.byApp[app] {
		if m.Expire == 0 {
			return true
		}
	}
	return false
}

func (c *bcache) get(id uint64) (push.Message, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.byID[id]
	return m, ok
}

// seq returns id's seq; 0 when id is unknown or has none yet.
func (c *bcache) seq(id uint64) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.seqs[id]
}

// seqView is what a cursor of one app is normalized against
// (normalizeAt): the app's live seqs, the horizon, and the seqs above it
// known to be expired.
type seqView struct {
	live    []uint64 // ascending
	horizon uint64
	dead    []uint64 // ascending, all above horizon
}

// view returns app's seqView at now: its live seqs ascending, which
// bcursor.normalize takes.
func (c *bcache) view(app uint32, now int64) seqView {
	c.mu.RLock()
	defer c.mu.RUnlock()
	refs := c.bySeq[app]
	v := seqView{live: make([]uint64, 0, len(refs)), horizon: c.horizon}
	for _, r := range refs {
		switch {
		case r.expire == 0 || now < r.expire:
			v.live = append(v.live, r.seq)
		case r.seq > c.horizon:
			v.dead = append(v.dead, r.seq)
		}
	}
	return v
}

// extend records a seq this process gave out after prev (the last one
// given out before it): the horizon follows when it was at prev or above.
func (c *bcache) extend(prev, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev <= c.horizon && seq > c.horizon {
		c.horizon = seq
	}
}

// maxSeq returns the highest seq held (0: none).
func (c *bcache) maxSeq() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var m uint64
	for _, refs := range c.bySeq {
		if len(refs) > 0 {
			m = max(m, refs[len(refs)-1].seq)
		}
	}
	return m
}

func (c *bcache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byID)
}

func (c *bcache) version() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ver
}

// advance records that this process made version ver from ver-1; otherwise
// the next refresh reads everything again.
func (c *bcache) advance(ver int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ver == ver-1 {
		c.ver = ver
	}
}
