package proxyhdr

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"
)

func tcp(s string) *net.TCPAddr {
	ap := netip.MustParseAddrPort(s)
	return net.TCPAddrFromAddrPort(ap)
}

// format writes a header with go-proxyproto's writer.
func format(t testing.TB, h *proxyproto.Header, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	if len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			t.Fatal(err)
		}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// v2 builds a v2 header by hand.
func v2(verCmd, fam byte, body []byte) []byte {
	out := append([]byte(nil), sigV2...)
	out = append(out, verCmd, fam)
	out = binary.BigEndian.AppendUint16(out, uint16(len(body)))
	return append(out, body...)
}

func TestParse(t *testing.T) {
	authority := proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("push.example.com")}
	noop := proxyproto.TLV{Type: proxyproto.PP2_TYPE_NOOP, Value: []byte{0, 0}}
	v4body := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0x1f, 0x90, 0x01, 0xbb}
	tests := []struct {
		name    string
		in      []byte
		want    Header
		wantTLV string
		err     error
	}{
		{
			name: "v1 TCP4 (go-proxyproto writer)",
			in: format(t, &proxyproto.Header{Version: 1, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
				SourceAddr: tcp("192.0.2.10:51000"), DestinationAddr: tcp("198.51.100.1:443")}),
			want: Header{Version: 1, Family: FamilyTCP4,
				Src: netip.MustParseAddrPort("192.0.2.10:51000"), Dst: netip.MustParseAddrPort("198.51.100.1:443")},
		},
		{
			name: "v1 TCP6 (go-proxyproto writer)",
			in: format(t, &proxyproto.Header{Version: 1, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
				SourceAddr: tcp("[2001:db8::7]:51000"), DestinationAddr: tcp("[2001:db8::1]:443")}),
			want: Header{Version: 1, Family: FamilyTCP6,
				Src: netip.MustParseAddrPort("[2001:db8::7]:51000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:443")},
		},
		{
			name: "v1 TCP6 with IPv4-mapped addresses: unmapped",
			in:   []byte("PROXY TCP6 ::ffff:192.0.2.10 ::ffff:198.51.100.1 1 2\r\n"),
			want: Header{Version: 1, Family: FamilyTCP6,
				Src: netip.MustParseAddrPort("192.0.2.10:1"), Dst: netip.MustParseAddrPort("198.51.100.1:2")},
		},
		{
			name: "v1 longest TCP6 line",
			in:   []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			want: Header{Version: 1, Family: FamilyTCP6,
				Src: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
				Dst: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")},
		},
		{
			name: "v1 UNKNOWN",
			in:   []byte("PROXY UNKNOWN\r\n"),
			want: Header{Version: 1, Local: true},
		},
		{
			name: "v1 UNKNOWN with ignored fields",
			in:   []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"),
			want: Header{Version: 1, Local: true},
		},
		{
			name: "v1 longest possible line (107 bytes)",
			in:   []byte("PROXY UNKNOWN " + strings.Repeat("x", 107-16) + "\r\n"),
			want: Header{Version: 1, Local: true},
		},
		{name: "v1 too long without CRLF", in: []byte("PROXY UNKNOWN " + strings.Repeat("x", 100)), err: ErrTooLong},
		{name: "v1 LF without CR", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), err: ErrMalformed},
		{name: "v1 TCP5", in: []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), err: ErrMalformed},
		{name: "v1 missing field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), err: ErrMalformed},
		{name: "v1 extra field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), err: ErrMalformed},
		{name: "v1 trailing space", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), err: ErrMalformed},
		{name: "v1 double space", in: []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), err: ErrMalformed},
		{name: "v1 IPv6 in TCP4", in: []byte("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), err: ErrMalformed},
		{name: "v1 IPv4 in TCP6", in: []byte("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), err: ErrMalformed},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), err: ErrMalformed},
		{name: "v1 port too big", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), err: ErrMalformed},
		{name: "v1 port leading zero", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), err: ErrMalformed},
		{name: "v1 port sign", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n"), err: ErrMalformed},
		{name: "v1 address leading zero", in: []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), err: ErrMalformed},
		{
			name: "v1 port 0",
			in:   []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0 2\r\n"),
			want: Header{Version: 1, Family: FamilyTCP4,
				Src: netip.MustParseAddrPort("1.2.3.4:0"), Dst: netip.MustParseAddrPort("5.6.7.8:2")},
		},
		{
			name: "v2 TCP4 (go-proxyproto writer)",
			in: format(t, &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
				SourceAddr: tcp("192.0.2.10:51000"), DestinationAddr: tcp("198.51.100.1:443")}),
			want: Header{Version: 2, Family: FamilyTCP4,
				Src: netip.MustParseAddrPort("192.0.2.10:51000"), Dst: netip.MustParseAddrPort("198.51.100.1:443")},
		},
		{
			name: "v2 TCP6 (go-proxyproto writer)",
			in: format(t, &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
				SourceAddr: tcp("[2001:db8::7]:51000"), DestinationAddr: tcp("[2001:db8::1]:443")}),
			want: Header{Version: 2, Family: FamilyTCP6,
				Src: netip.MustParseAddrPort("[2001:db8::7]:51000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:443")},
		},
		{
			name: "v2 TCP6 with IPv4-mapped source: unmapped",
			in: format(t, &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
				SourceAddr: tcp("[::ffff:192.0.2.10]:51000"), DestinationAddr: tcp("[2001:db8::1]:443")}),
			want: Header{Version: 2, Family: FamilyTCP6,
				Src: netip.MustParseAddrPort("192.0.2.10:51000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:443")},
		},
		{
			name: "v2 TCP4 with TLVs",
			in: format(t, &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
				SourceAddr: tcp("192.0.2.10:51000"), DestinationAddr: tcp("198.51.100.1:443")}, noop, authority),
			want: Header{Version: 2, Family: FamilyTCP4,
				Src: netip.MustParseAddrPort("192.0.2.10:51000"), Dst: netip.MustParseAddrPort("198.51.100.1:443")},
			wantTLV: "push.example.com",
		},
		{
			name: "v2 LOCAL (go-proxyproto writer)",
			in:   format(t, &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}),
			want: Header{Version: 2, Local: true},
		},
		{
			name: "v2 LOCAL with an address block: skipped",
			in:   v2(0x20, 0x11, v4body),
			want: Header{Version: 2, Local: true, Family: FamilyTCP4},
		},
		{
			name: "v2 LOCAL with a short block: skipped",
			in:   v2(0x20, 0x11, []byte{1, 2}),
			want: Header{Version: 2, Local: true, Family: FamilyTCP4},
		},
		{
			name: "v2 PROXY UNSPEC: no address, Local-like",
			in:   v2(0x21, 0x00, nil),
			want: Header{Version: 2, Local: true},
		},
		{
			name: "v2 PROXY AF_UNIX: no IP, Local-like",
			in: format(t, &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
				SourceAddr: &net.UnixAddr{Net: "unix", Name: "/run/a.sock"}, DestinationAddr: &net.UnixAddr{Net: "unix", Name: "/run/b.sock"}}),
			want: Header{Version: 2, Local: true, Family: FamilyUnix},
		},
		{name: "v2 UDP4: unsupported", in: v2(0x21, 0x12, v4body), err: ErrUnsupported},
		{name: "v2 version 1", in: v2(0x11, 0x11, v4body), err: ErrMalformed},
		{name: "v2 command 2", in: v2(0x22, 0x11, v4body), err: ErrMalformed},
		{name: "v2 family 0x13", in: v2(0x21, 0x13, v4body), err: ErrMalformed},
		{name: "v2 family 0x41", in: v2(0x21, 0x41, v4body), err: ErrMalformed},
		{name: "v2 short address block", in: v2(0x21, 0x11, v4body[:11]), err: ErrMalformed},
		{name: "v2 truncated TLV", in: v2(0x21, 0x11, append(bytes.Clone(v4body), 0x02, 0x00, 0x05, 'a')), err: ErrMalformed},
		{name: "v2 TLV stub", in: v2(0x21, 0x11, append(bytes.Clone(v4body), 0x02)), err: ErrMalformed},
		{name: "v2 over MaxV2Body", in: v2(0x21, 0x11, make([]byte, DefaultMaxV2Body+1))[:20], err: ErrTooLong},
		{name: "garbage", in: []byte("GET / HTTP/1.1\r\n\r\n"), err: ErrNotProxy},
		{name: "raw frame", in: []byte{0, 0, 0, 12, 1, 1, 0, 0}, err: ErrNotProxy},
		{name: "near miss v1", in: []byte("PROXZ TCP4"), err: ErrNotProxy},
		{name: "near miss v2", in: []byte("\r\n\r\n\x00\r\nQUIZ\n\x21\x11\x00\x0c"), err: ErrNotProxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append(bytes.Clone(tt.in), "\x00\x00\x00\x0cnext"...) // transport bytes follow
			check := func(n int, h Header, err error, split bool) {
				t.Helper()
				if tt.err != nil {
					if !errors.Is(err, tt.err) {
						t.Fatalf(
							"split=%v: err %v, want %v",
							split, err, tt.err)
					}
					return
				}
				if err != nil {
					t.Fatalf(
						"split=%v: %v",
						split, err)
				}
				if n != len(tt.in) {
					t.Fatalf(
						"split=%v: consumed %d, want %d",
						split, n, len(tt.in))
				}
				got := h
				got.TLVs = nil
				if !equal(got, tt.want) {
					t.Fatalf(
						"split=%v: header\n%+v\nwant\n%+v",
						split, got, tt.want)
				}
				if tt.wantTLV != "" {
					v, ok := h.TLV(byte(proxyproto.PP2_TYPE_AUTHORITY))
					if !ok || string(v) != tt.wantTLV {
						t.Fatalf(
							"TLV %q %v",
							v, ok)
					}
				}
			}
			n, h, err := Parse(in)
			check(n, h, err, false)
			// Byte by byte: need-more until the header is complete, never a
			// different answer.
			for i := 0; i <= len(in); i++ {
				n, h, err = Parse(in[:i])
				if n != 0 || err != nil {
					break
				}
				if !equal(h, Header{}) {
					t.Fatalf(
						"need-more with a header at %d",
						i)
				}
				if i == len(in) {
					t.Fatal("need-more on the whole input")
				}
			}
			check(n, h, err, true)
		})
	}
}

