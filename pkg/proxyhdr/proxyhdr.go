// Package proxyhdr parses PROXY protocol headers, versions 1 and 2
// (https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt), from the
// bytes an event loop has received so far, and holds the set of trusted
// proxy addresses. It never reads from a connection, never blocks, never
// starts a goroutine and never allocates while parsing.
//
// # What the room does with it
//
// PROTOCOL.md ("Transports"): TLS is terminated in front of the room, and the
// terminator tells the client's address with a PROXY header, from configured
// trusted proxy addresses only. So, on a new connection:
//
//   - Peer in Trusted (Trusted.Contains): call Parse on every OnTraffic until
//     it does not say need-more (consumed == 0, err == nil). An error
//     (ErrNotProxy included: a trusted proxy without a header) closes the
//     connection. h.Local (a terminator's health check, or a header without a
//     usable client address): serve no session, close when the peer does.
//     Otherwise Discard(consumed) and go on with the transport (raw frames or
//     the WebSocket upgrade) on the remaining bytes, with h.Src as the
//     client's address for allow/deny lists, per-IP limits, the register and
//     logs.
//   - Peer not trusted: Sniff the first bytes; a PROXY signature (SniffV1,
//     SniffV2) closes the connection; SniffNone goes on without a header.
//     (A raw frame starts with its Len, whose first byte is far below 'P' and
//     '\r' for any allowed Len; a WebSocket upgrade starts with "GET ".)
//
// # Choices
//
// Parsed by hand rather than with github.com/pires/go-proxyproto (v0.15.0,
// which the tests use as the reference writer and as a differential oracle):
// its Read takes a *bufio.Reader, allocates several objects per header
// (strings.Split, net.Addr values, the TLV copy), reports net.Addr rather
// than netip.AddrPort, and bounds v2 headers with a package-level variable;
// wrapping it would still need a completeness check of our own over the same
// bytes. The grammar is small; the parser here is checked against the
// library in the tests and the fuzz target.
//
//   - v1 "UNKNOWN", v2 LOCAL, and v2 PROXY with AF_UNSPEC or AF_UNIX carry no
//     usable client IP: all give Local = true (Family tells which), Src and
//     Dst zero. The spec lets a receiver use the connection's own addresses
//     there, but those are the proxy's, which PROTOCOL.md forbids using as the
//     client's: so such a connection is served no session.
//   - v2 over UDP (SOCK_DGRAM) with the PROXY command: ErrUnsupported (the
//     room serves TCP only). Unassigned command, family or protocol values:
//     ErrMalformed, as the spec requires.
//   - Addresses are returned unmapped (::ffff:1.2.3.4 in a TCP6 header
//     becomes 1.2.3.4), so IPv4 allow lists apply to dual-stack terminators.
//   - v1 is strict: single spaces, no leading zeros in ports, TCP4 addresses
//     are IPv4 and TCP6 addresses IPv6, no zones.
//   - v2 TLVs are checked to be well-formed and handed out raw (Header.TLVs,
//     Header.TLV); a CRC32C TLV is not verified.
//   - A v2 header may hold at most MaxV2Body bytes after its 16-byte preamble
//     (addresses and TLVs); larger: ErrTooLong. A v1 header without CRLF
//     within 107 bytes: ErrTooLong.
package proxyhdr

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"unsafe"
)

// Header is a parsed PROXY header.
type Header struct {
	Version int  // 1 or 2
	Local   bool // no client address (health check or no usable address): serve no session
	Family  Family
	Src     netip.AddrPort // the client (zero when Local)
	Dst     netip.AddrPort // the address the client connected to (zero when Local)
	// TLVs are the raw v2 TLVs after the addresses (nil for v1 and LOCAL);
	// they alias Parse's input.
	TLVs []byte
}

// Family is the address family a header announced.
type Family uint8

// Families.
const (
	FamilyUnspec Family = iota // v1 UNKNOWN, v2 AF_UNSPEC
	FamilyTCP4
	FamilyTCP6
	FamilyUnix
)

func (f Family) String() string {
	switch f {
	case FamilyUnspec:
		return "unspec"
	case FamilyTCP4:
		return "tcp4"
	case FamilyTCP6:
		return "tcp6"
	case FamilyUnix:
		return "unix"
	}
	return "family?"
}

// TLV returns the value of the first TLV of type t.
func (h *Header) TLV(t byte) ([]byte, bool) {
	for p := h.TLVs; len(p) >= 3; {
		n := int(binary.BigEndian.Uint16(p[1:3]))
		if len(p) < 3+n {
			return nil, false
		}
		if p[0] == t {
			return p[3 : 3+n], true
		}
		p = p[3+n:]
	}
	return nil, false
}

// Error is a parse error; compare with errors.Is to ErrNotProxy,
// ErrMalformed, ErrTooLong, ErrUnsupported.
type Error struct {
	kind   *Error
	detail string
}

func (e *Error) Error() string {
	if e.kind == nil {
		return "proxyhdr: " + e.detail
	}
	return "proxyhdr: " + e.kind.detail + ": " + e.detail
}

