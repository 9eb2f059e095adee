package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// pushConn is one keep-alive HTTP/1.1 connection to the push API, owned by
// one unicast sender. It writes a request built in place and reads the
// answer itself: net/http's client costs two extra goroutine hand-offs
// (writeLoop, readLoop) and ~6 KB of garbage per request, which on the
// tool's single core showed up as scheduling delay and GC in the measured
// latency. The server side is unchanged: the same requests on 64 reused
// connections.
type pushConn struct {
	addr   string // host:port of the API
	prefix []byte // request line and fixed headers, up to "Content-Length: "
	c      net.Conn
	br     *bufio.Reader
	req    []byte // request being written
	pay    []byte // payload being encoded
	body   []byte // answer body
}

// errPushProto is an answer the sender cannot parse; the connection is
// closed and the push counted as failed.
var errPushProto = errors.New("loadgen: malformed push API answer")

// pushTimeout bounds one request, as the net/http client did.
const pushTimeout = 10 * time.Second

func newPushConn(t *Target) (*pushConn, error) {
	u, err := url.Parse(t.API)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("%w: push API %q must be http://host:port", ErrUsage, t.API)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	path := u.EscapedPath() + "/v1/apps/" + strconv.FormatUint(uint64(t.App), 10) + "/push"
	prefix := "POST " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Bearer " + t.APIKey +
		"\r\nContent-Type: application/json\r\nContent-Length: "
	return &pushConn{addr: addr, prefix: []byte(prefix)}, nil
}

// Close closes the connection, if open.
func (p *pushConn) Close() {
	if p.c != nil {
		_ = p.c.Close()
		p.c, p.br = nil, nil
	}
}

// push sends payload to uid through POST /v1/apps/{app}/push and returns
// how many connections the API says were online. It keeps neither uid nor
// payload: the caller may reuse them once it returns.
func (p *pushConn) push(ctx context.Context, uid []byte, payload []byte, qos int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if p.c == nil {
		d := net.Dialer{Timeout: pushTimeout}
		c, err := d.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return 0, fmt.Errorf("%w: push: %v", ErrTarget, err)
		}
		p.c, p.br = c, bufio.NewReaderSize(c, 4096)
	}
	p.req = p.appendRequest(p.req[:0], uid, payload, qos)
	_ = p.c.SetDeadline(time.Now().Add(pushTimeout))
	if _, err := p.c.Write(p.req); err != nil {
		p.Close()
		return 0, fmt.Errorf("%w: push: %v", ErrTarget, err)
	}
	status, keep, err := p.readAnswer()
	if err != nil {
		p.Close()
		return 0, fmt.Errorf("%w: push: %v", ErrTarget, err)
	}
	if !keep {
		p.Close()
	}
	switch {
	case status == 429: // Too Many Requests
		return 0, ErrRateLimited
	case status/100 != 2:
		return 0, fmt.Errorf("%w: push: %d %s", ErrTarget, status, bytes.TrimSpace(p.body))
	}
	return answerOnline(p.body), nil
}

// appendRequest builds the request: the same JSON body as API.md's push
// ({"uids":[uid],"data":base64,"qos":q,"ttl":60}).
func (p *pushConn) appendRequest(b []byte, uid []byte, payload []byte, qos int) []byte {
	n := base64.StdEncoding.EncodedLen(len(payload))
	if cap(p.pay) < n {
		p.pay = make([]byte, n)
	}
	enc := p.pay[:n]
	base64.StdEncoding.Encode(enc, payload)
	bodyLen := len(`{"uids":[],"data":"","qos":,"ttl":60}`) + jsonStringLen(uid) + n + len(strconv.Itoa(qos))
	b = append(b, p.prefix...)
	b = strconv.AppendInt(b, int64(bodyLen), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, `{"uids":[`...)
	b = appendJSONString(b, uid)
	b = append(b, `],"data":"`...)
	b = append(b, enc...)
	b = append(b, `","qos":`...)
	b = strconv.AppendInt(b, int64(qos), 10)
	b = append(b, `,"ttl":60}`...)
	return b
}

// jsonSafe reports whether c needs no escaping inside a JSON string
// (bytes of UTF-8 sequences pass as they are).
func jsonSafe(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' }

func jsonStringLen(s []byte) int {
	n := 2
	for i := 0; i < len(s); i++ {
		if jsonSafe(s[i]) {
			n++
		} else {
			n += 6 // \u00XX
		}
	}
	return n
}

// appendJSONString quotes s, writing control characters, quotes and
// backslashes as \u00XX.
func appendJSONString(b []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if jsonSafe(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
	}
	return append(b, '"')
}

// maxAnswer bounds an answer body the sender keeps (answers are ~60 bytes).
const maxAnswer = 64 << 10

// readAnswer reads one HTTP/1.1 answer into p.body: its status code and
// whether the connection stays open.
func (p *pushConn) readAnswer() (status int, keep bool, err error) {
	line, err := p.readLine()
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, errPushProto
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, errPushProto
	}
	keep = line[7] == '1' // HTTP/1.0 closes unless told otherwise; the API is 1.1
	length, chunked := -1, false
	for {
		h, err := p.readLine()
		if err != nil {
			return 0, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, errPushProto
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, false, errPushProto
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			keep = !asciiEqualFold(value, "close")
		}
	}
	p.body = p.body[:0]
	switch {
	case chunked:
		err = p.readChunked()
	case length >= 0:
		err = p.readBody(length)
	default: // no length: the body ends with the connection
		keep = false
		err = p.readBody(-1)
	}
	return status, keep, err
}

func (p *pushConn) readLine() ([]byte, error) {
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errPushProto
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// readBody reads n bytes (n < 0: up to EOF), keeping at most maxAnswer.
func (p *pushConn) readBody(n int) error {
	if n < 0 {
		b, err := io.ReadAll(io.LimitReader(p.br, maxAnswer))
		p.body = append(p.body, b...)
		return err
	}
	keep := min(n, maxAnswer)
	start := len(p.body)
	p.body = append(p.body, make([]byte, keep)...)
	if _, err := io.ReadFull(p.br, p.body[start:]); err != nil {
		return err
	}
	if n > keep {
		_, err := p.br.Discard(n - keep)
		return err
	}
	return nil
}

func (p *pushConn) readChunked() error {
	for {
		line, err := p.readLine()
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
		if err != nil {
			return errPushProto
		}
		if n == 0 { // trailers end with an empty line
			for {
				if line, err = p.readLine(); err != nil || len(line) == 0 {
					return err
				}
			}
		}
		if err := p.readBody(int(n)); err != nil {
			return err
		}
		if line, err = p.readLine(); err != nil || len(line) != 0 {
			return errPushProto
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// answerOnline reads "online" of the push answer ({"msg_id":..,"online":N,..}).
func answerOnline(body []byte) int {
	_, rest, ok := bytes.Cut(body, []byte(`"online":`))
	if !ok {
		return 0
	}
	rest = bytes.TrimLeft(rest, " ")
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// stampPayload sets the send time in a payload made by payload().
func stampPayload(b []byte, ts time.Time) { binary.BigEndian.PutUint64(b, uint64(ts.UnixNano())) }
