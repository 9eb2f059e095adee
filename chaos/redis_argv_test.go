package chaos

import (
	"os"
	"testing"
)

// TestRedisArgv rebuilds the command line of the Redis of REDIS_ADDR (the
// restart of the redis fault); skipped without one.
func TestRedisArgv(t *testing.T) {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		if os.Getenv("LCPUSH_INTEGRATION") == "1" {
			t.Fatal("LCPUSH_INTEGRATION=1 but REDIS_ADDR is not set: start servers with scripts/services.sh")
		}
		t.Skip("REDIS_ADDR not set (scripts/test.sh starts a real Redis)")
	}
	argv, err := redisArgv(addr, "redis-server")
	if err != nil {
		t.Fatal(err)
	}
	if len(argv) != 17 || argv[1] != "--port" || argv[15] != "--daemonize" || argv[16] != "no" {
		t.Fatalf("argv %q", argv)
	}
}
