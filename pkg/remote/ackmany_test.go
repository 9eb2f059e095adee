package remote

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

var tAcks = []push.AckReq{
	{UID: "a", Apps: []uint32{1, 3}, IDs: []uint64{1, 1<<64 - 1}},
	{UID: "用户", Apps: []uint32{1<<32 - 1}, IDs: []uint64{7}},
	{UID: "b"},
	{UID: "a", Apps: []uint32{2}, IDs: []uint64{1}},
}

// rawAckMany encodes acks without the encoder's bounds check, as a
// hostile or buggy peer could.
func rawAckMany(acks []push.AckReq) []byte {
	b := wire.AppendUvarint(nil, uint64(len(acks)))
	for i := range acks {
		b = wire.AppendString(b, acks[i].UID)
		b = appendApps(b, acks[i].Apps)
		b = appendIDs(b, acks[i].IDs)
	}
	return b
}

// The codec refuses what is past push.CheckAckBatch's bounds, both ways:
// the encoder with push.ErrAckBatch (nothing sent), the decoder with
// ErrMalformed; exactly the bounds round-trip.
func TestAckManyBounds(t *testing.T) {
	ids := func(n int) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(i + 1)
		}
		return out
	}
	entries := func(n int) []push.AckReq {
		out := make([]push.AckReq, n)
		for i := range out {
			out[i] = push.AckReq{UID: fmt.Sprint(i), Apps: []uint32{1}}
		}
		return out
	}
	apps := make([]uint32, push.MaxAckApps+1)
	for _, tc := range []struct {
		name string
		acks []push.AckReq
		ok   bool
	}{
		{"entries at the bound", entries(push.MaxAckEntries), true},
		{"entries past", entries(push.MaxAckEntries + 1), false},
		{"ids at the bound", []push.AckReq{{UID: "a", Apps: []uint32{1}, IDs: ids(push.MaxAckIDs - 1)}, {UID: "b", IDs: ids(1)}}, true},
		{"ids past", []push.AckReq{{UID: "a", Apps: []uint32{1}, IDs: ids(push.MaxAckIDs)}, {UID: "b", IDs: ids(1)}}, false},
		{"apps at the bound", []push.AckReq{{UID: "a", Apps: apps[:push.MaxAckApps]}}, true},
		{"apps past", []push.AckReq{{UID: "a", Apps: apps}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&ackManyReq{A: tc.acks}).AppendBinary(nil)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, push.ErrAckBatch)) {
				t.Fatalf("encode: %v", err)
			}
			var m ackManyReq
			err = m.UnmarshalBinary(rawAckMany(tc.acks))
			if tc.ok {
				if err != nil || !reflect.DeepEqual(m.A, tc.acks) {
					t.Fatalf("decode: %v", err)
				}
				return
			}
			if !errors.Is(err, wire.ErrMalformed) || m.A != nil {
				t.Fatalf("decode past the bound: %v, %d entries", err, len(m.A))
			}
		})
	}
	// A count past the bound is refused before anything is allocated for it.
	b := wire.AppendUvarint(nil, push.MaxAckEntries+1)
	b = append(b, make([]byte, 3*(push.MaxAckEntries+1))...)
	if err := new(ackManyReq).UnmarshalBinary(b); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("decode of %d zero entries: %v", push.MaxAckEntries+1, err)
	}
}

// FuzzDecodeAckMany: the AckMany decoder takes any bytes without panic,
// answers ErrMalformed or a request within the bounds that re-encodes to
// the same request.
func FuzzDecodeAckMany(f *testing.F) {
	f.Add(encode(f, &ackManyReq{A: tAcks}))
	f.Add(encode(f, &ackManyReq{}))
	f.Add(rawAckMany([]push.AckReq{{UID: "a", Apps: make([]uint32, push.MaxAckApps+1)}}))
	f.Add([]byte{0x81, 0x20, 0x01, 'a', 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m ackManyReq
		if err := m.UnmarshalBinary(data); err == nil {
			if err := push.CheckAckBatch(m.A); err != nil {
				t.Fatalf("decoded a request past the bounds: %v", err)
			}
		}
		checkRedecode(t, func() codec { return new(ackManyReq) }, data)
	})
}

