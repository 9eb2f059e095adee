package room

import (
	"net/netip"
	"sync"
)

// ipCounter counts open connections per client IP for MaxConnsPerIP. Accepts
// are far rarer than frames, so one lock is enough.
type ipCounter struct {
	mu sync.Mutex
	m  map[netip.Addr]int32
}

func (c *ipCounter) init() { c.m = make(map[netip.Addr]int32) }

// acquire counts one more connection from ip unless it already has max.
func (c *ipCounter) acquire(ip netip.Addr, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.m[ip]
	if int(n) >= max {
		return false
	}
	c.m[ip] = n + 1
	return true
}

// release forgets one connection from ip.
func (c *ipCounter) release(ip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.m[ip]; n <= 1 {
		delete(c.m, ip)
	} else {
		c.m[ip] = n - 1
	}
}
