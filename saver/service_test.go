package saver

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lcpush/lcpush/internal/testkit"
)

func newService(t *testing.T, cfg Config, st Store) *Service {
	t.Helper()
	s, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(bg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(bg) })
	return s
}

func TestNewService(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		st   Store
		ok   bool
	}{
		{"defaults", Config{}, NewMemory(), true},
		{"nil store", Config{}, nil, false},
		{"negative period", Config{ExpireEvery: -time.Second}, NewMemory(), false},
		{"negative limit", Config{LoadLimit: -1}, NewMemory(), false},
	} {
		s, err := New(tc.cfg, tc.st)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", tc.name, err)
		}
		if err == nil && (s.cfg.ExpireEvery != time.Minute || s.cfg.LoadLimit != DefaultLoadLimit) {
			t.Errorf("%s: defaults not filled: %+v", tc.name, s.cfg)
		}
	}
}

func TestServiceFlow(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   func(t *testing.T, lim Limits) Store
	}{{"memory", newMemoryStore}, {"bolt", newBoltStore}, {"redis", newRedisStore}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, Config{LoadLimit: 3}, tc.st(t, Limits{}))
			saved, acked, loaded := value(metricSaved), value(metricAcked), value(metricLoaded)
			for id := uint64(1); id <= 4; id++ {
				if err := s.Save(bg, msg(id, 1, future()), []string{"u", "v"}); err != nil {
					t.Fatal(err)
				}
			}
			b := msg(5, 1, future())
			b.Broadcast = true
			if err := s.SaveBroadcast(bg, b); err != nil {
				t.Fatal(err)
			}
			msgs, err := s.Load(bg, "u", []uint32{1})
			if err != nil || len(msgs) != 3 || msgs[0].ID != 1 {
				t.Fatalf("load with LoadLimit 3: %v %v", msgs, err)
			}
			n, err := s.Ack(bg, "u", []uint32{1}, []uint64{1, 2, 3, 5})
			if err != nil || n != 4 {
				t.Fatalf("ack = %d %v", n, err)
			}
			msgs, _ = s.Load(bg, "u", []uint32{1})
			if len(msgs) != 1 || msgs[0].ID != 4 {
				t.Fatalf("after ack: %v", msgs)
			}
			st, err := s.Stats(bg)
			if err != nil || st.Pending != 5 || st.Broadcasts != 1 {
				t.Fatalf("stats %+v %v", st, err)
			}
			if d := value(metricSaved) - saved; d != 8 {
				t.Errorf("saved metric +%v, want 8", d)
			}
			if d := value(metricAcked) - acked; d != 4 {
				t.Errorf("acked metric +%v, want 4", d)
			}
			if d := value(metricLoaded) - loaded; d != 4 {
				t.Errorf("loaded metric +%v, want 4", d)
			}
		})
	}
}

// The sweeper drops expired messages on its own, every ExpireEvery.
func TestServiceSweeper(t *testing.T) {
	st, err := OpenBolt(filepath.Join(t.TempDir(), "saver.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := newService(t, Config{ExpireEvery: 10 * time.Millisecond}, st)
	now := time.Now().Unix()
	if err := s.Save(bg, msg(1, 1, now-1), []string{"u", "v"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(bg, msg(2, 1, 0), []string{"u"}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the sweeper to expire 2 entries", 5*time.Second, func() bool {
		st, err := s.Stats(bg)
		return err == nil && st.Pending == 1 && st.Expired == 2
	})
	testkit.WaitFor(t, "the pending gauge", 5*time.Second, func() bool { return value(metricPending) == 1 })
	if msgs, _ := s.Load(bg, "u", []uint32{1}); len(msgs) != 1 || msgs[0].ID != 2 {
		t.Fatalf("after sweep: %v", msgs)
	}
}

func TestServiceShutdown(t *testing.T) {
	st := NewMemory()
	s, err := New(Config{ExpireEvery: time.Millisecond}, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(bg); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(bg); err != nil {
		t.Fatalf("second start: %v", err)
	}
	for range 2 {
		if err := s.Shutdown(bg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Stats(bg); !errors.Is(err, ErrClosed) {
		t.Fatalf("store not closed by shutdown: %v", err)
	}
	errs := map[string]error{"start": s.Start(bg), "save": s.Save(bg, msg(1, 1, 0), []string{"u"}),
		"broadcast": s.SaveBroadcast(bg, msg(1, 1, 0))}
	_, errs["load"] = s.Load(bg, "u", []uint32{1})
	_, errs["ack"] = s.Ack(bg, "u", []uint32{1}, []uint64{1})
	_, errs["stats"] = s.Stats(bg)
	_, errs["sweep"] = s.Sweep(bg)
	for op, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after shutdown: %v, want ErrClosed", op, err)
		}
	}
	// Shutdown before Start is fine too, and still closes the store.
	st2 := NewMemory()
	s2, _ := New(Config{}, st2)
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := st2.Save(bg, msg(1, 1, 0), []string{"u"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("store open after shutdown without start: %v", err)
	}
}

func TestServiceCountsErrors(t *testing.T) {
	s := newService(t, Config{}, NewMemory())
	before := value(metricErrors.WithLabelValues(opSave))
	if err := s.Save(bg, msg(0, 1, 0), []string{"u"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("save id 0: %v", err)
	}
	if d := value(metricErrors.WithLabelValues(opSave)) - before; d != 1 {
		t.Fatalf("save errors +%v, want 1", d)
	}
	if msgs, err := s.Load(bg, "u", nil); err != nil || len(msgs) != 0 {
		t.Fatalf("load of no app: %v %v", msgs, err)
	}
}

// value reads a counter or gauge (prometheus/testutil would add a module).
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
