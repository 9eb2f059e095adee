package loadgen

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCompare(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	write := func(dir string, r Result) {
		t.Helper()
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(in, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, dir, "result.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fan := func(kind string, p50, perSec float64, at time.Duration) Result {
		return Result{Scenario: "fanout", Started: t0.Add(at), N: 10000, Target: &Target{Kind: kind},
			Fanout: &FanoutResult{P50LastMs: p50, Complete: 20, Rounds: make([]RoundResult, 20)},
			Stream: &StreamResult{Rate: 100, DeliveredPerSec: perSec, Drained: true}}
	}
	write("a", fan("lcpush", 99, 1, 0)) // older run of the same: replaced by "b"
	write("b", fan("lcpush", 50, 1e6, time.Minute))
	write("c", fan("nats", 100, 5e5, 2*time.Minute))
	write("d", Result{Scenario: "idle", Started: t0, N: 10000, Target: &Target{Kind: "lcpush"}, Idle: &IdleResult{RSSPerConn: 1000}})
	write("e", Result{Scenario: "idle", Started: t0, N: 10000, Target: &Target{Kind: "mqtt"}, Idle: &IdleResult{RSSPerConn: 800}})
	// A summary of several runs (its "target" is a name) is left out, not an error.
	if err := os.MkdirAll(filepath.Join(in, "sustain-runs-x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "sustain-runs-x", "result.json"), []byte(`{"target":"lcpush","n":5}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Compare(in, out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "compare.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| lcpush | 10000 | 20 of 20 | 50.0 / 0.0 ms |",                       // the newest lcpush run
		"| nats | 10000 | 20 of 20 | 100.0 / 0.0 ms | 0.0 / 0.0 ms | 2.00x |", // twice lcpush's time
		"| 100/s | nats | 1000000 |",
		"| 2.00x |\n", // lcpush delivered twice nats' rate
		"| mqtt | 10000 | 1 | 800 B |",
		"left out (summaries of several runs, read their own report.md): sustain-runs-x.",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("compare.md lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{"fanout-last-p50.svg", "stream-delivered.svg", "idle-rss-per-conn.svg"} {
		if b, err := os.ReadFile(filepath.Join(out, f)); err != nil || !strings.Contains(string(b), "<svg") {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := Compare(t.TempDir(), out); err == nil {
		t.Error("Compare of an empty folder succeeded")
	}
}
