package center

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

func TestStatsPartial(t *testing.T) {
	tests := []struct {
		name       string
		unanswered int
		want       bool
	}{{"every register answered", 0, false}, {"one register down", 1, true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := buildStats(push.Counts{Total: 5, Unanswered: tt.unanswered}, push.StoreStats{}, 0, 0)
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			if a.Online.Partial != tt.want || strings.Contains(string(b), `"partial"`) != tt.want {
				t.Fatalf("partial %v in %s, want %v", a.Online.Partial, b, tt.want)
			}
		})
	}
}
