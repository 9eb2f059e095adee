package loadgen

import "testing"

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name string
		line string
		want cpuTicks
	}{
		{"plain", "1234 (lcpush) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 5 0 0 20 0 9 0 100 0 0", cpuTicks{17, 5}},
		{"name with spaces and parens", "77 (a b) c)) R 1 77 77 0 -1 0 0 0 0 0 300 200 0 0 20 0 1 0 1 0 0", cpuTicks{300, 200}},
		{"short", "1 (x) S 1 2 3", cpuTicks{}},
		{"no name", "garbage", cpuTicks{}},
		{"not numbers", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0 0 20 0 1 0 1 0 0", cpuTicks{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseProcStat([]byte(tt.line)); got != tt.want {
				t.Fatalf("parseProcStat(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestProcTicksSelf(t *testing.T) {
	// The counters of a live process only grow.
	a := procTicks("self")
	b := procTicks("self")
	if b.user < a.user || b.sys < a.sys {
		t.Fatalf("CPU went back: %+v then %+v", a, b)
	}
	if procTicks("-1") != (cpuTicks{}) {
		t.Fatal("a missing process reads as zero")
	}
}

func TestCoreShares(t *testing.T) {
	before := parseCores([]byte("cpu  300 0 300 300 0 0 0 0 0 0\ncpu0 100 0 100 100 0 0 0 0 0 0\ncpu1 200 0 200 200 0 0 0 0 0 0\nintr 1 2\n"))
	after := parseCores([]byte("cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 150 10 120 110 10 0 0 0 0 0\ncpu1 200 0 260 200 0 5 35 0 0 0\n"))
	if len(before) != 2 || len(after) != 2 {
		t.Fatalf("parsed %d and %d cores, want 2 and 2", len(before), len(after))
	}
	got := coreShares(before, after)
	want := []CoreShare{
		{CPU: 0, Busy: 80, User: 60, Sys: 20, Softirq: 0},  // 100 ticks: 60 user+nice, 20 sys, 10 idle, 10 iowait
		{CPU: 1, Busy: 100, User: 0, Sys: 60, Softirq: 40}, // 100 ticks, no idle
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("core %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if coreShares(before, after[:1]) != nil {
		t.Error("a core count that changed between readings gave shares")
	}
}
