package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (the frozen
// syscall package does not name it).
const ipBindAddressNoPort = 24

// dialRaw starts a non-blocking connect from src (nil: any) to dst and
// returns the descriptor. No goroutine, no dup, no Go netpoller: the
// caller registers the descriptor with its own epoll. On loopback the
// kernel runs the whole handshake inside connect (the SYN, SYN-ACK and ACK
// are processed in the connecting task), so the socket is usually
// established when this returns and the caller may write at once.
//
// IP_BIND_ADDRESS_NO_PORT defers the choice of the source port from bind
// to connect, where the kernel picks it per destination: without it a
// bound socket needs a port free for every destination, and a second run
// finds the range full of the first one's TIME_WAIT sockets (EADDRINUSE).
func dialRaw(src, dst syscall.Sockaddr, family int) (int, error) {
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if src != nil {
		if err = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1); err == nil {
			if err = syscall.Bind(fd, src); err != nil {
				err = fmt.Errorf("bind: %w", err)
			}
		}
	}
	if err == nil {
		// PINGs and ACKs are small writes: do not let Nagle hold them.
		err = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}
	if err == nil {
		err = syscall.Connect(fd, dst)
		if err == syscall.EINPROGRESS || err == syscall.EINTR {
			err = nil // the handshake goes on; epoll says how it ended
		} else if err != nil {
			err = fmt.Errorf("connect: %w", err)
		}
	}
	if err != nil {
		_ = syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sockaddr resolves a loopback "host:port" once, before the dialing starts.
func sockaddr(addr string) (syscall.Sockaddr, int, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrUsage, addr, err)
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if ip = ip.Unmap(); !ok || !ip.IsLoopback() {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotLoopback, addr)
	}
	if ip.Is4() {
		return &syscall.SockaddrInet4{Port: ta.Port, Addr: ip.As4()}, syscall.AF_INET, nil
	}
	return &syscall.SockaddrInet6{Port: ta.Port, Addr: ip.As16()}, syscall.AF_INET6, nil
}

// perSourceBudget is how many connections one source address should hold
// to one destination. connect picks the source port by scanning the
// ephemeral range, ports of one parity first, and tests every port already
// used towards the same destination; once that half of the range is taken
// every further connect scans all of it. Measured with 17,000 connections
// from one address to one room: 62% of the tool's CPU went to that scan
// (__inet_hash_connect, __inet_check_established) and the storm ran at
// 8.4k/s; spread over 4 addresses, 15.7-17.6k/s. An eighth of the half
// keeps the scan to a few ports even with the kernel's random skips.
func perSourceBudget() int {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && h > l {
				lo, hi = l, h
			}
		}
	}
	return max(64, (hi-lo+1)/2/8)
}

// spreadSources returns source addresses enough for n connections to each
// of rooms destinations within budget per address: each IPv4 address
// a.b.c.d given is followed by a.(b+k).c.d, k = 1, 2, ..., all on the
// loopback interface. Stepping the second byte keeps the extra addresses
// apart from the 127.0.0.x that worker processes get one each. Addresses
// that are not 127/8 IPv4 are kept as they are.
func spreadSources(srcs []string, n, rooms, budget int) []string {
	per := budget * max(1, rooms)
	need := (n + per - 1) / per
	if need <= len(srcs) {
		return srcs
	}
	out := append([]string{}, srcs...)
	for k := 1; len(out) < need && k < 256; k++ {
		grew := false
		for _, s := range srcs {
			a, err := netip.ParseAddr(s)
			if err != nil || !a.Is4() {
				continue
			}
			b := a.As4()
			if b[0] != 127 || int(b[1])+k > 255 {
				continue
			}
			b[1] += byte(k)
			out = append(out, netip.AddrFrom4(b).String())
			grew = true
			if len(out) == need {
				break
			}
		}
		if !grew {
			break
		}
	}
	return out
}

// bindNoPort is the net.Dialer Control of the peers' clients (peer.go):
// IP_BIND_ADDRESS_NO_PORT as in dialRaw.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	return errors.Join(err, serr)
}
