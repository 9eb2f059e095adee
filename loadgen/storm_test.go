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