// Is makes a detailed error match its kind.
func (e *Error) Is(target error) bool { return e == target || (e.kind != nil && e.kind == target) }

// Error kinds.
var (
	// ErrNotProxy: the bytes do not start with a PROXY signature.
	ErrNotProxy = &Error{detail: "not a PROXY protocol header"}
	// ErrMalformed: a signature, then something the spec does not allow.
	ErrMalformed = &Error{detail: "malformed PROXY protocol header"}
	// ErrTooLong: v1 without CRLF within 107 bytes, or v2 over MaxV2Body.
	ErrTooLong = &Error{detail: "PROXY protocol header too long"}
	// ErrUnsupported: a well-formed header for a transport the room does
	// not serve (UDP).
	ErrUnsupported = &Error{detail: "unsupported PROXY protocol transport"}
)

func malformed(detail string) *Error { return &Error{kind: ErrMalformed, detail: detail} }

// Prebuilt so that errors do not allocate either.
var (
	errV1Proto    = malformed("v1: protocol is not TCP4, TCP6 or UNKNOWN")
	errV1Fields   = malformed("v1: not PROXY <proto> <src> <dst> <sport> <dport>")
	errV1CRLF     = malformed("v1: line not ended by CRLF")
	errV1Addr     = malformed("v1: bad address")
	errV1Port     = malformed("v1: bad port")
	errV2Version  = malformed("v2: version is not 2")
	errV2Command  = malformed("v2: command is neither LOCAL nor PROXY")
	errV2Family   = malformed("v2: unassigned address family or protocol")
	errV2Length   = malformed("v2: length shorter than the address block")
	errV2TLV      = malformed("v2: malformed TLV")
	errV1TooLong  = &Error{kind: ErrTooLong, detail: "v1: no CRLF within 107 bytes"}
	errV2TooLong  = &Error{kind: ErrTooLong, detail: "v2: length over MaxV2Body"}
	errV2Datagram = &Error{kind: ErrUnsupported, detail: "v2: UDP"}
)

const (
	// V1MaxLen is the longest v1 header, CRLF included (spec 2.1).
	V1MaxLen = 107
	// V2PreambleLen is the fixed part of a v2 header.
	V2PreambleLen = 16
	// DefaultMaxV2Body bounds what follows a v2 preamble (addresses and TLVs):
	// room for TLVs such as an SSL client certificate's.
	DefaultMaxV2Body = 4096
)

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Sniffed is what Sniff saw.
type Sniffed uint8

// Sniff results.
const (
	SniffNeedMore Sniffed = iota // too few bytes to tell
	SniffNone                    // not a PROXY header
	SniffV1
	SniffV2
)

// Sniff tells whether in starts with a PROXY signature, from as few bytes as
// possible (one byte tells "none" for any raw frame or HTTP request).
func Sniff(in []byte) Sniffed {
	switch {
	case prefixOf(in, sigV1):
		if len(in) < len(sigV1) {
			return SniffNeedMore
		}
		return SniffV1
	case prefixOf(in, sigV2):
		if len(in) < len(sigV2) {
			return SniffNeedMore
		}
		return SniffV2
	}
	return SniffNone
}

// prefixOf reports whether in and sig agree on their common length.
func prefixOf(in, sig []byte) bool {
	n := min(len(in), len(sig))
	return string(in[:n]) == string(sig[:n])
}

// Parser parses with a bound on v2 headers; the zero value uses
// DefaultMaxV2Body. Safe for concurrent use.
type Parser struct {
	MaxV2Body int
}

// Parse is Parser{}.Parse.
func Parse(in []byte) (consumed int, h Header, err error) {
	return Parser{}.Parse(in)
}

// Parse parses the PROXY header at the start of in, the bytes received so far.
//
//   - consumed == 0, err == nil: in is a prefix of a header; call again with
//     more bytes. At most V1MaxLen (v1) or 16+MaxV2Body (v2) bytes are ever
//     needed.
//   - err == nil: a header of consumed bytes; what follows belongs to the
//     transport.
//   - err != nil: close the connection (ErrNotProxy: no signature).
//
// h.TLVs aliases in.
func (p Parser) Parse(in []byte) (consumed int, h Header, err error) {
	switch Sniff(in) {
	case SniffNeedMore:
		return 0, Header{}, nil
	case SniffNone:
		return 0, Header{}, ErrNotProxy
	case SniffV1:
		return parseV1(in)
	}
	max := p.MaxV2Body
	if max <= 0 {
		max = DefaultMaxV2Body
	}
	return parseV2(in, max)
}

