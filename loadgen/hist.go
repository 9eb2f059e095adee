package loadgen

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Hist is a log-linear latency histogram in nanoseconds: 32 sub-buckets per
// power of two (about 3% error), fixed size, lock-free recording so every
// event loop can record without coordination. Snapshots merge and subtract,
// which is how worker processes and phases of one run are combined.
type Hist struct {
	b [histBuckets]atomic.Uint64
}

const (
	histSub     = 32
	histLinear  = 2 * histSub // values below are exact
	histBuckets = histLinear + 58*histSub
)

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < histLinear {
		return int(u)
	}
	shift := bits.Len64(u) - 6 // u>>shift is in [32, 63]
	return histLinear + (shift-1)*histSub + int(u>>uint(shift)) - histSub
}

// histValue is the midpoint of bucket i.
func histValue(i int) int64 {
	if i < histLinear {
		return int64(i)
	}
	shift := (i-histLinear)/histSub + 1
	m := uint64((i-histLinear)%histSub + histSub)
	return int64(m<<uint(shift) + (uint64(1)<<uint(shift))/2)
}

// Record adds one value.
func (h *Hist) Record(d time.Duration) { h.b[histIndex(int64(d))].Add(1) }

// Snapshot copies the counts.
func (h *Hist) Snapshot() HistSnap {
	var s HistSnap
	for i := range h.b {
		if c := h.b[i].Load(); c > 0 {
			s = append(s, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// HistSnap is a sparse copy of a Hist: (bucket, count) pairs in bucket
// order. It is what workers send to the parent as JSON.
type HistSnap [][2]uint64

func (s HistSnap) dense() []uint64 {
	d := make([]uint64, histBuckets)
	for _, p := range s {
		if p[0] < histBuckets {
			d[p[0]] += p[1]
		}
	}
	return d
}

func sparse(d []uint64) HistSnap {
	var s HistSnap
	for i, c := range d {
		if c > 0 {
			s = append(s, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// Merge returns s + o.
func (s HistSnap) Merge(o HistSnap) HistSnap {
	d := s.dense()
	for _, p := range o {
		if p[0] < histBuckets {
			d[p[0]] += p[1]
		}
	}
	return sparse(d)
}

// Sub returns s - o (counts recorded since o was taken).
func (s HistSnap) Sub(o HistSnap) HistSnap {
	d := s.dense()
	for _, p := range o {
		if p[0] < histBuckets && d[p[0]] >= p[1] {
			d[p[0]] -= p[1]
		}
	}
	return sparse(d)
}

// Count is the number of values.
func (s HistSnap) Count() uint64 {
	var n uint64
	for _, p := range s {
		n += p[1]
	}
	return n
}

// Quantile returns the value at q in [0, 1]; 0 when empty.
func (s HistSnap) Quantile(q float64) time.Duration {
	n := s.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	var seen uint64
	for _, p := range s {
		seen += p[1]
		if seen >= rank {
			return time.Duration(histValue(int(p[0])))
		}
	}
	return time.Duration(histValue(int(s[len(s)-1][0])))
}

// Summary is the printable digest of a histogram.
type Summary struct {
	Count uint64  `json:"count"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Maxms float64 `json:"max_ms"`
}

// Summarize computes the usual quantiles.
func (s HistSnap) Summarize() Summary {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return Summary{
		Count: s.Count(),
		P50ms: ms(s.Quantile(0.5)), P90ms: ms(s.Quantile(0.9)),
		P99ms: ms(s.Quantile(0.99)), P999: ms(s.Quantile(0.999)),
		Maxms: ms(s.Quantile(1)),
	}
}
