package testkit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Product is a product's callback endpoint (docs/api.md "Callbacks to
// products"): it checks every POST's signature with the app secret and
// records each signed POST's events (a batched body's "events", or the one
// event of a plain body). A POST with a bad signature is answered 401 and
// counted; CheckSignatures fails the test for it.
type Product struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	posts  [][]map[string]any
	badSig int
}

// NewProduct starts a product endpoint verifying signatures with secret;
// it stops when the test ends.
func NewProduct(t testing.TB, secret string) *Product {
	p := &Product{t: t}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if !hmac.Equal([]byte(r.Header.Get("X-Push-Signature")), []byte(hex.EncodeToString(mac.Sum(nil)))) {
			p.mu.Lock()
			p.badSig++
			p.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var events []map[string]any
		if strings.HasPrefix(string(body), `{"events":`) {
			var b struct {
				Events []map[string]any `json:"events"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			events = b.Events
		} else {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			events = []map[string]any{m}
		}
		p.mu.Lock()
		p.posts = append(p.posts, events)
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// URL is the endpoint's address (an app's callback_url or a route's url).
func (p *Product) URL() string { return p.srv.URL }

// Status returns, per uid, the status events ("online"/"offline") received
// for it in order, and the number of POSTs that carried at least one event
// named which.
func (p *Product) Status(which string) (byUID map[string][]string, posts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	byUID = map[string][]string{}
	for _, evs := range p.posts {
		has := false
		for _, e := range evs {
			if ev, ok := e["event"].(string); ok {
				uid := fmt.Sprint(e["uid"])
				byUID[uid] = append(byUID[uid], ev)
				has = has || ev == which
			}
		}
		if has {
			posts++
		}
	}
	return byUID, posts
}

// StatusCount is how many events named event uid got.
func (p *Product) StatusCount(uid, event string) int {
	by, _ := p.Status(event)
	n := 0
	for _, e := range by[uid] {
		if e == event {
			n++
		}
	}
	return n
}

// Upstream is one upstream event received.
type Upstream struct {
	App  uint32
	UID  string
	Type int
	Data string
}

// Upstreams returns the upstream events received, in order.
func (p *Product) Upstreams() []Upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Upstream
	for _, evs := range p.posts {
		for _, e := range evs {
			if tp, ok := e["type"].(float64); ok {
				data, _ := base64.StdEncoding.DecodeString(fmt.Sprint(e["data"]))
				app, _ := e["app"].(float64)
				out = append(out, Upstream{App: uint32(app), UID: fmt.Sprint(e["uid"]), Type: int(tp), Data: string(data)})
			}
		}
	}
	return out
}

// CheckSignatures fails the test if any POST had a bad signature.
func (p *Product) CheckSignatures() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.badSig != 0 {
		p.t.Fatalf("%d callbacks with a bad signature", p.badSig)
	}
}

// LargestPost is the most events one POST carried.
func (p *Product) LargestPost() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, evs := range p.posts {
		n = max(n, len(evs))
	}
	return n
}
