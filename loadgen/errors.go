package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/url"
)

// Errors of the tool.
var (
	ErrNotLoopback = errors.New("loadgen: only loopback addresses are allowed")
	ErrUsage       = errors.New("loadgen: usage")
	ErrTimeout     = errors.New("loadgen: timed out")
	ErrTarget      = errors.New("loadgen: target failed")
)

// checkLoopback refuses any host:port whose host is not a loopback IP or
// "localhost": the tool must never load a machine other than this one.
func checkLoopback(addrs ...string) error {
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("%w: %q: %v", ErrNotLoopback, a, err)
		}
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%w: %q", ErrNotLoopback, a)
		}
	}
	return nil
}

// checkLoopbackURL applies checkLoopback to an http URL.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: url %q", ErrNotLoopback, raw)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return checkLoopback(host)
}
