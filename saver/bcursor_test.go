package saver

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// cursorOp is one step of a cursor table case.
type cursorOp struct {
	op   byte // 'l' load, 'a' ack
	seq  uint64
	want bool // load: parked; ack: newly
}

func TestBcursorSteps(t *testing.T) {
	cases := []struct {
		name     string
		live     []uint64
		maxLoads int
		ops      []cursorOp
		want     bcursor
	}{
		{"in order ACKs keep Cur alone", []uint64{1, 2, 3}, 5,
			[]cursorOp{{'a', 1, true}, {'a', 2, true}, {'a', 3, true}, {'a', 3, false}},
			bcursor{Cur: 3}},
		{"out of order ACKs", []uint64{1, 2, 3}, 5,
			[]cursorOp{{'a', 3, true}, {'a', 1, true}, {'a', 1, false}, {'a', 2, true}},
			bcursor{Cur: 3}},
		{"ACK above a gap waits as an exception", []uint64{1, 2, 3}, 5,
			[]cursorOp{{'a', 1, true}, {'a', 3, true}},
			bcursor{Cur: 1, Exc: []bexc{{Seq: 3, State: bexcAcked}}}},
		{"loads count, then park", []uint64{4}, 3,
			[]cursorOp{{'l', 4, false}, {'l', 4, false}, {'l', 4, true}, {'l', 4, false}},
			bcursor{Cur: 4, Exc: []bexc{{Seq: 4, Loads: 3, State: bexcParked}}}},
		{"a parked broadcast's ACK takes effect once", []uint64{4, 5}, 1,
			[]cursorOp{{'l', 4, true}, {'a', 4, true}, {'a', 4, false}, {'l', 5, true}, {'a', 5, true}},
			bcursor{Cur: 5}},
		{"a parked one below Cur is ACKed too", []uint64{4, 5}, 1,
			[]cursorOp{{'l', 4, true}, {'a', 5, true}, {'a', 4, true}, {'a', 4, false}},
			bcursor{Cur: 5}},
		{"a load then the ACK", []uint64{4, 5}, 3,
			[]cursorOp{{'l', 4, false}, {'l', 5, false}, {'a', 4, true}},
			bcursor{Cur: 4, Exc: []bexc{{Seq: 5, Loads: 1}}}},
		{"maxLoads 0 never parks", []uint64{1}, 0,
			[]cursorOp{{'l', 1, false}, {'l', 1, false}},
			bcursor{Exc: []bexc{{Seq: 1, Loads: 2}}}},
		{"gaps of expired seqs are stepped over", []uint64{2, 7, 9}, 5,
			[]cursorOp{{'a', 2, true}, {'a', 7, true}},
			bcursor{Cur: 7}},
		{"load of a done seq is ignored", []uint64{1}, 2,
			[]cursorOp{{'a', 1, true}, {'l', 1, false}},
			bcursor{Cur: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c bcursor
			for i, o := range tc.ops {
				var got bool
				if o.op == 'l' {
					got = c.load(o.seq, tc.maxLoads)
				} else {
					got = c.ack(o.seq)
				}
				if got != o.want {
					t.Fatalf("op %d %c %d: %v, want %v", i, o.op, o.seq, got, o.want)
				}
				c.normalize(tc.live)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Fatalf("cursor %+v, want %+v", c, tc.want)
			}
			d, err := decodeCursor(c.appendTo(nil))
			if err != nil || !reflect.DeepEqual(d, c) {
				t.Fatalf("round trip %+v, %v; want %+v", d, err, c)
			}
		})
	}
}

