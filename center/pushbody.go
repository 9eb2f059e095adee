package center

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The push body's fast path (issue 16, "Fewer allocations per push"):
// encoding/json's Decoder costs ~1.4 KB and ~20 allocations per push
// (the decoder, its buffer, reflection, the *string and *int boxes and a
// copy of the payload on the way to push.Message). parsePushBody reads the
// common body - one object of "uids", "text" or "data", "qos", "ttl", in
// their exact spelling, each at most once - straight from the request's
// bytes. It is only ever a shortcut: whatever it does not accept (another
// spelling, a duplicate, null, an escape it does not know, invalid UTF-8, a
// number that is not a plain integer, text and data together, anything
// unknown) goes through encoding/json as before, so every error answer and
// every decoded value is encoding/json's. FuzzPushBody checks that whatever
// it accepts, encoding/json accepts with the same values.

// bodyPool holds the buffers a request body is read into.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledBody bounds a body buffer kept for reuse: a large payload's
// buffer is left to the GC.
const maxPooledBody = 64 << 10

// readBody reads the whole request body into a pooled buffer (put it back
// with putBody). over is true when the body is longer than maxBody: buf
// then holds its first maxBody+1 bytes and the rest is unread.
func readBody(r *http.Request) (bp *[]byte, over bool, err error) {
	bp = bodyPool.Get().(*[]byte)
	b := (*bp)[:0]
	if n := r.ContentLength; n > 0 && n <= maxBody && int(n) > cap(b) {
		b = make([]byte, 0, n+1) // +1: the EOF read needs no growth
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, e := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if len(b) > maxBody {
			*bp = b
			return bp, true, nil
		}
		if e == io.EOF {
			// Closed once read to its end, net/http has nothing to
			// discard after the handler: an unclosed body costs an
			// io.CopyN (and its LimitedReader) per request.
			r.Body.Close()
			*bp = b
			return bp, false, nil
		}
		if e != nil {
			*bp = b
			return bp, false, e
		}
	}
}

func putBody(bp *[]byte) {
	if cap(*bp) <= maxPooledBody {
		*bp = (*bp)[:0]
		bodyPool.Put(bp)
	}
}

// fastPush is what parsePushBody found: uids and the payload (text as is,
// data decoded), qos and ttl when given.
type fastPush struct {
	uids    []string
	payload []byte
	qos     int
	ttl     int
	hasQoS  bool
	hasTTL  bool
}

// errNotFast means the body is not in the fast path's form: encoding/json
// decides.
var errNotFast = errors.New("not the fast form")

// pushParser walks one body. scratch holds an unescaped string.
type pushParser struct {
	b       []byte
	i       int
	scratch []byte
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *pushParser) skipSpace() {
	for p.i < len(p.b) && isJSONSpace(p.b[p.i]) {
		p.i++
	}
}

// next returns the next non-space byte without consuming it (0 at the end).
func (p *pushParser) next() byte {
	p.skipSpace()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

// str reads a JSON string and returns its value: a slice of the body when
// it holds no escape, else of p.scratch (valid until the next str). It
// refuses (errNotFast) invalid UTF-8, control characters, unknown escapes
// and lone surrogates: encoding/json replaces those, or refuses them.
func (p *pushParser) str() ([]byte, error) {
	if p.next() != '"' {
		return nil, errNotFast
	}
	p.i++
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !utf8.Valid(s) {
				return nil, errNotFast
			}
			return s, nil
		case c == '\\':
			return p.strEscaped(start)
		case c < 0x20:
			return nil, errNotFast
		}
		p.i++
	}
	return nil, errNotFast
}

// strEscaped finishes a string that has an escape at p.i.
func (p *pushParser) strEscaped(start int) ([]byte, error) {
	out := append(p.scratch[:0], p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			p.scratch = out
			if !utf8.Valid(out) {
				return nil, errNotFast
			}
			return out, nil
		case c < 0x20:
			return nil, errNotFast
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			return nil, errNotFast
		}
		e := p.b[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, errNotFast
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by \u and a low one is a
				// rune; encoding/json makes U+FFFD of anything else.
				if r >= 0xDC00 || p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
					return nil, errNotFast
				}
				p.i += 2
				r2, ok := p.hex4()
				if !ok {
					return nil, errNotFast
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return nil, errNotFast
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, errNotFast
		}
	}
	return nil, errNotFast
}

func (p *pushParser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}

// integer reads a JSON number that is a plain integer (no fraction, no
// exponent) of at most 15 digits: what encoding/json puts into an int.
func (p *pushParser) integer() (int, error) {
	p.skipSpace()
	neg := false
	if p.i < len(p.b) && p.b[p.i] == '-' {
		neg = true
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || n > 15 || (n > 1 && p.b[digits] == '0') {
		return 0, errNotFast
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, errNotFast
		}
	}
	v, err := strconv.Atoi(string(p.b[digits:p.i]))
	if err != nil {
		return 0, errNotFast
	}
	if neg {
		v = -v
	}
	return v, nil
}

