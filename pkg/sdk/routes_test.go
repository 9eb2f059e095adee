package sdk

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Route selection (docs/protocol.md "Route selection"): the last good
// address first, recent failures last, and the dispatcher's cached answer
// when it cannot be reached.
func TestCandidatesOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lastGood string
		failed   []string
		first    []string
		want     []string
	}{
		{"static order", "", nil, nil, []string{"a:1", "b:1", "c:1"}},
		{"last good first", "c:1", nil, nil, []string{"c:1", "a:1", "b:1"}},
		{"failed last", "c:1", []string{"c:1"}, nil, []string{"a:1", "b:1", "c:1"}},
		{"redirect first", "c:1", nil, []string{"r:1"}, []string{"r:1", "c:1", "a:1", "b:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{UID: "u", Token: "t", Addrs: []string{"a:1", "b:1", "c:1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.lastGood = tc.lastGood
			for _, f := range tc.failed {
				c.markFailed(f)
			}
			if got := c.candidates(context.Background(), tc.first, 0); !slices.Equal(got, tc.want) {
				t.Fatalf("candidates %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDispatchStaleCache(t *testing.T) {
	c, err := New(Config{UID: "u", Token: "t", Net: "wifi", DispatchURL: "http://127.0.0.1:1", DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.cache = dispatchCache{addrs: []string{"g:1"}, net: "wifi", expires: time.Now().Add(-time.Hour)}
	addrs, err := c.dispatch(context.Background(), 0)
	if err == nil || !slices.Equal(addrs, []string{"g:1"}) {
		t.Fatalf("dispatch with the dispatcher down: %v, %v; want the stale cache and an error", addrs, err)
	}
	c.cache.net = "4g" // another network's answer is not used
	if addrs, _ := c.dispatch(context.Background(), 0); len(addrs) != 0 {
		t.Fatalf("another network's cache used: %v", addrs)
	}
}
