package admin

import (
	"math"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
)

func TestFoldPauses(t *testing.T) {
	h := &metrics.Float64Histogram{
		Buckets: []float64{math.Inf(-1), 5e-6, 20e-6, 0.9e-3, 1.2e-3, math.Inf(1)},
		Counts:  []uint64{1, 2, 3, 4, 5},
	}
	for _, tc := range []struct {
		bound float64
		want  uint64
	}{
		{10e-6, 1}, {25e-6, 3}, {900e-6, 6}, {1e-3, 6}, {1.5e-3, 10}, {1, 10},
	} {
		count, _, cum := foldPauses(h, GCPauseBuckets)
		if count != 15 {
			t.Fatalf("count %d, want 15", count)
		}
		if cum[tc.bound] != tc.want {
			t.Errorf("le %g: %d, want %d", tc.bound, cum[tc.bound], tc.want)
		}
	}
}

func TestGCPauseOnMetrics(t *testing.T) {
	runtime.GC()
	s := New(Config{})
	w := httptest.NewRecorder()
	s.Handler(true).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{GCPauseMetric + `_bucket{le="0.001"}`, GCPauseMetric + "_count"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}