// parsePushBody parses the fast form of a push body (see above), or
// returns errNotFast. The uids and the payload are copies: b may be reused.
func parsePushBody(b []byte, f *fastPush) error {
	p := pushParser{b: b}
	if p.next() != '{' {
		return errNotFast
	}
	p.i++
	var seen uint8
	const (
		kUIDs = 1 << iota
		kText
		kData
		kQoS
		kTTL
	)
	first := true
	for {
		c := p.next()
		if c == '}' && first {
			break // {}: refused below, encoding/json and the checks say why
		}
		if !first {
			if c == '}' {
				break
			}
			if c != ',' {
				return errNotFast
			}
			p.i++
		}
		first = false
		key, err := p.str()
		if err != nil {
			return err
		}
		// Only the exact spelling (escapes decoded, as encoding/json
		// compares): its case-insensitive match (with Unicode folding) of
		// another spelling is left to it.
		if p.next() != ':' {
			return errNotFast
		}
		p.i++
		var bit uint8
		switch string(key) {
		case "uids":
			bit = kUIDs
		case "text":
			bit = kText
		case "data":
			bit = kData
		case "qos":
			bit = kQoS
		case "ttl":
			bit = kTTL
		default:
			return errNotFast
		}
		if seen&bit != 0 {
			return errNotFast
		}
		seen |= bit
		switch bit {
		case kUIDs:
			if err := p.uids(f); err != nil {
				return err
			}
		case kText:
			s, err := p.str()
			if err != nil {
				return err
			}
			f.payload = append(make([]byte, 0, len(s)), s...)
		case kData:
			s, err := p.str()
			if err != nil {
				return err
			}
			dst := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			n, err := base64.StdEncoding.Decode(dst, s)
			if err != nil {
				return errNotFast
			}
			f.payload = dst[:n]
		case kQoS:
			if f.qos, err = p.integer(); err != nil {
				return err
			}
			f.hasQoS = true
		case kTTL:
			if f.ttl, err = p.integer(); err != nil {
				return err
			}
			f.hasTTL = true
		}
	}
	p.i++
	if p.skipSpace(); p.i != len(p.b) { // trailing data
		return errNotFast
	}
	if seen&(kText|kData) == 0 || seen&(kText|kData) == kText|kData || seen&kUIDs == 0 {
		return errNotFast // encoding/json, then the checks, say what is missing
	}
	return nil
}

// uids reads the uid array: strings only, at least one.
func (p *pushParser) uids(f *fastPush) error {
	if p.next() != '[' {
		return errNotFast
	}
	p.i++
	f.uids = f.uids[:0]
	for {
		s, err := p.str()
		if err != nil {
			return err
		}
		f.uids = append(f.uids, string(s))
		switch p.next() {
		case ',':
			p.i++
		case ']':
			p.i++
			return nil
		default:
			return errNotFast
		}
	}
}

// decodePushBody decodes the body of POST /v1/apps/{app}/push: into fast
// when the body is in the fast form (req is then nil), else into req with
// encoding/json by decodeBody's rules and answers.
func decodePushBody(w http.ResponseWriter, r *http.Request, fast *fastPush) (req *pushRequest, e *apiError) {
	bp, over, err := readBody(r)
	defer putBody(bp)
	switch {
	case over:
		// Let encoding/json meet the limit where it meets it (a syntax
		// error before it is a 400): what was read, then the rest.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(*bp), r.Body))
	case err != nil:
		return nil, badRequest("invalid JSON body: " + err.Error())
	case parsePushBody(*bp, fast) == nil:
		return nil, nil
	default:
		r.Body = io.NopCloser(bytes.NewReader(*bp))
	}
	req = new(pushRequest)
	if e := decodeBody(w, r, req, false); e != nil {
		return nil, e
	}
	return req, nil
}

func (f *fastPush) qosField() *int {
	if !f.hasQoS {
		return nil
	}
	return &f.qos
}

func (f *fastPush) ttlField() *int {
	if !f.hasTTL {
		return nil
	}
	return &f.ttl
}

// pushCtxs is the deadline the push handler's calls share: creating a
// context with a timeout per call (a timer, a cancel context registered
// in its parent) was ~1.7 KB of a push's allocations. A call made while
// an entry is current gets its context, whose deadline is at least
// CallTimeout away (CallTimeout + slice from the entry's start); a new
// entry is made every slice. They have no parent: the calls of an accepted
// push finish even if its caller leaves, as they did on
// context.WithoutCancel of the request's.
type pushCtxs struct {
	cur atomic.Pointer[pushCtxEntry]
}

type pushCtxEntry struct {
	ctx    context.Context
	cancel context.CancelFunc // not called: the deadline ends it
	until  time.Time          // new calls take a new entry from then on
}

// pushCtxSlices is how many entries one CallTimeout spans.
const pushCtxSlices = 16

// pushCtx returns a context whose deadline is at least CallTimeout away.
func (s *Service) pushCtx() context.Context {
	now := time.Now()
	if e := s.pushCtxs.cur.Load(); e != nil && now.Before(e.until) {
		return e.ctx
	}
	slice := s.cfg.CallTimeout / pushCtxSlices
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(s.cfg.CallTimeout+slice))
	e := &pushCtxEntry{ctx: ctx, cancel: cancel, until: now.Add(slice)}
	s.pushCtxs.cur.Store(e)
	return ctx
}
