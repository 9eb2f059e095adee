package wsframe

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
)

// Defaults of Handshake.
const (
	DefaultPath        = "/v1/ws"
	DefaultSubprotocol = "lcpush.v1"
	// DefaultMaxRequest bounds the upgrade request (request line and
	// headers). Browsers send their cookies for the host: 8 KiB leaves room.
	DefaultMaxRequest = 8192
)

// Handshake answers WebSocket upgrade requests. It is configuration only:
// one value may be shared by every event loop (Parse keeps its state on the
// stack), but must not be changed while in use.
type Handshake struct {
	// Path is the only path upgraded; others get 404 before any upgrade.
	// The query string, if any, is ignored. Default DefaultPath.
	Path string
	// Subprotocol is selected when the client offers it in
	// Sec-WebSocket-Protocol. Default DefaultSubprotocol.
	Subprotocol string
	// Origins is the allow list of Origin values (compared without regard
	// to case, e.g. "https://app.example.com"); empty accepts every origin.
	// A request without Origin (a native client) is always accepted.
	Origins []string
	// MaxRequest bounds the request bytes; a request not complete within it
	// is answered 431. Default DefaultMaxRequest.
	MaxRequest int
	// Cookie, when set, is sent as Set-Cookie in the 101 answer (L7
	// stickiness at the terminator), e.g. &http.Cookie{Name: "lcroom",
	// Value: "r1", Path: "/v1/ws", HttpOnly: true}.
	Cookie *http.Cookie
}

// Result tells what Parse found in a complete request.
type Result struct {
	// Status is the HTTP status of resp: 101 when upgraded, else the error
	// status (400, 403, 404, 405, 426, 431, 505).
	Status int
	// Protocol is the selected subprotocol, "" when the client offered none
	// that the server speaks.
	Protocol string
	// Origin is the request's Origin header, "" when absent.
	Origin string
	// UserAgent is the request's User-Agent header (for logs), "" when absent.
	// Forwarding headers (X-Forwarded-For, Forwarded) are never trusted nor
	// returned: the client address comes from the PROXY protocol.
	UserAgent string
}

// Handshake errors of this package; the others are gobwas/ws's
// (ws.ErrHandshakeBadSecKey, ws.ErrHandshakeUpgradeRequired, ...), all
// *ws.ConnectionRejectedError. Result.Status carries the status either way.
var (
	ErrNotFound         = ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound), ws.RejectionReason("not found"))
	ErrOriginForbidden  = ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden), ws.RejectionReason("origin not allowed"))
	ErrRequestTooLarge  = ws.RejectConnectionError(ws.RejectionStatus(http.StatusRequestHeaderFieldsTooLarge), ws.RejectionReason("request too large"))
	ErrNotHTTP          = ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("malformed HTTP request"))
	errDuplicatedOrigin = ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("more than one Origin header"))
)

var (
	respTooLarge = errorResponse(http.StatusRequestHeaderFieldsTooLarge, "request too large")
	respNotHTTP  = errorResponse(http.StatusBadRequest, "malformed HTTP request")
	crlfcrlf     = []byte("\r\n\r\n")
)

