package saver

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// A second open of the same data directory (a second lcpush on the same
// -data) says the directory is in use, not a bare "timeout".
func TestOpenBoltLocked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "saver.db")
	first, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	start := time.Now()
	second, err := OpenBoltWith(path, BoltOptions{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		second.Close()
		t.Fatal("second open of a locked file succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second open took %v, want about the lock timeout", d)
	}
	want := "saver: data dir " + dir + " is in use by another lcpush process (bolt lock on saver.db): stop it or use another -data directory"
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	if !errors.Is(err, ErrLocked) || !errors.Is(err, berrors.ErrTimeout) {
		t.Errorf("error %v does not match ErrLocked and bolt's ErrTimeout", err)
	}
	if strings.Contains(err.Error(), "timeout") {
		t.Errorf("error %q still reads as a timeout", err)
	}
	// Once the first process lets go, the directory opens again.
	first.Close()
	again, err := OpenBoltWith(path, BoltOptions{LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("open after the holder closed: %v", err)
	}
	again.Close()
}