func TestParseMaxV2Body(t *testing.T) {
	body := append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}, 0xe0, 0, 3, 'a', 'b', 'c')
	in := v2(0x21, 0x11, body)
	if _, _, err := (Parser{MaxV2Body: 17}).Parse(in); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	n, h, err := (Parser{MaxV2Body: 18}).Parse(in)
	if err != nil || n != len(in) {
		t.Fatal(n, err)
	}
	if v, ok := h.TLV(0xe0); !ok || string(v) != "abc" {
		t.Fatal(v, ok)
	}
	if _, ok := h.TLV(0xe1); ok {
		t.Fatal("absent TLV found")
	}
}

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Sniffed
	}{
		{"", SniffNeedMore},
		{"P", SniffNeedMore},
		{"PROXY", SniffNeedMore},
		{"PROXY ", SniffV1},
		{"\r\n\r\n", SniffNeedMore},
		{"\r\n\r\n\x00\r\nQUIT\n", SniffV2},
		{"\x00", SniffNone},
		{"G", SniffNone},
		{"PRO\x00", SniffNone},
		{"\r\n\r\nX", SniffNone},
	} {
		if got := Sniff([]byte(tc.in)); got != tc.want {
			t.Fatalf(
				"Sniff(%q) = %d, want %d",
				tc.in, got, tc.want)
		}
	}
}

