package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

// span is one authenticated connection of a device.
type span struct {
	start, end time.Time // end zero: still open
	room       string
}

// device is one raw-protocol client: it asks the dispatcher for rooms,
// connects, AUTHs, ACKs every QoS 1 push (one ACK frame per batch read),
// PINGs at the negotiated heartbeat, and connects again only when the
// server closed the connection (or a REDIRECT asks it to move). The tool
// never closes a connection itself before the end of the run.
type device struct {
	idx int
	uid string

	mu    sync.Mutex
	spans []span // spans[g-1] is connection generation g
	up    bool
}

// state returns the current generation (0: never connected), whether it
// is up, and since when.
func (d *device) state() (gen int, up bool, since time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gen = len(d.spans)
	if gen > 0 {
		since = d.spans[gen-1].start
	}
	return gen, d.up, since
}

// spanOf returns connection generation g (1-based).
func (d *device) spanOf(g int) (span, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if g < 1 || g > len(d.spans) {
		return span{}, false
	}
	return d.spans[g-1], true
}

// fleet runs the devices.
type fleet struct {
	devs     []*device
	rec      *recorder
	dispatch string
	rooms    []string
	hb       int
	wg       sync.WaitGroup

	authFails  atomic.Int64 // connection closed or ERROR before AUTH_OK
	dialFails  atomic.Int64
	kicks      atomic.Int64
	frameErrs  atomic.Int64 // ERROR frames after AUTH_OK (an ACK refused, ...)
	redirects  atomic.Int64
	dispatchOK atomic.Int64
	hc         *http.Client
}

func newFleet(n int, prefix string, dispatch string, rooms []string, rec *recorder) *fleet {
	f := &fleet{rec: rec, dispatch: dispatch, rooms: rooms, hb: 30, hc: &http.Client{Timeout: 3 * time.Second}}
	for i := range n {
		f.devs = append(f.devs, &device{idx: i, uid: prefix + strconv.Itoa(i)})
	}
	return f
}

func (f *fleet) start(ctx context.Context) {
	for _, d := range f.devs {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.run(ctx, d) }()
	}
}

// upCount is the number of devices with an authenticated connection.
func (f *fleet) upCount() int {
	n := 0
	for _, d := range f.devs {
		if _, up, _ := d.state(); up {
			n++
		}
	}
	return n
}

// onRoom is the number of devices connected to the room at addr.
func (f *fleet) onRoom(addr string) int {
	n := 0
	for _, d := range f.devs {
		d.mu.Lock()
		if d.up && d.spans[len(d.spans)-1].room == addr {
			n++
		}
		d.mu.Unlock()
	}
	return n
}

// connections is the number of connections the devices made.
func (f *fleet) connections() int {
	n := 0
	for _, d := range f.devs {
		g, _, _ := d.state()
		n += g
	}
	return n
}

// pick asks the dispatcher for rooms (the tool's known rooms when it does
// not answer) and returns one of them.
func (f *fleet) pick(d *device, failed string) string {
	q := url.Values{"uid": {d.uid}, "app": {strconv.Itoa(appID)}}
	if failed != "" {
		q.Set("failed", failed)
		q.Set("retry", "1")
	}
	if resp, err := f.hc.Get(f.dispatch + "/v1/dispatch?" + q.Encode()); err == nil {
		var out struct{ Addrs []string }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err == nil && resp.StatusCode == 200 && len(out.Addrs) > 0 {
			f.dispatchOK.Add(1)
			return out.Addrs[0]
		}
	}
	return f.rooms[rand.IntN(len(f.rooms))]
}

var errRedirect = errors.New("redirect")

