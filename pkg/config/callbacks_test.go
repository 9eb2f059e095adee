package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func callbackApp(extra string) string {
	return `
admin_key: admin-key
apps:
  - id: 7
    secret: 0123456789abcdef
    api_key: key-7
    callback_url: https://chat.example/cb
` + extra
}

func TestCallbackSettings(t *testing.T) {
	c, err := Parse([]byte(callbackApp(`    callback_batch: 500
    status_debounce: 3s
    callback_routes:
      - {types: [1, 2], url: "http://a.example/up"}
      - {types: [65535, 0], url: "https://b.example/up"}
`)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.App(7)
	checks := []struct {
		name      string
		got, want any
	}{
		{"batch", a.CallbackBatch, 500},
		{"linger default", a.CallbackLinger, 50 * time.Millisecond},
		{"debounce", a.StatusDebounce, 3 * time.Second},
		{"debounce max default", a.StatusDebounceMax, 10000},
		{"route 1", a.UpstreamURL(1), "http://a.example/up"},
		{"route 2", a.UpstreamURL(2), "http://a.example/up"},
		{"route 0", a.UpstreamURL(0), "https://b.example/up"},
		{"route 65535", a.UpstreamURL(65535), "https://b.example/up"},
		{"unlisted type", a.UpstreamURL(3), "https://chat.example/cb"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	// Unprepared (built in code): the routes are scanned.
	b := App{CallbackURL: "http://x", CallbackRoutes: []CallbackRoute{{Types: []int{4}, URL: "http://y"}}}
	if b.UpstreamURL(4) != "http://y" || b.UpstreamURL(5) != "http://x" {
		t.Fatal("unprepared routes")
	}
}

func TestCallbackSettingsInvalid(t *testing.T) {
	tests := []struct {
		name, extra, want string
	}{
		{"negative batch", "    callback_batch: -1\n", "callback_batch out of range"},
		{"huge batch", "    callback_batch: 10001\n", "callback_batch out of range"},
		{"negative linger", "    callback_linger: -1ms\n", "callback_linger out of range"},
		{"long linger", "    callback_linger: 11s\n", "callback_linger out of range"},
		{"negative debounce", "    status_debounce: -1s\n", "status_debounce out of range"},
		{"long debounce", "    status_debounce: 2h\n", "status_debounce out of range"},
		{"debounce max", "    status_debounce_max: -3\n", "status_debounce_max out of range"},
		{"route url scheme", "    callback_routes: [{types: [1], url: \"ftp://a/b\"}]\n", "callback_routes[0].url must be an http(s) URL"},
		{"route url no host", "    callback_routes: [{types: [1], url: \"http://\"}]\n", "callback_routes[0].url must be an http(s) URL"},
		{"route url empty", "    callback_routes: [{types: [1]}]\n", "callback_routes[0].url must be an http(s) URL"},
		{"route type high", "    callback_routes: [{types: [65536], url: \"http://a/b\"}]\n", "type 65536 out of range"},
		{"route type negative", "    callback_routes: [{types: [-1], url: \"http://a/b\"}]\n", "type -1 out of range"},
		{"route no types", "    callback_routes: [{url: \"http://a/b\"}]\n", "callback_routes[0].types is empty"},
		{"type routed twice", "    callback_routes: [{types: [3], url: \"http://a/b\"}, {types: [3], url: \"http://c/d\"}]\n", "type 3 is routed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(callbackApp(tc.extra)))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}
