// Package appset interns the sets of apps bound on a connection. Almost
// every connection of an instance has one of a handful of sets (its AUTH
// app alone, most often), so the room's connection state and the
// register's session record point at one shared, read-only slice per
// distinct set instead of holding a copy each: 8 bytes per connection
// instead of a 24-byte slice header and its array.
//
// The table is process-wide and never shrinks; it is bounded by MaxSets.
// Past that bound Of returns a private copy (correct, just not shared), so
// a client binding unusual combinations cannot grow it without limit. The
// sets of one app, every connection's set at AUTH, are kept apart (bounded
// by MaxOnes): a client that fills the table with BIND/UNBIND orders costs
// the others no sharing at AUTH.
package appset

import "sync"

// MaxSets bounds the distinct sets of several apps the table keeps.
const MaxSets = 4096

// MaxOnes bounds the single-app sets kept (apps are configured, so far
// fewer in practice).
const MaxOnes = 1 << 16

// maxKeyApps is the longest set whose key is built on the stack.
const maxKeyApps = 32

var table struct {
	mu   sync.RWMutex
	m    map[string]*[]uint32 // key: the apps in order, 4 little-endian bytes each
	ones map[uint32]*[]uint32 // the sets of one app
}

// Of returns a shared read-only slice equal to apps (same order), nil when
// apps is empty. The caller must never modify the result, nor apps once it
// is passed (Of copies it only when the set is new).
func Of(apps []uint32) *[]uint32 {
	if len(apps) == 0 {
		return nil
	}
	if len(apps) == 1 {
		return One(apps[0])
	}
	var kb [4 * maxKeyApps]byte
	key := kb[:0]
	if len(apps) > maxKeyApps {
		key = make([]byte, 0, 4*len(apps))
	}
	for _, a := range apps {
		key = append(key, byte(a), byte(a>>8), byte(a>>16), byte(a>>24))
	}
	table.mu.RLock()
	p := table.m[string(key)] // no allocation: the conversion is only a map key
	table.mu.RUnlock()
	if p != nil {
		return p
	}
	cp := make([]uint32, len(apps))
	copy(cp, apps)
	p = &cp
	table.mu.Lock()
	defer table.mu.Unlock()
	if q := table.m[string(key)]; q != nil {
		return q
	}
	if table.m == nil {
		table.m = make(map[string]*[]uint32)
	}
	if len(table.m) < MaxSets {
		table.m[string(key)] = p
	}
	return p
}

// One returns the shared set of the single app a.
func One(a uint32) *[]uint32 {
	table.mu.RLock()
	p := table.ones[a]
	table.mu.RUnlock()
	if p != nil {
		return p
	}
	table.mu.Lock()
	defer table.mu.Unlock()
	if q := table.ones[a]; q != nil {
		return q
	}
	p = &[]uint32{a}
	if table.ones == nil {
		table.ones = make(map[uint32]*[]uint32)
	}
	if len(table.ones) < MaxOnes {
		table.ones[a] = p
	}
	return p
}

// Len returns how many sets the table holds (tests, metrics).
func Len() int {
	table.mu.RLock()
	defer table.mu.RUnlock()
	return len(table.m) + len(table.ones)
}