// errorResponse builds an answer in the same shape as gobwas/ws's.
func errorResponse(code int, body string) []byte {
	return []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// Parse looks at the bytes received so far on a new connection.
//
//   - consumed == 0, err == nil: the request is not complete yet; call again
//     with more bytes (in must start with the same bytes).
//   - err == nil: the request is upgraded; write resp (the 101 answer) and
//     discard consumed bytes; what follows is WebSocket frames.
//   - err != nil: write resp (the error answer, Result.Status) and close.
//
// Parse never reads past the end of the request (the "\r\n\r\n"), nor looks at
// more than MaxRequest bytes. resp is newly allocated and owned by the caller.
func (h *Handshake) Parse(in []byte) (consumed int, resp []byte, res Result, err error) {
	max := h.MaxRequest
	if max <= 0 {
		max = DefaultMaxRequest
	}
	if !looksLikeHTTP(in) {
		return len(in), bytes.Clone(respNotHTTP), Result{Status: http.StatusBadRequest}, ErrNotHTTP
	}
	window := in
	if len(window) > max {
		window = window[:max]
	}
	end := bytes.Index(window, crlfcrlf)
	if end < 0 {
		if len(in) >= max {
			return len(in), bytes.Clone(respTooLarge), Result{Status: http.StatusRequestHeaderFieldsTooLarge}, ErrRequestTooLarge
		}
		return 0, nil, Result{}, nil
	}
	end += len(crlfcrlf)

	st := upgradeState{h: h, rw: memConn{r: in[:end], w: make([]byte, 0, 256)}}
	hs, err := st.upgrader().Upgrade(&st.rw)
	res = Result{Protocol: hs.Protocol, Origin: st.origin, UserAgent: st.userAgent}
	if err != nil {
		// Not a rejection: the request line or a header line did not parse
		// (gobwas/ws then returns before writing an answer).
		res.Status = http.StatusBadRequest
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) && rej.StatusCode() != 0 {
			res.Status = rej.StatusCode()
		}
		res.Protocol = ""
		if len(st.rw.w) == 0 {
			st.rw.w = append(st.rw.w, respNotHTTP...)
			res.Status = http.StatusBadRequest
			err = ErrNotHTTP
		}
		return end, st.rw.w, res, err
	}
	res.Status = http.StatusSwitchingProtocols
	return end, st.rw.w, res, nil
}

// looksLikeHTTP rejects early what cannot be a request line's method, so that
// a raw TCP client on the WebSocket port is answered at once instead of at
// MaxRequest or at the deadline.
func looksLikeHTTP(in []byte) bool {
	for i, c := range in {
		if c == ' ' {
			return i > 0
		}
		if c < 'A' || c > 'Z' || i >= 16 {
			return false
		}
	}
	return true
}

type upgradeState struct {
	h           *Handshake
	rw          memConn
	origin      string
	userAgent   string
	originSeen  bool
	subprotocol string
}

func (st *upgradeState) upgrader() ws.Upgrader {
	st.subprotocol = st.h.Subprotocol
	if st.subprotocol == "" {
		st.subprotocol = DefaultSubprotocol
	}
	u := ws.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 512,
		OnRequest:       st.onRequest,
		OnHeader:        st.onHeader,
		ProtocolCustom:  st.selectProtocol,
	}
	if st.h.Cookie != nil {
		u.OnBeforeUpgrade = st.beforeUpgrade
	}
	return u
}

func (st *upgradeState) onRequest(uri []byte) error {
	path := st.h.Path
	if path == "" {
		path = DefaultPath
	}
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if string(uri) != path {
		return ErrNotFound
	}
	return nil
}

func (st *upgradeState) onHeader(key, value []byte) error {
	switch string(key) { // canonical form (gobwas/ws canonicalizes keys)
	case "Origin":
		if st.originSeen {
			return errDuplicatedOrigin
		}
		st.originSeen = true
		st.origin = string(value)
		if len(st.h.Origins) == 0 {
			return nil
		}
		for _, o := range st.h.Origins {
			if strings.EqualFold(o, st.origin) {
				return nil
			}
		}
		return ErrOriginForbidden
	case "User-Agent":
		st.userAgent = string(value)
	}
	return nil
}

// selectProtocol scans a Sec-WebSocket-Protocol value ("a, b, c") for the
// server's subprotocol. A value without it is not an error: the server then
// selects none (RFC 6455 4.2.2).
func (st *upgradeState) selectProtocol(v []byte) (string, bool) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		if string(bytes.TrimSpace(tok)) == st.subprotocol {
			return st.subprotocol, true
		}
	}
	return "", true
}

func (st *upgradeState) beforeUpgrade() (ws.HandshakeHeader, error) {
	c := st.h.Cookie.String()
	if c == "" { // invalid name: net/http refuses to serialize it
		return nil, nil
	}
	return ws.HandshakeHeaderString("Set-Cookie: " + c + "\r\n"), nil
}

// memConn is the io.ReadWriter the Upgrader runs on: it reads the complete
// request and collects the answer. It never blocks: at the end of r it
// returns io.EOF (which cannot happen before "\r\n\r\n", checked by Parse).
type memConn struct {
	r []byte
	w []byte
}

func (c *memConn) Read(p []byte) (int, error) {
	if len(c.r) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.r)
	c.r = c.r[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	c.w = append(c.w, p...)
	return len(p), nil
}
