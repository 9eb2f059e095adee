package testkit

import (
	"net"
	"testing"
	"time"
)

// pollEvery is how often WaitFor tries its condition.
const pollEvery = 5 * time.Millisecond

// WaitFor polls cond until it holds, failing the test when d passes first.
// what names the awaited state in the failure ("timed out after 5s waiting
// for <what>"). cond runs on the test's goroutine, so it may call t.Fatal.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// Poll is WaitFor for callers that report a timeout themselves (with a
// process log, say) or from another goroutine: it reports whether cond
// held before d passed.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// FreePort returns a loopback address ("127.0.0.1:port") that was free a
// moment ago, for a process the test starts with explicit addresses.
func FreePort(t testing.TB) string {
	t.Helper()
	return FreePortOn(t, "127.0.0.1")
}

// FreePortOn is FreePort for host: "0.0.0.0" finds a port free on every
// address (a loopback probe can hand out a port some other address holds,
// and a wildcard bind on it then fails), returned as host:port.
func FreePortOn(t testing.TB, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return net.JoinHostPort(host, port)
}
