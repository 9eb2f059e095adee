package testkit

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter sums the counter series name of this process's default registry
// whose labels include every pair of labels (none: every series): what a
// system started in the test process (systest) has counted.
func Counter(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := 0
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					have++
				}
			}
			if have == len(labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
