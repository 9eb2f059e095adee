package loadgen

import (
	"errors"
	"syscall"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (the frozen
// syscall package does not name it).
const ipBindAddressNoPort = 24

// bindNoPort defers the choice of the source port from bind to connect,
// where the kernel picks it per destination: without it a bound socket
// needs a port free for every destination, and a second run finds the
// range full of the first one's TIME_WAIT sockets (EADDRINUSE).
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	return errors.Join(err, serr)
}