// TestAgainstGoProxyproto: what we accept, go-proxyproto reads the same.
func TestAgainstGoProxyproto(t *testing.T) {
	for _, s := range []string{"192.0.2.1:1", "[2001:db8::1]:65535", "10.0.0.1:8080"} {
		src := tcp(s)
		dst := tcp("[2001:db8::2]:443")
		if src.IP.To4() != nil {
			dst = tcp("10.9.9.9:443")
		}
		for _, ver := range []byte{1, 2} {
			h := proxyproto.HeaderProxyFromAddrs(ver, src, dst)
			in := format(t, h)
			n, got, err := Parse(in)
			if err != nil || n != len(in) {
				t.Fatal(s, ver, err)
			}
			assertSame(t, in, got)
		}
	}
}

// assertSame checks that go-proxyproto reads in as h.
func assertSame(t testing.TB, in []byte, h Header) {
	t.Helper()
	ref, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(in), len(in)+16))
	if err != nil {
		t.Fatalf(
			"go-proxyproto refuses what we accept: %v\n%q",
			err, in)
	}
	if h.Local {
		return
	}
	rs, rd, ok := ref.TCPAddrs()
	if !ok {
		t.Fatalf(
			"go-proxyproto: not TCP: %+v",
			ref)
	}
	if rs.AddrPort().Addr().Unmap() != h.Src.Addr() || rs.AddrPort().Port() != h.Src.Port() ||
		rd.AddrPort().Addr().Unmap() != h.Dst.Addr() || rd.AddrPort().Port() != h.Dst.Port() {
		t.Fatalf(
			"addresses differ: go-proxyproto %v %v, we %v %v",
			rs, rd, h.Src, h.Dst)
	}
}

