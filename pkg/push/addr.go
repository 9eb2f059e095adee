package push

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// WSPath is the path of the WebSocket upgrade request (PROTOCOL.md,
// "Transports").
const WSPath = "/v1/ws"

// ErrBadAddr is returned by WSURL and CheckHostPort.
var ErrBadAddr = errors.New("bad address")

// CheckHostPort reports whether addr is host:port with a non-empty host and
// a port in 1..65535: the form of every TCP and TLS address a room
// announces, and of every entry of the dispatcher's failed list.
func CheckHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrBadAddr, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%w: %q: no host", ErrBadAddr, addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%w: %q: port must be 1..65535", ErrBadAddr, addr)
	}
	return nil
}

// WSURL normalises a WebSocket address a room announces to
// scheme://host:port/v1/ws, where scheme is TransportWS or TransportWSS.
// addr is either host:port or a URL of that scheme whose path is empty, "/"
// or WSPath; a URL without a port gets the scheme's default (80, 443), so
// that HostPort of the result always names the port. Anything else
// (another scheme, path, query, fragment or user info) is an error.
func WSURL(scheme, addr string) (string, error) {
	if scheme != TransportWS && scheme != TransportWSS {
		return "", fmt.Errorf("%w: scheme %q is not ws or wss", ErrBadAddr, scheme)
	}
	hostport := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadAddr, err)
		}
		switch {
		case !strings.EqualFold(u.Scheme, scheme):
			return "", fmt.Errorf("%w: %q: want a %s:// URL", ErrBadAddr, addr, scheme)
		case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "":
			return "", fmt.Errorf("%w: %q: only %s://host:port%s", ErrBadAddr, addr, scheme, WSPath)
		case u.Path != "" && u.Path != "/" && u.Path != WSPath:
			return "", fmt.Errorf("%w: %q: the path must be %s", ErrBadAddr, addr, WSPath)
		}
		hostport = u.Host
		if u.Port() == "" && u.Hostname() != "" && !strings.HasSuffix(u.Host, ":") {
			hostport = net.JoinHostPort(u.Hostname(), defaultPort(scheme))
		}
	}
	if err := CheckHostPort(hostport); err != nil {
		return "", err
	}
	return scheme + "://" + hostport + WSPath, nil
}

// HostPort is the host:port of an announced address: addr itself for TCP
// and TLS, the URL's host:port for WebSocket (the default port of its
// scheme when it names none). The dispatcher compares its failed list,
// host:port for every transport, with this.
func HostPort(addr string) string {
	i := strings.Index(addr, "://")
	if i < 0 {
		return addr
	}
	scheme, rest := strings.ToLower(addr[:i]), addr[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		rest = rest[:j]
	}
	if j := strings.LastIndexByte(rest, '@'); j >= 0 {
		rest = rest[j+1:]
	}
	if _, _, err := net.SplitHostPort(rest); err != nil && rest != "" {
		if p := defaultPort(scheme); p != "" {
			return net.JoinHostPort(strings.Trim(rest, "[]"), p)
		}
	}
	return rest
}

func defaultPort(scheme string) string {
	switch scheme {
	case TransportWS, "http":
		return "80"
	case TransportWSS, "https":
		return "443"
	}
	return ""
}
