package proxyhdr

import (
	"bytes"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\r\nrest"), uint16(9))
	f.Add([]byte("PROXY TCP6 2001:db8::7 ::ffff:1.2.3.4 1 65535\r\n"), uint16(30))
	f.Add([]byte("PROXY UNKNOWN\r\n"), uint16(3))
	f.Add(v2(0x21, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x02, 0, 1, 'a'}), uint16(14))
	f.Add(v2(0x21, 0x21, make([]byte, 40)), uint16(17))
	f.Add(v2(0x20, 0x00, nil), uint16(0))
	f.Add(v2(0x21, 0x31, make([]byte, 216)), uint16(100))
	f.Add([]byte("GET / HTTP/1.1\r\n"), uint16(1))
	const max = 300
	p := Parser{MaxV2Body: max}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		orig := bytes.Clone(in)
		n, h, err := p.Parse(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("Parse modified its input")
		}
		if n < 0 || n > len(in) || n > V2PreambleLen+max {
			t.Fatalf("consumed %d of %d", n, len(in))
		}
		if err != nil && n != 0 {
			t.Fatalf("consumed %d with %v", n, err)
		}
		if n == 0 && err == nil && len(in) >= V2PreambleLen+max {
			t.Fatalf("need-more with %d bytes", len(in))
		}
		if err != nil || n == 0 {
			return
		}
		if h.Version == 1 && n > V1MaxLen {
			t.Fatalf("v1 header of %d bytes", n)
		}
		if h.Local && (h.Src.IsValid() || h.Dst.IsValid()) {
			t.Fatal("Local with addresses")
		}
		if !h.Local && (!h.Src.IsValid() || h.Src.Addr().Is4In6()) {
			t.Fatalf("bad source %v", h.Src)
		}
		// Every prefix of an accepted header is need-more.
		if k := int(cut) % n; k < n {
			if m, _, e := p.Parse(in[:k]); m != 0 || e != nil {
				t.Fatalf("prefix of %d/%d: %d %v", k, n, m, e)
			}
		}
		// go-proxyproto reads what we accepted, with the same addresses.
		if h.Family == FamilyTCP4 || h.Family == FamilyTCP6 || h.Version == 1 {
			assertSame(t, in[:n], h)
		}
	})
}
