package main

import (
	"encoding/json"
	"os"
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
	// The files must hold what a run that worked measures: every client
	// authenticated, and every broadcast round and stream message delivered
	// to all of them.
	var res struct {
		N       int `json:"n"`
		Connect struct {
			Authed int `json:"authed"`
		} `json:"connect"`
		Idle *struct {
			RSSPerConn float64 `json:"rss_per_conn_bytes"`
		} `json:"idle"`
		Fanout *struct {
			Rounds []struct {
				Received int `json:"received"`
			} `json:"rounds"`
			Complete int `json:"complete_rounds"`
		} `json:"fanout"`
		Stream *struct {
			Expected  int `json:"expected_deliveries"`
			Delivered int `json:"delivered"`
		} `json:"stream"`
	}
	for _, scenario := range []string{"idle", "fanout"} {
		m, _ := filepath.Glob(filepath.Join(out, scenario+"-lcpush-*", "result.json"))
		if len(m) != 1 {
			t.Fatalf("no %s result.json under %s:\n%s", scenario, out, b)
		}
		raw, err := os.ReadFile(m[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		if res.N <= 0 || res.Connect.Authed != res.N {
			t.Fatalf("%s: %d of %d clients authenticated", scenario, res.Connect.Authed, res.N)
		}
		switch scenario {
		case "idle":
			if res.Idle == nil || res.Idle.RSSPerConn <= 0 {
				t.Fatalf("idle: no memory per connection measured: %s", raw)
			}
		case "fanout":
			f := res.Fanout
			if f == nil || len(f.Rounds) == 0 || f.Complete != len(f.Rounds) {
				t.Fatalf("fanout: rounds incomplete: %s", raw)
			}
			for i, r := range f.Rounds {
				if r.Received != res.N {
					t.Fatalf("fanout round %d reached %d of %d clients", i, r.Received, res.N)
				}
			}
			if s := res.Stream; s != nil && (s.Expected == 0 || s.Delivered != s.Expected) {
				t.Fatalf("fanout stream: delivered %d of %d", s.Delivered, s.Expected)
			}
		}
		res.Idle, res.Fanout, res.Stream = nil, nil, nil
	}
	if !strings.Contains(string(b), "delivered / expected") {
		t.Fatalf("summary without deliveries:\n%s", b)
	}
}
