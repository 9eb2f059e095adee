package proxyhdr

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Trusted is the set of proxy addresses allowed to send a PROXY header. The
// zero value trusts nobody. Safe for concurrent use once built.
type Trusted struct {
	prefixes []netip.Prefix
}

// ParseTrusted builds a Trusted from CIDR prefixes ("10.0.0.0/8",
// "fd00::/8") or single addresses ("10.1.2.3", "::1"). IPv4-mapped IPv6
// prefixes (::ffff:10.0.0.0/104) are taken as the IPv4 prefix they map.
func ParseTrusted(list []string) (Trusted, error) {
	var t Trusted
	for _, s := range list {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			p, err = netip.ParsePrefix(s)
			if err != nil {
				return Trusted{}, fmt.Errorf("proxyhdr: trusted prefix %q: %w", s, err)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return Trusted{}, fmt.Errorf("proxyhdr: trusted address %q: %w", s, err)
			}
			if a.Zone() != "" {
				return Trusted{}, fmt.Errorf("proxyhdr: trusted address %q: zones are not supported", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Contains reports whether a (unmapped first: ::ffff:10.1.2.3 is 10.1.2.3)
// is a trusted proxy address.
func (t Trusted) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ContainsNet is Contains for a connection's net.Addr (*net.TCPAddr as
// gnet's Conn.RemoteAddr gives); false for other kinds.
func (t Trusted) ContainsNet(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return false
	}
	return t.Contains(ta.AddrPort().Addr())
}

// Empty reports whether nobody is trusted.
func (t Trusted) Empty() bool { return len(t.prefixes) == 0 }

// Prefixes returns the trusted prefixes (a copy).
func (t Trusted) Prefixes() []netip.Prefix { return append([]netip.Prefix(nil), t.prefixes...) }