func parseV1(in []byte) (int, Header, error) {
	end := -1
	for i := 0; i < len(in) && i < V1MaxLen; i++ {
		if in[i] == '\n' {
			end = i
			break
		}
	}
	if end < 0 {
		if len(in) >= V1MaxLen {
			return 0, Header{}, errV1TooLong
		}
		return 0, Header{}, nil
	}
	if end == 0 || in[end-1] != '\r' {
		return 0, Header{}, errV1CRLF
	}
	line := in[len(sigV1) : end-1]
	h := Header{Version: 1}
	proto, rest := cut(line)
	switch string(proto) {
	case "UNKNOWN": // anything up to CRLF is ignored (spec 2.1)
		h.Local = true
		return end + 1, h, nil
	case "TCP4":
		h.Family = FamilyTCP4
	case "TCP6":
		h.Family = FamilyTCP6
	default:
		return 0, Header{}, errV1Proto
	}
	var f [4][]byte
	for i := range f {
		if len(rest) == 0 {
			return 0, Header{}, errV1Fields
		}
		f[i], rest = cut(rest)
	}
	if rest != nil { // a fifth field, or a trailing space
		return 0, Header{}, errV1Fields
	}
	src, ok1 := v1Addr(f[0], h.Family)
	dst, ok2 := v1Addr(f[1], h.Family)
	if !ok1 || !ok2 {
		return 0, Header{}, errV1Addr
	}
	sport, ok1 := v1Port(f[2])
	dport, ok2 := v1Port(f[3])
	if !ok1 || !ok2 {
		return 0, Header{}, errV1Port
	}
	h.Src = netip.AddrPortFrom(src.Unmap(), sport)
	h.Dst = netip.AddrPortFrom(dst.Unmap(), dport)
	return end + 1, h, nil
}

// cut splits at the first space; rest is nil when there is none.
func cut(b []byte) (field, rest []byte) {
	for i, c := range b {
		if c == ' ' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

func v1Addr(b []byte, fam Family) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 39 {
		return netip.Addr{}, false
	}
	if bytes.IndexByte(b, '%') >= 0 { // zones are not addresses of a client
		return netip.Addr{}, false
	}
	// unsafe.String avoids the copy that string(b) costs here (ParseAddr's
	// argument escapes because a zone would be kept as a substring of it).
	// Safe: without a zone the returned Addr keeps no reference to b.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	if fam == FamilyTCP4 && !a.Is4() || fam == FamilyTCP6 && !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

func v1Port(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 0xffff {
		return 0, false
	}
	return uint16(n), true
}

func parseV2(in []byte, max int) (int, Header, error) {
	if len(in) < V2PreambleLen {
		// Fail early on what the first bytes already show.
		if len(in) > 12 {
			fam := byte(0)
			if len(in) > 13 {
				fam = in[13]
			}
			if err := v2Check(in[12], fam); err != nil {
				return 0, Header{}, err
			}
		}
		return 0, Header{}, nil
	}
	verCmd, fam := in[12], in[13]
	if err := v2Check(verCmd, fam); err != nil {
		return 0, Header{}, err
	}
	n := int(binary.BigEndian.Uint16(in[14:16]))
	if n > max {
		return 0, Header{}, errV2TooLong
	}
	end := V2PreambleLen + n
	if len(in) < end {
		return 0, Header{}, nil
	}
	body := in[V2PreambleLen:end]
	h := Header{Version: 2}
	switch fam >> 4 {
	case 0x1:
		h.Family = FamilyTCP4
	case 0x2:
		h.Family = FamilyTCP6
	case 0x3:
		h.Family = FamilyUnix
	}
	if verCmd&0x0f == 0x0 { // LOCAL: the block is to be skipped whatever it holds
		h.Local = true
		return end, h, nil
	}
	if fam&0x0f == 0x2 {
		return 0, Header{}, errV2Datagram
	}
	var addrLen int
	switch h.Family {
	case FamilyUnspec:
		h.Local = true
		return end, h, nil
	case FamilyTCP4:
		addrLen = 12
	case FamilyTCP6:
		addrLen = 36
	case FamilyUnix:
		addrLen = 216
	}
	if n < addrLen {
		return 0, Header{}, errV2Length
	}
	tlvs := body[addrLen:]
	if !validTLVs(tlvs) {
		return 0, Header{}, errV2TLV
	}
	if len(tlvs) > 0 {
		h.TLVs = tlvs
	}
	switch h.Family {
	case FamilyTCP4:
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		h.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
	case FamilyTCP6:
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(body[16:32])).Unmap()
		h.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))
		h.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))
	case FamilyUnix: // paths, no IP: Local-like
		h.Local = true
	}
	return end, h, nil
}

// v2Check validates the version/command byte and the family/protocol byte
// (spec 2.2: unassigned values must be rejected).
func v2Check(verCmd, fam byte) error {
	if verCmd>>4 != 0x2 {
		return errV2Version
	}
	if verCmd&0x0f > 0x1 {
		return errV2Command
	}
	switch fam {
	case 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32:
		return nil
	}
	return errV2Family
}

func validTLVs(p []byte) bool {
	for len(p) > 0 {
		if len(p) < 3 {
			return false
		}
		n := int(binary.BigEndian.Uint16(p[1:3]))
		if len(p) < 3+n {
			return false
		}
		p = p[3+n:]
	}
	return true
}
