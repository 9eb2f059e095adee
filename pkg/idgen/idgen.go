// Package idgen makes 64-bit message ids that are unique across nodes and
// ordered by time: 41 bits of milliseconds since 2024-01-01 UTC, 10 bits of
// node id, 12 bits of sequence within the millisecond (snowflake layout).
// Within one node ids strictly increase, even if the wall clock steps back.
package idgen

import (
	"fmt"
	"sync"
	"time"
)

// Epoch is the zero of the time part, in unix milliseconds (2024-01-01 UTC).
const Epoch int64 = 1704067200000

const (
	nodeBits = 10
	seqBits  = 12
	maxNode  = 1<<nodeBits - 1
	maxSeq   = 1<<seqBits - 1
)

// Generator makes ids for one node. It is safe for concurrent use.
type Generator struct {
	mu   sync.Mutex
	node uint64
	last int64 // ms since Epoch of the last id
	seq  uint64
	now  func() time.Time
}

// New returns a generator for node (0..1023).
func New(node int) (*Generator, error) {
	if node < 0 || node > maxNode {
		return nil, fmt.Errorf("idgen: node %d out of range 0..%d", node, maxNode)
	}
	return &Generator{node: uint64(node), now: time.Now}, nil
}

// Next returns a new id.
func (g *Generator) Next() uint64 {
	g.mu.Lock()
	ms := g.now().UnixMilli() - Epoch
	if ms <= g.last { // same millisecond, or the clock stepped back
		ms = g.last
		g.seq++
		if g.seq > maxSeq { // borrow the next millisecond
			ms++
			g.seq = 0
		}
	} else {
		g.seq = 0
	}
	g.last = ms
	id := uint64(ms)<<(nodeBits+seqBits) | g.node<<seqBits | g.seq
	g.mu.Unlock()
	return id
}

// Time returns the creation time encoded in id.
func Time(id uint64) time.Time {
	return time.UnixMilli(int64(id>>(nodeBits+seqBits)) + Epoch)
}
