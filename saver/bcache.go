package saver

import (
	"slices"
	"sync"

	"github.com/lcpush/lcpush/pkg/push"
)

// bcache holds live broadcasts in memory, per app in ID order: broadcasts
// are few and every Load reads them, so no Load goes to a server for them.
// RedisStore keeps it in step with Redis by a version number.
type bcache struct {
	mu    sync.RWMutex
	byID  map[uint64]push.Message
	byApp map[uint32][]push.Message
	ver   int64 // the Redis version the content reflects; 0: unknown
}

func newBcache() *bcache {
	return &bcache{byID: map[uint64]push.Message{}, byApp: map[uint32][]push.Message{}}
}

// put adds or replaces a broadcast; the cache keeps msg's payload.
func (c *bcache) put(msg push.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(msg)
}

func (c *bcache) putLocked(msg push.Message) {
	msg.Broadcast = true
	if _, ok := c.byID[msg.ID]; ok {
		c.dropLocked(msg.ID)
	}
	c.byID[msg.ID] = msg
	list := c.byApp[msg.App]
	i, _ := slices.BinarySearchFunc(list, msg.ID, cmpID)
	c.byApp[msg.App] = slices.Insert(list, i, msg)
}

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
}

// replace sets the whole content, as of version ver.
func (c *bcache) replace(all []push.Message, ver int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID, c.byApp = make(map[uint64]push.Message, len(all)), map[uint32][]push.Message{}
	for _, m := range all {
		c.putLocked(m)
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

func (c *bcache) get(id uint64) (push.Message, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.byID[id]
	return m, ok
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
