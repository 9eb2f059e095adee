package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The load tool's smoke scenario against the real system (a child lcpush
// process it starts itself), so the tool cannot silently rot.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin := buildBinary(t)
	out := t.TempDir()
	cmd := exec.Command(bin, "bench", "smoke", "-quiet", "-out", out, "-bin", bin)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench smoke: %v\n%s", err, b)
	}
	for _, scenario := range []string{"idle", "fanout"} {
		m, _ := filepath.Glob(filepath.Join(out, scenario+"-lcpush-*", "result.json"))
		if len(m) != 1 {
			t.Fatalf("no %s result.json under %s:\n%s", scenario, out, b)
		}
	}
	if !strings.Contains(string(b), "delivered / expected") {
		t.Fatalf("summary without deliveries:\n%s", b)
	}
}
