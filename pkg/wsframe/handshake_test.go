package wsframe

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="        // RFC 6455 1.3
const testAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" // its accept value

func request(path string, extra ...string) string {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\n")
	b.WriteString("Host: room.example.com\r\n")
	b.WriteString("Upgrade: websocket\r\n")
	b.WriteString("Connection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Key: " + testKey + "\r\n")
	b.WriteString("Sec-WebSocket-Version: 13\r\n")
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// without returns req without its header line starting with prefix.
func without(req, prefix string) string {
	var out []string
	for _, l := range strings.SplitAfter(req, "\r\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func replace(req, old, new string) string { return strings.Replace(req, old, new, 1) }

func readResponse(t *testing.T, resp []byte) *http.Response {
	t.Helper()
	r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil)
	if err != nil {
		t.Fatalf(
			"answer does not parse as HTTP: %v\n%q",
			err, resp)
	}
	return r
}

func TestHandshake(t *testing.T) {
	cookie := &http.Cookie{Name: "lcroom", Value: "r1", Path: "/v1/ws", HttpOnly: true}
	tests := []struct {
		name      string
		hs        Handshake
		req       string
		status    int
		protocol  string
		origin    string
		header    map[string]string // expected answer headers
		noHeader  []string
		wantError error
	}{
		{
			name:     "plain upgrade",
			req:      request("/v1/ws"),
			status:   101,
			header:   map[string]string{"Sec-WebSocket-Accept": testAccept, "Upgrade": "websocket"},
			noHeader: []string{"Sec-WebSocket-Protocol", "Set-Cookie"},
		},
		{
			name:     "permessage-deflate offered, not negotiated",
			req:      request("/v1/ws", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
			status:   101,
			noHeader: []string{"Sec-WebSocket-Extensions"},
		},
		{
			name:   "query string ignored",
			req:    request("/v1/ws?sdk=js-1.2"),
			status: 101,
		},
		{
			name:     "subprotocol selected",
			req:      request("/v1/ws", "Sec-WebSocket-Protocol: chat, lcpush.v1"),
			status:   101,
			protocol: "lcpush.v1",
			header:   map[string]string{"Sec-WebSocket-Protocol": "lcpush.v1"},
		},
		{
			name:     "other subprotocol not selected",
			req:      request("/v1/ws", "Sec-WebSocket-Protocol: chat, lcpush.v2"),
			status:   101,
			noHeader: []string{"Sec-WebSocket-Protocol"},
		},
		{
			name:     "subprotocol in second header",
			req:      request("/v1/ws", "Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: lcpush.v1"),
			status:   101,
			protocol: "lcpush.v1",
		},
		{
			name:      "wrong path 404",
			req:       request("/ws"),
			status:    404,
			wantError: ErrNotFound,
		},
		{
			name:      "wrong path 404 even without websocket headers",
			req:       "GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n",
			status:    404,
			wantError: ErrNotFound,
		},
		{
			name:   "no origin accepted with allow list",
			hs:     Handshake{Origins: []string{"https://app.example.com"}},
			req:    request("/v1/ws"),
			status: 101,
		},
		{
			name:   "allowed origin",
			hs:     Handshake{Origins: []string{"https://other.example.com", "https://app.example.com"}},
			req:    request("/v1/ws", "Origin: https://APP.example.com"),
			status: 101,
			origin: "https://APP.example.com",
		},
		{
			name:      "origin outside allow list 403",
			hs:        Handshake{Origins: []string{"https://app.example.com"}},
			req:       request("/v1/ws", "Origin: https://evil.example.com"),
			status:    403,
			origin:    "https://evil.example.com",
			wantError: ErrOriginForbidden,
		},
		{
			name:   "empty allow list accepts any origin",
			req:    request("/v1/ws", "Origin: https://anything.example"),
			status: 101,
			origin: "https://anything.example",
		},
		{
			name:   "two origins 400",
			hs:     Handshake{Origins: []string{"https://app.example.com"}},
			req:    request("/v1/ws", "Origin: https://app.example.com", "Origin: https://evil.example.com"),
			status: 400,
			origin: "https://app.example.com",
		},
		{
			name:   "missing key 400",
			req:    without(request("/v1/ws"), "Sec-WebSocket-Key"),
			status: 400,
		},
		{
			name:   "short key 400",
			req:    replace(request("/v1/ws"), testKey, "abc"),
			status: 400,
		},
		{
			name:   "version 8 426",
			req:    replace(request("/v1/ws"), "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
			status: 426,
			header: map[string]string{"Sec-WebSocket-Version": "13"},
		},
		{
			name:   "missing version 400",
			req:    without(request("/v1/ws"), "Sec-WebSocket-Version"),
			status: 400,
		},
		{
			name:   "missing upgrade 400",
			req:    without(request("/v1/ws"), "Upgrade:"),
			status: 400,
		},
		{
			name:   "upgrade not websocket 400",
			req:    replace(request("/v1/ws"), "Upgrade: websocket", "Upgrade: h2c"),
			status: 400,
		},
		{
			name:   "connection keep-alive, Upgrade accepted",
			req:    replace(request("/v1/ws"), "Connection: Upgrade", "Connection: keep-alive, Upgrade"),
			status: 101,
		},
		{
			name:   "missing host 400",
			req:    without(request("/v1/ws"), "Host:"),
			status: 400,
		},
		{
			name:   "POST 405",
			req:    replace(request("/v1/ws"), "GET", "POST"),
			status: 405,
		},
		{
			name:   "HTTP/1.0 505",
			req:    replace(request("/v1/ws"), "HTTP/1.1", "HTTP/1.0"),
			status: 505,
		},
		{
			name:      "not HTTP at all 400 at once",
			req:       "\x00\x00\x00\x0c\x01\x01\r\n\r\n",
			status:    400,
			wantError: ErrNotHTTP,
		},
		{
			name:     "cookie for stickiness",
			hs:       Handshake{Cookie: cookie},
			req:      request("/v1/ws"),
			status:   101,
			header:   map[string]string{"Set-Cookie": "lcroom=r1; Path=/v1/ws; HttpOnly"},
			noHeader: nil,
		},
		{
			name:     "no cookie on an error answer",
			hs:       Handshake{Cookie: cookie},
			req:      request("/nope"),
			status:   404,
			noHeader: []string{"Set-Cookie"},
		},
		{
			name:     "configured path and subprotocol",
			hs:       Handshake{Path: "/ws", Subprotocol: "x.v2"},
			req:      request("/ws", "Sec-WebSocket-Protocol: lcpush.v1, x.v2"),
			status:   101,
			protocol: "x.v2",
		},
		{
			name:      "oversize request 431",
			hs:        Handshake{MaxRequest: 256},
			req:       request("/v1/ws", "Cookie: "+strings.Repeat("a", 300)),
			status:    431,
			wantError: ErrRequestTooLarge,
		},
		{
			name:   "request exactly at the bound",
			hs:     Handshake{MaxRequest: len(request("/v1/ws"))},
			req:    request("/v1/ws"),
			status: 101,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, then byte by byte: the same answer, and need-more before.
			for _, split := range []bool{false, true} {
				in := []byte(tt.req + "\x82\x80junk") // frame bytes after the request
				var (
					n    int
					resp []byte
					res  Result
					err  error
				)
				if split {
					for i := 1; i <= len(in); i++ {
						n, resp, res, err = tt.hs.Parse(in[:i])
						if n != 0 || err != nil {
							break
						}
						if resp != nil {
							t.Fatalf(
								"need-more with an answer at %d",
								i)
						}
					}
				} else {
					n, resp, res, err = tt.hs.Parse(in)
				}
				if res.Status != tt.status {
					t.Fatalf(
						"split=%v: status %d, want %d (err %v)\n%s",
						split, res.Status, tt.status, err, resp)
				}
				if (err == nil) != (tt.status == 101) {
					t.Fatalf(
						"split=%v: err %v with status %d",
						split, err, res.Status)
				}
				if tt.wantError != nil && err != tt.wantError {
					t.Fatalf(
						"err %v, want %v",
						err, tt.wantError)
				}
				if tt.status == 101 && n != len(tt.req) {
					t.Fatalf(
						"consumed %d, want %d (the request only)",
						n, len(tt.req))
				}
				if n > len(in) {
					t.Fatalf(
						"consumed %d of %d",
						n, len(in))
				}
				if res.Protocol != tt.protocol {
					t.Fatalf(
						"protocol %q, want %q",
						res.Protocol, tt.protocol)
				}
				if res.Origin != tt.origin {
					t.Fatalf(
						"origin %q, want %q",
						res.Origin, tt.origin)
				}
				r := readResponse(t, resp)
				if r.StatusCode != tt.status {
					t.Fatalf(
						"answer status %d, want %d\n%s",
						r.StatusCode, tt.status, resp)
				}
				for k, v := range tt.header {
					if got := r.Header.Get(k); got != v {
						t.Fatalf(
							"answer header %s = %q, want %q\n%s",
							k, got, v, resp)
					}
				}
				for _, k := range tt.noHeader {
					if _, ok := r.Header[http.CanonicalHeaderKey(k)]; ok {
						t.Fatalf(
							"answer has header %s\n%s",
							k, resp)
					}
				}
			}
		})
	}
}

func TestHandshakeNeedMore(t *testing.T) {
	var hs Handshake
	req := request("/v1/ws")
	for _, in := range []string{"", "G", "GET", "GET ", req[:len(req)-1], req[:len(req)-2]} {
		n, resp, res, err := hs.Parse([]byte(in))
		if n != 0 || resp != nil || err != nil || res.Status != 0 {
			t.Fatalf(
				"%q: got %d %q %+v %v, want need-more",
				in, n, resp, res, err)
		}
	}
}

func TestHandshakeUserAgent(t *testing.T) {
	var hs Handshake
	_, _, res, err := hs.Parse([]byte(request("/v1/ws", "User-Agent: lcpush-js/1.0", "X-Forwarded-For: 1.2.3.4")))
	if err != nil || res.UserAgent != "lcpush-js/1.0" {
		t.Fatalf(
			"got %+v %v",
			res, err)
	}
}

func BenchmarkHandshake(b *testing.B) {
	hs := Handshake{Origins: []string{"https://app.example.com"}}
	req := []byte(request("/v1/ws", "Origin: https://app.example.com", "Sec-WebSocket-Protocol: lcpush.v1"))
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		_, _, _, err := hs.Parse(req)
		if err != nil {
			b.Fatal(err)
		}
	}
}
