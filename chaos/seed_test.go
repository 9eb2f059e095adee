package chaos

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
)

// The cluster's seed is the bench configuration plus the saver section: it
// must still parse (no duplicate or unknown keys) and keep both parts.
func TestSeedConfigParses(t *testing.T) {
	c, err := config.Parse([]byte(seedConfig))
	if err != nil {
		t.Fatalf("seed config: %v\n%s", err, seedConfig)
	}
	if c.Saver.ReconcileEvery != 5*time.Second {
		t.Errorf("saver.reconcile_every = %v, want 5s", c.Saver.ReconcileEvery)
	}
	if c.Room.MaxConns != 18000 || c.Room.ConnectRatePerIP >= 0 {
		t.Errorf("room caps not lifted: max_conns %d, connect_rate_per_ip %v", c.Room.MaxConns, c.Room.ConnectRatePerIP)
	}
	if _, ok := c.AppByKey(apiKey); !ok {
		t.Errorf("demo app %q missing", apiKey)
	}
}
