package loadgen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pushServer answers POST /v1/apps/1/push like the API, checking the
// request; answer picks the reply per request number.
func pushServer(t *testing.T, answer func(w http.ResponseWriter, n int)) (*Target, *atomic.Int32) {
	t.Helper()
	var conns, n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/apps/1/push" ||
			r.Header.Get("Authorization") != "Bearer k1" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		var body struct {
			UIDs []string `json:"uids"`
			Data string   `json:"data"`
			QoS  *int     `json:"qos"`
			TTL  *int     `json:"ttl"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		p, err := base64.StdEncoding.DecodeString(body.Data)
		if err != nil || len(body.UIDs) != 1 || body.UIDs[0] != "lg-7" || string(p) != "payload" ||
			body.QoS == nil || *body.QoS != 1 || body.TTL == nil || *body.TTL != 60 {
			http.Error(w, "unexpected body", http.StatusBadRequest)
			return
		}
		answer(w, int(n.Add(1)))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return &Target{API: srv.URL, App: 1, APIKey: "k1"}, &conns
}

func TestPushConn(t *testing.T) {
	ok := func(w http.ResponseWriter, _ int) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"msg_id":"12","online":3,"stored":1}`+"\n")
	}
	tests := []struct {
		name      string
		answer    func(w http.ResponseWriter, n int)
		online    int
		err       error // errors.Is; nil: success
		wantConns int32 // TCP connections for three pushes
	}{
		{"keep-alive", ok, 3, nil, 1},
		{"chunked answer", func(w http.ResponseWriter, _ int) {
			io.WriteString(w, `{"msg_id":"12",`)
			w.(http.Flusher).Flush() // no Content-Length: chunked
			io.WriteString(w, `"online":2,"stored":1}`)
		}, 2, nil, 1},
		{"connection close", func(w http.ResponseWriter, n int) {
			w.Header().Set("Connection", "close")
			ok(w, n)
		}, 3, nil, 3},
		{"rate limited", func(w http.ResponseWriter, _ int) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"rate_limited","message":"x"}}`)
		}, 0, ErrRateLimited, 1},
		{"unavailable", func(w http.ResponseWriter, _ int) {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"x"}}`)
		}, 0, ErrTarget, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, conns := pushServer(t, tc.answer)
			pc, err := newPushConn(target)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 0; i < 3; i++ {
				online, err := pc.push(ctx, []byte("lg-7"), []byte("payload"), 1)
				if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("push %d: %v, want %v", i, err, tc.err)
				}
				if online != tc.online {
					t.Fatalf("push %d: online %d, want %d", i, online, tc.online)
				}
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Fatalf("%d connections, want %d", got, tc.wantConns)
			}
		})
	}
}

// TestPushConnServerGone: a dead connection fails one push, the next one
// dials again.
func TestPushConnServerGone(t *testing.T) {
	ok := func(w http.ResponseWriter, _ int) { io.WriteString(w, `{"online":1}`) }
	target, conns := pushServer(t, ok)
	pc, err := newPushConn(target)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx := context.Background()
	if _, err := pc.push(ctx, []byte("lg-7"), []byte("payload"), 1); err != nil {
		t.Fatal(err)
	}
	pc.c.Close() // as if the server had closed it
	if _, err := pc.push(ctx, []byte("lg-7"), []byte("payload"), 1); !errors.Is(err, ErrTarget) {
		t.Fatalf("push on a closed connection: %v", err)
	}
	if n, err := pc.push(ctx, []byte("lg-7"), []byte("payload"), 1); err != nil || n != 1 {
		t.Fatalf("push after redial: %d %v", n, err)
	}
	if got := conns.Load(); got != 2 {
		t.Fatalf("%d connections, want 2", got)
	}
}

func TestPushConnRequestJSON(t *testing.T) {
	pc := &pushConn{prefix: []byte("P\r\nContent-Length: ")}
	for _, uid := range []string{"lg-1", "a\"b\\c", "\x01\té"} {
		req := string(pc.appendRequest(nil, []byte(uid), []byte{0, 1, 2, 250}, 0))
		head, body, ok := strings.Cut(req, "\r\n\r\n")
		if !ok || !strings.HasSuffix(head, ": "+strconv.Itoa(len(body))) {
			t.Fatalf("%q: length header does not match the body", req)
		}
		var got struct {
			UIDs []string `json:"uids"`
			Data []byte   `json:"data"`
			QoS  int      `json:"qos"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.UIDs) != 1 || got.UIDs[0] != uid ||
			string(got.Data) != "\x00\x01\x02\xfa" || got.QoS != 0 {
			t.Fatalf("%q decodes to %+v (%v)", body, got, err)
		}
	}
}

func BenchmarkPushConn(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"msg_id":"1","online":1,"stored":1}`)
	}))
	defer srv.Close()
	pc, err := newPushConn(&Target{API: srv.URL, App: 1, APIKey: "k"})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	pay, uid := payload(256, time.Now(), 0), []byte("lg-123")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pc.push(ctx, uid, pay, 1); err != nil {
			b.Fatal(err)
		}
	}
}