func (f *fleet) run(ctx context.Context, d *device) {
	backoff := 100 * time.Millisecond
	failed, next := "", ""
	for ctx.Err() == nil {
		addr := next
		if addr == "" {
			addr = f.pick(d, failed)
		}
		next = ""
		began := time.Now()
		red, err := f.session(ctx, d, addr)
		if ctx.Err() != nil {
			return
		}
		failed = ""
		var wait time.Duration
		switch {
		case errors.Is(err, errRedirect) && len(red.Addrs) > 0:
			next, wait = red.Addrs[rand.IntN(len(red.Addrs))], time.Duration(red.AfterMS)*time.Millisecond
		case time.Since(began) > 10*time.Second:
			backoff = 100 * time.Millisecond
			wait = backoff + rand.N(200*time.Millisecond)
		default:
			failed = addr
			wait = backoff + rand.N(backoff)
			backoff = min(2*backoff, 2*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session is one connection: it returns when the server closes it (or on
// a REDIRECT, whose addresses it returns).
func (f *fleet) session(ctx context.Context, d *device, addr string) (proto.Redirect, error) {
	var red proto.Redirect
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		f.dialFails.Add(1)
		return red, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	tok := token.Sign([]byte(secret), appID, d.uid, time.Now().Add(24*time.Hour).Unix())
	auth := proto.AppendJSON(nil, proto.Header{Op: proto.OpAuth, App: appID},
		proto.Auth{UID: d.uid, Token: tok, HB: f.hb, SDK: "chaos"})
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(auth); err != nil {
		f.authFails.Add(1)
		return red, err
	}
	dec := proto.NewDecoder(c, 0)
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	fr, err := dec.Next()
	if err != nil || fr.Op != proto.OpAuthOK {
		f.authFails.Add(1)
		f.rec.authFail(time.Now())
		if err == nil {
			err = fmt.Errorf("AUTH answered with op %d: %s", fr.Op, fr.Body)
		}
		return red, err
	}
	var ok proto.AuthOK
	_ = proto.DecodeJSON(fr.Body, &ok)
	hb := time.Duration(max(ok.HB, 1)) * time.Second
	d.mu.Lock()
	d.spans = append(d.spans, span{start: time.Now(), room: addr})
	gen := len(d.spans)
	d.up = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.spans[gen-1].end = time.Now()
		d.up = false
		d.mu.Unlock()
	}()

	// The writer: ACKs (every id read so far, one frame) and PINGs.
	acks := make(chan uint64, 1<<16)
	done := make(chan struct{})
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		ping := time.NewTicker(hb * 2 / 3)
		defer ping.Stop()
		ids := make([]uint64, 0, 256)
		var buf []byte
		var seq uint32
		for {
			buf = buf[:0]
			select {
			case <-done:
				return
			case id := <-acks:
				ids = append(ids[:0], id)
			drain:
				for len(ids) < proto.MaxAckIDs {
					select {
					case id := <-acks:
						ids = append(ids, id)
					default:
						break drain
					}
				}
				seq++
				buf = proto.AppendAck(buf, seq, ids)
			case <-ping.C:
				buf = proto.AppendHeader(buf, proto.Header{Op: proto.OpPing}, 0)
			}
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(buf); err != nil {
				c.Close()
				return
			}
		}
	}()
	defer func() { close(done); <-wdone }()

	for {
		// The server PONGs every PING: silence for 3 heartbeats is a dead peer.
		_ = c.SetReadDeadline(time.Now().Add(3 * hb))
		fr, err := dec.Next()
		if err != nil {
			return red, err
		}
		switch fr.Op {
		case proto.OpPush:
			id, _, err := proto.ParsePush(fr.Body)
			if err != nil {
				return red, err
			}
			f.rec.delivered(id, d.idx, gen, time.Now())
			if fr.Flags&proto.FlagAckRequired != 0 {
				acks <- id
			}
		case proto.OpError:
			f.frameErrs.Add(1)
		case proto.OpKick:
			f.kicks.Add(1)
		case proto.OpRedirect:
			f.redirects.Add(1)
			if proto.DecodeJSON(fr.Body, &red) == nil {
				return red, errRedirect
			}
		}
	}
}