func TestZeroAllocs(t *testing.T) {
	v1 := []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n")
	v2in := v2(0x21, 0x21, make([]byte, 36))
	get := []byte("GET /")
	if a := testing.AllocsPerRun(100, func() {
		Parse(v1)
		Parse(v2in)
		Parse(v1[:20])
		Parse(get)
	}); a != 0 {
		t.Fatalf(
			"%v allocs",
			a)
	}
}

func TestTrusted(t *testing.T) {
	tr, err := ParseTrusted([]string{"10.0.0.0/8", " 192.0.2.7 ", "2001:db8:1::/48", "::1", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"::ffff:10.1.2.3", true},
		{"11.0.0.1", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"2001:db8:1:ffff::1", true},
		{"2001:db8:2::1", false},
		{"::1", true},
		{"127.0.0.1", false},
		{"172.16.5.5", true},
		{"172.32.0.1", false},
	} {
		if got := tr.Contains(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Fatalf(
				"Contains(%s) = %v",
				tc.addr, got)
		}
	}
	if !tr.ContainsNet(tcp("[::ffff:10.0.0.9]:4000")) || tr.ContainsNet(tcp("8.8.8.8:1")) {
		t.Fatal("ContainsNet")
	}
	if tr.ContainsNet(&net.UnixAddr{Name: "x"}) || tr.ContainsNet(nil) {
		t.Fatal("ContainsNet non-TCP")
	}
	if tr.Empty() || len(tr.Prefixes()) != 5 {
		t.Fatal("Prefixes")
	}
	var zero Trusted
	if !zero.Empty() || zero.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Fatal("zero Trusted trusts")
	}
	for _, bad := range []string{"", "10.0.0.0/33", "nope", "fe80::1%eth0", "10.0.0.1/"} {
		if _, err := ParseTrusted([]string{bad}); err == nil {
			t.Fatalf(
				"ParseTrusted(%q) accepted",
				bad)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	cases := map[string][]byte{
		"v1-tcp4": []byte("PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\r\n"),
		"v1-tcp6": []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n"),
		"v2-tcp4": v2(0x21, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0x1f, 0x90, 0x01, 0xbb}),
		"v2-tcp6-tlv": v2(0x21, 0x21, append(make([]byte, 36),
			0x02, 0x00, 0x10, 'p', 'u', 's', 'h', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm')),
	}
	for _, name := range []string{"v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6-tlv"} {
		in := cases[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Parse(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("go-proxyproto-v1-tcp4", func(b *testing.B) {
		in := cases["v1-tcp4"]
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(in), 128)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func equal(a, b Header) bool {
	return a.Version == b.Version && a.Local == b.Local && a.Family == b.Family &&
		a.Src == b.Src && a.Dst == b.Dst && bytes.Equal(a.TLVs, b.TLVs)
}