// AckMany crosses RPC as it was given, with its count, and the saver's
// error comes back; a batch past the bounds is refused before the wire.
func TestServeSaverAckMany(t *testing.T) {
	ctx := context.Background()
	api := newFakeSaver()
	c := SaverClient{C: dial(t, startRPC(t, func(s *rpc.Server) { ServeSaver(s, api) }))}
	n, err := c.AckMany(ctx, tAcks)
	if err != nil || n != 4 {
		t.Fatalf("AckMany = %d, %v; want 4", n, err)
	}
	api.mu.Lock()
	got := api.many
	calls := api.calls
	api.err = push.ErrUnavailable
	api.mu.Unlock()
	if len(got) != 1 || !reflect.DeepEqual(got[0], tAcks) {
		t.Fatalf("saver saw %+v, want %+v", got, tAcks)
	}
	if _, err := c.AckMany(ctx, tAcks); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("a failing saver's AckMany: %v", err)
	}
	big := make([]push.AckReq, push.MaxAckEntries+1)
	for i := range big {
		big[i].UID = "u"
	}
	if _, err := c.AckMany(ctx, big); !errors.Is(err, push.ErrAckBatch) {
		t.Fatalf("AckMany past the bound: %v", err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.calls != calls+1 {
		t.Fatalf("%d saver calls, want %d: the batch past the bound reached the saver", api.calls, calls+1)
	}
}

// The cluster wrapper sends one call to one saver, fails over when that
// saver is down (ACKs are idempotent), and sends nothing for no entries.
func TestSaverAckManyRouting(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	nodes := startSavers(t, mem, 3)
	s := NewSaver(mem, newPool(t))
	received := func() (calls, holders int) {
		for _, n := range nodes {
			n.api.mu.Lock()
			if len(n.api.many) > 0 {
				holders++
				calls += len(n.api.many)
			}
			n.api.many = nil
			n.api.mu.Unlock()
		}
		return calls, holders
	}
	for _, tc := range []struct {
		name  string
		acks  []push.AckReq
		calls int
	}{
		{"acks", tAcks, 1},
		{"none", nil, 0},
	} {
		if n, err := s.AckMany(ctx, tc.acks); err != nil || n != 4*tc.calls {
			t.Fatalf("%s: AckMany = %d, %v", tc.name, n, err)
		}
		if calls, holders := received(); calls != tc.calls || holders > 1 {
			t.Fatalf("%s: %d calls on %d savers, want %d on at most one", tc.name, calls, holders, tc.calls)
		}
	}
	ms := live(mem, RoleSaver)
	first := ms[owner(ms, tAcks[0].UID)].ID
	for _, n := range nodes {
		if n.id == first {
			stopRPC(n.srv)
		}
	}
	if n, err := s.AckMany(ctx, tAcks); err != nil || n != 4 {
		t.Fatalf("AckMany with its saver down = %d, %v", n, err)
	}
	if calls, _ := received(); calls != 1 {
		t.Fatalf("%d calls after the failover, want 1", calls)
	}
}

// A saver of the previous version has no AckMany: the cluster wrapper
// falls back to one Ack per entry on the same saver (a rolling upgrade
// must not turn every ACK into a retry and a redelivery).
func TestSaverAckManyFallsBackToAck(t *testing.T) {
	ctx := context.Background()
	mem := newMembers()
	api := newFakeSaver()
	srv := startRPC(t, func(s *rpc.Server) {
		handle(s, newServeOpts(nil), MethodAck, func(ctx context.Context, req *ackReq, rep *rpc.Reply) error {
			n, err := api.Ack(ctx, req.UID, req.Apps, req.IDs)
			if err != nil {
				return err
			}
			return rep.Encode(&intMsg{N: n})
		})
	})
	mem.set(push.Member{Role: RoleSaver, ID: "saver-old", RPCAddr: srv.Addr(), Epoch: 1})
	s := NewSaver(mem, newPool(t))
	n, err := s.AckMany(ctx, tAcks)
	if err != nil || n != 4 {
		t.Fatalf("AckMany against a saver without it = %d, %v; want 4 through Ack", n, err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.many) != 0 || len(api.acks) != 4 {
		t.Fatalf("the old saver saw %d AckMany calls and %d acked ids; want 0 and 4", len(api.many), len(api.acks))
	}
}
