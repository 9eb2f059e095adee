// Package systest starts a whole lcpush system (package system: every
// service in this process) on random loopback ports for a test. It is the
// kit's system starter; it lives apart from testkit because it imports the
// services, whose own tests use testkit.
package systest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lcpush/lcpush/system"
)

// Logger is silent unless LCPUSH_TEST_LOG is set (then debug to stderr).
func Logger() *slog.Logger {
	if os.Getenv("LCPUSH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Start starts every service in this process with the configuration
// cfgYAML (e.g. testkit.ConfigYAML("")), on random loopback ports, the bolt
// store in a fresh temp dir and a 100 ms config poll, changed by mods in
// order (DataDir, RoomAddr, or any func(*system.Options)). The system is
// shut down when the test ends (Stop may do it earlier).
func Start(t testing.TB, cfgYAML string, mods ...func(*system.Options)) *system.System {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := system.Options{
		ConfigPath:   cfgPath,
		RoomAddr:     "127.0.0.1:0",
		CenterAddr:   "127.0.0.1:0",
		DispatchAddr: "127.0.0.1:0",
		AdminAddr:    "127.0.0.1:0",
		ConfigPoll:   100 * time.Millisecond,
		Logger:       Logger(),
	}
	for _, mod := range mods {
		mod(&opts)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	sys, err := system.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start system: %v", err)
	}
	t.Cleanup(func() { Stop(t, sys) })
	return sys
}

// DataDir keeps the durable store in dir (a restart test starts twice on it).
func DataDir(dir string) func(*system.Options) {
	return func(o *system.Options) { o.DataDir = dir }
}

// RoomAddr listens for clients on addr (a restart on the same port).
func RoomAddr(addr string) func(*system.Options) {
	return func(o *system.Options) { o.RoomAddr = addr }
}

// Stop shuts sys down (idempotent), failing the test on an error.
func Stop(t testing.TB, sys *system.System) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sys.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
