package remote

import (
	"context"
	"fmt"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

func BenchmarkOwner(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		ms := make([]push.Member, n)
		for i := range ms {
			ms[i] = push.Member{ID: fmt.Sprintf("register-%02d", i)}
		}
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = owner(ms, "user-000123456")
			}
		})
	}
}

// BenchmarkRegistersLookup measures a 100-uid Lookup fanned out over three
// registers on loopback.
func BenchmarkRegistersLookup(b *testing.B) {
	ctx := context.Background()
	mem := newMembers()
	for i := range 3 {
		node := startRegister(b, fmt.Sprintf("reg-%d", i), 1)
		mem.set(node.m)
	}
	regs := NewRegisters(mem, newPool(b), RegistersConfig{})
	if err := regs.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = regs.Shutdown(ctx) })
	uids := make([]string, 100)
	for i := range uids {
		s := session(i, "room-a")
		uids[i] = s.UID
		if _, err := regs.Register(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ss, err := regs.Lookup(ctx, uids); err != nil || len(ss) != len(uids) {
				b.Errorf("Lookup: %d %v", len(ss), err)
				return
			}
		}
	})
}
