package loadgen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpush/lcpush/loadgen/naive"
)

// sustain against the naive server in this process: two runs, closed
// loop, every client checked, the spread computed.
func TestSustainAgainstNaive(t *testing.T) {
	// A queue per connection that holds a whole run: the naive server
	// drops what does not fit, and a closed loop outruns its writers.
	s := startNaiveWith(t, naive.Config{QueueLen: 1 << 16})
	out := t.TempDir()
	var stdout strings.Builder
	err := Main(context.Background(), []string{"sustain", "-quiet", "-room", s.Addr(),
		"-api", "http://" + s.HTTPAddr(), "-admin", "http://" + s.HTTPAddr(), "-pid", strconv.Itoa(os.Getpid()),
		"-n", "20", "-stream", "500ms", "-publishers", "2", "-runs", "2", "-drain", "5s", "-out", out}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("sustain: %v\n%s", err, stdout.String())
	}
	m, _ := filepath.Glob(filepath.Join(out, "sustain-runs-external-20-*", "result.json"))
	if len(m) != 1 {
		t.Fatalf("want one sustain result, got %v", m)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	var c SustainCompare
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Runs) != 2 || !c.Complete || c.Deliveries.Runs != 2 || c.Deliveries.Median <= 0 || c.Publishers != 2 {
		t.Fatalf("compare: %+v", c)
	}
	for i, r := range c.Runs {
		if r.Sent == 0 || r.Delivered != 20*r.Sent || r.Missing != 0 || r.WindowSec <= 0 || r.Calls != r.Sent+r.RateLimited {
			t.Errorf("run %d: %+v", i+1, r)
		}
	}
	if !strings.Contains(stdout.String(), "deliveries/s") {
		t.Errorf("summary missing:\n%s", stdout.String())
	}
}

// The publisher's request: one POST per message with the payload, the
// asked rate when given, the API key; a 429 is ErrRateLimited (the caller
// posts the same message again), another status an error.
func TestHTTPPublisher(t *testing.T) {
	cases := []struct {
		name     string
		rate     float64
		status   int
		wantRate any
		wantErr  error
	}{
		{"accepted, app's rate", 0, http.StatusAccepted, nil, nil},
		{"accepted, asked rate", 1e6, http.StatusAccepted, 1e6, nil},
		{"job slots full", 0, http.StatusTooManyRequests, nil, ErrRateLimited},
		{"refused", 0, http.StatusBadRequest, nil, ErrTarget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			var got map[string]any
			var auth string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				auth = r.Header.Get("Authorization")
				if r.URL.Path != "/v1/apps/1/broadcast" || json.NewDecoder(r.Body).Decode(&got) != nil {
					w.WriteHeader(http.StatusNotFound)
					return
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			p := newHTTPPublisher(&Target{API: srv.URL, App: 1, APIKey: "k"}, 1, tc.rate)
			defer p.close()
			pl := payload(64, time.Now(), 7)
			_, err := p.send(context.Background(), 0, pl, nil)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("send: %v, want %v", err, tc.wantErr)
			}
			if calls.Load() != 1 || auth != "Bearer k" {
				t.Fatalf("%d calls, Authorization %q", calls.Load(), auth)
			}
			data, _ := base64.StdEncoding.DecodeString(got["data"].(string))
			if string(data) != string(pl) || got["qos"] != 0.0 || got["rate"] != tc.wantRate {
				t.Fatalf("body %v", got)
			}
		})
	}
}
