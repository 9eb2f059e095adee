package keeper

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/config"
)

func TestFileSourceReload(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	write := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(testYAML("one"))
	s, err := New(Config{Source: &FileSource{Path: p}, PollEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)
	if s.ZK() != nil {
		t.Fatal("file mode has a ZooKeeper client")
	}
	h := s.Holder()
	if h.Load().AdminKey != "one" {
		t.Fatalf("admin key = %q", h.Load().AdminKey)
	}
	write(testYAML("second-version")) // another size: seen even within one mtime tick
	testkit.WaitFor(t, "the poller to reload", 5*time.Second, func() bool { return h.Load().AdminKey == "second-version" })

	refused := counterValue(t, metricVersions.WithLabelValues("refused"))
	write([]byte("admin_key: ''\n"))
	testkit.WaitFor(t, "the poller to refuse the invalid file", 5*time.Second, func() bool {
		return counterValue(t, metricVersions.WithLabelValues("refused")) > refused
	})
	if h.Load().AdminKey != "second-version" {
		t.Fatal("an invalid file replaced the running config")
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestBytesSourceStart(t *testing.T) {
	s, _ := New(Config{Source: &BytesSource{Name: "bad", Data: []byte("admin_key: ''\n")}})
	if err := s.Reload(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Reload before Start = %v", err)
	}
	if err := s.Start(context.Background()); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Start on an invalid config = %v", err)
	}
	_ = s.Shutdown(context.Background())
}
