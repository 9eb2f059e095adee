package config

import (
	"strings"
	"testing"
)

// TestSendQueueDefaults: push_queue defaults to 60 s of push_rate (rounded
// up), push_queue_bytes to 64 MiB; a negative push_queue (no queue) is
// allowed, negative bytes are not.
func TestSendQueueDefaults(t *testing.T) {
	base := "admin_key: a\napps:\n  - {id: 1, secret: 0123456789abcdef, api_key: k1%s}\n"
	for _, tc := range []struct {
		extra     string
		queue     int
		bytes     int64
		wantError string
	}{
		{"", 60000, 64 << 20, ""},
		{", push_rate: 2.5", 150, 64 << 20, ""},
		{", push_rate: 0.01", 1, 64 << 20, ""},
		{", push_queue: 10, push_queue_bytes: 4096", 10, 4096, ""},
		{", push_queue: -1", -1, 64 << 20, ""},
		{", push_queue_bytes: -1", 0, 0, "negative push_queue_bytes"},
	} {
		c, err := Parse([]byte(strings.Replace(base, "%s", tc.extra, 1)))
		if tc.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("%q: error %v, want %q", tc.extra, err, tc.wantError)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if a := c.Apps[0]; a.PushQueue != tc.queue || a.PushQueueBytes != tc.bytes {
			t.Errorf("%q: push_queue %d push_queue_bytes %d, want %d %d", tc.extra, a.PushQueue, a.PushQueueBytes, tc.queue, tc.bytes)
		}
	}
}