func TestBcursorNormalize(t *testing.T) {
	cases := []struct {
		name string
		in   bcursor
		live []uint64
		want bcursor
	}{
		{"exceptions of gone broadcasts dropped",
			bcursor{Cur: 1, Exc: []bexc{{Seq: 3, State: bexcAcked}, {Seq: 5, Loads: 2}}},
			[]uint64{2, 6}, bcursor{Cur: 1}},
		{"Cur advances over parked and keeps them",
			bcursor{Cur: 1, Exc: []bexc{{Seq: 2, Loads: 5, State: bexcParked}, {Seq: 3, State: bexcAcked}, {Seq: 4, Loads: 1}}},
			[]uint64{1, 2, 3, 4}, bcursor{Cur: 3, Exc: []bexc{{Seq: 2, Loads: 5, State: bexcParked}, {Seq: 4, Loads: 1}}}},
		{"parked below Cur dropped once gone",
			bcursor{Cur: 9, Exc: []bexc{{Seq: 2, State: bexcParked}}},
			[]uint64{9}, bcursor{Cur: 9}},
		{"stray loading below Cur dropped",
			bcursor{Cur: 9, Exc: []bexc{{Seq: 2, Loads: 1}, {Seq: 3, State: bexcAcked}}},
			[]uint64{2, 3, 9}, bcursor{Cur: 9}},
		{"no live broadcasts keeps Cur",
			bcursor{Cur: 9}, nil, bcursor{Cur: 9}},
		{"zero stays zero", bcursor{}, []uint64{1, 2}, bcursor{}},
		{"Cur stops at the first not done",
			bcursor{Exc: []bexc{{Seq: 1, State: bexcAcked}, {Seq: 2, Loads: 1}, {Seq: 3, State: bexcAcked}}},
			[]uint64{1, 2, 3}, bcursor{Cur: 1, Exc: []bexc{{Seq: 2, Loads: 1}, {Seq: 3, State: bexcAcked}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.in
			c.Exc = slices.Clone(c.Exc)
			c.normalize(tc.live)
			if !reflect.DeepEqual(c, tc.want) {
				t.Fatalf("normalize: %+v, want %+v", c, tc.want)
			}
			if c.empty() != (tc.want.Cur == 0 && len(tc.want.Exc) == 0) {
				t.Fatalf("empty() = %v", c.empty())
			}
		})
	}
}

// TestBcursorModel drives random loads, ACKs and expiries against a plain
// per-broadcast state map, the layout the cursor replaces, and checks that
// both answer wants and state alike and that the cursor stays small.
func TestBcursorModel(t *testing.T) {
	const maxLoads = 3
	for round := range 200 {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		var (
			c     bcursor
			live  []uint64
			next  uint64 = 1
			model        = map[uint64]bexc{} // seq -> state, as the old per-user records
		)
		for step := range 300 {
			switch r := rng.IntN(10); {
			case r < 2 && len(live) < 12: // a new broadcast becomes visible
				live = append(live, next)
				next++
			case r < 3 && len(live) > 0: // one expires, anywhere in the range
				i := rng.IntN(len(live))
				delete(model, live[i])
				live = slices.Delete(live, i, i+1)
			case len(live) > 0:
				seq := live[rng.IntN(len(live))]
				m := model[seq]
				if r < 7 {
					if c.wants(seq) != (m.State == bexcLoading) {
						t.Fatalf("round %d step %d: wants(%d) = %v; model %+v", round, step, seq, c.wants(seq), m)
					}
					parked := c.load(seq, maxLoads)
					wantParked := false
					if m.State == bexcLoading {
						if m.Loads++; int(m.Loads) >= maxLoads {
							m.State, wantParked = bexcParked, true
						}
					}
					if parked != wantParked {
						t.Fatalf("round %d step %d: load %d parked %v, want %v", round, step, seq, parked, wantParked)
					}
				} else {
					newly := c.ack(seq)
					if want := m.State != bexcAcked; newly != want {
						t.Fatalf("round %d step %d: ack %d newly %v, want %v", round, step, seq, newly, want)
					}
					m.State = bexcAcked
				}
				model[seq] = m
			}
			c.normalize(live)
			for _, s := range live {
				m := model[s]
				acked, parked := c.state(s)
				if acked != (m.State == bexcAcked) || parked != (m.State == bexcParked) {
					t.Fatalf("round %d step %d: state(%d) = %v,%v; model %+v; cursor %+v", round, step, s, acked, parked, m, c)
				}
				if c.wants(s) != (m.State == bexcLoading) {
					t.Fatalf("round %d step %d: wants(%d) = %v; model %+v", round, step, s, c.wants(s), m)
				}
			}
			if len(c.Exc) > len(live) {
				t.Fatalf("round %d step %d: %d exceptions for %d live", round, step, len(c.Exc), len(live))
			}
			d, err := decodeCursor(c.appendTo(nil))
			if err != nil || !reflect.DeepEqual(d, c) {
				t.Fatalf("round %d step %d: round trip %+v, %v; want %+v", round, step, d, err, c)
			}
		}
	}
}

func TestDecodeCursorCorrupt(t *testing.T) {
	valid := bcursor{Cur: 5, Exc: []bexc{{Seq: 7, State: bexcAcked}, {Seq: 9, Loads: 2}}}.appendTo(nil)
	cases := map[string][]byte{
		"version":           {2, 0, 0},
		"truncated cur":     {1, 0x80},
		"no count":          {1, 5},
		"count past input":  {1, 5, 200, 1, 0, 0},
		"short exception":   valid[:len(valid)-1],
		"trailing":          append(slices.Clone(valid), 0),
		"zero delta":        {1, 0, 2, 1, 0, 0, 0, 0, 0},
		"bad state":         {1, 0, 1, 1, 3, 0},
		"seq overflow":      {1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 1, 0, 0},
		"version only":      {1},
		"truncated varints": {1, 0, 1, 0x80},
	}
	for name, b := range cases {
		if c, err := decodeCursor(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %+v, %v; want ErrCorrupt", name, c, err)
		}
	}
	for _, b := range [][]byte{nil, {}} {
		if c, err := decodeCursor(b); err != nil || !c.empty() {
			t.Errorf("decode %v: %+v, %v; want the zero cursor", b, c, err)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(bcursor{Cur: 3}.appendTo(nil))
	f.Add(bcursor{Cur: 1 << 40, Exc: []bexc{{Seq: 1 << 41, Loads: 4}, {Seq: 1<<41 + 9, State: bexcParked}}}.appendTo(nil))
	f.Add([]byte{1, 0, 2, 1, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCursor(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		d, err := decodeCursor(c.appendTo(nil))
		if err != nil || !reflect.DeepEqual(c, d) {
			t.Fatalf("re-encoded %+v: %+v, %v", c, d, err)
		}
		// The methods take any decoded cursor without panicking.
		live := []uint64{1, 2, c.Cur, c.Cur + 1}
		slices.Sort(live)
		live = slices.Compact(live)
		c.normalize(live)
		c.load(c.Cur+1, 3)
		c.ack(c.Cur + 1)
		c.state(c.Cur)
	})
}
