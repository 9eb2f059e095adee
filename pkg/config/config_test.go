package config

import (
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const validYAML = `
admin_key: admin-key
apps:
  - id: 7
    name: chat
    secret: 0123456789abcdef
    api_key: key-7
    callback_url: https://chat.example/cb
  - id: 8
    secret: fedcba9876543210xx
    api_key: key-8
    max_payload: 2048
    push_rate: 10
room:
  heartbeat_min: 20
  heartbeat_max: 300
  heartbeat_default: 30
  deny: [10.0.0.5]
`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := c.App(7)
	if !ok || a.Name != "chat" || a.Secret != "0123456789abcdef" {
		t.Fatalf("App(7) = %+v, %v", a, ok)
	}
	if b, ok := c.AppByKey("key-8"); !ok || b.ID != 8 {
		t.Fatalf("AppByKey(key-8) = %+v, %v", b, ok)
	}
	if _, ok := c.App(9); ok {
		t.Fatal("App(9) found")
	}
	if _, ok := c.AppByKey("admin-key"); ok {
		t.Fatal("admin key found as an app key")
	}
	// Explicit values kept, the rest defaulted.
	checks := []struct {
		name      string
		got, want any
	}{
		{"hb min", c.Room.HeartbeatMin, 20},
		{"hb max", c.Room.HeartbeatMax, 300},
		{"hb default", c.Room.HeartbeatDefault, 30},
		{"hb grace", c.Room.HeartbeatGrace, 10 * time.Second},
		{"auth deadline", c.Room.AuthDeadline, 10 * time.Second},
		{"token skew", c.Room.TokenSkew, time.Minute},
		{"max conns", c.Room.MaxConns, 18000},
		{"max frame", c.Room.MaxFrame, 65536 + 12},
		{"max pending", c.Room.MaxPending, 64},
		{"default ttl", c.Center.DefaultTTL, 86400},
		{"max ttl", c.Center.MaxTTL, 7 * 86400},
		{"job keep", c.Center.JobKeep, time.Hour},
		{"workers", c.Coordinator.Workers, 16},
		{"retries", c.Coordinator.Retries, 3},
		{"expire every", c.Saver.ExpireEvery, time.Minute},
		{"app7 max payload", c.Apps[0].MaxPayload, 4096},
		{"app7 push rate", c.Apps[0].PushRate, 1000.0},
		{"app7 push burst", c.Apps[0].PushBurst, 100},
		{"app7 broadcast rate", c.Apps[0].BroadcastRate, 50000.0},
		{"app7 callback queue", c.Apps[0].CallbackQueue, 1024},
		{"app8 max payload", c.Apps[1].MaxPayload, 2048},
		{"app8 push burst", c.Apps[1].PushBurst, 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v; want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Defaults()
	if c.Room.HeartbeatDefault != 60 || c.Room.HeartbeatMin != 10 || c.Room.HeartbeatMax != 600 {
		t.Fatalf("heartbeat defaults %+v", c.Room)
	}
	if c.Room.MaxFrame != 65548 || len(c.Apps) != 0 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestParseRejects(t *testing.T) {
	app := func(extra string) string {
		return "admin_key: a\napps:\n  - id: 1\n    secret: 0123456789abcdef\n    api_key: k1\n" + extra
	}
	tests := []struct {
		name string
		yaml string
		want string // substring of the error
	}{
		{"unknown top field", app("bogus: 1\n"), "bogus"},
		{"unknown app field", app("    secrett: x\n"), "secrett"},
		{"unknown room field", app("room:\n  heartbeat: 5\n"), "heartbeat"},
		{"duplicate yaml key", app("room:\n  max_conns: 5\n  max_conns: 6\n"), "already defined"},
		{"wrong type", app("room:\n  max_conns: lots\n"), "lots"},
		{"no admin key", "apps: []\n", "admin_key"},
		{"app id 0", "admin_key: a\napps:\n  - id: 0\n    secret: 0123456789abcdef\n    api_key: k\n", "reserved"},
		{"duplicate app id", app("  - id: 1\n    secret: 0123456789abcdef\n    api_key: k2\n"), "duplicate id 1"},
		{"duplicate api key", app("  - id: 2\n    secret: 0123456789abcdef\n    api_key: k1\n"), "api_key is not unique"},
		{"api key equals admin key", "admin_key: k\napps:\n  - id: 1\n    secret: 0123456789abcdef\n    api_key: k\n", "not unique"},
		{"empty api key", "admin_key: a\napps:\n  - id: 1\n    secret: 0123456789abcdef\n", "api_key is empty"},
		{"short secret", "admin_key: a\napps:\n  - id: 1\n    secret: 0123456789abcde\n    api_key: k\n", "shorter than 16"},
		{"callback not http", app("    callback_url: ftp://x\n"), "callback_url"},
		{"max payload too big", app("    max_payload: 2000000\n"), "max_payload"},
		{"negative rate", app("    push_rate: -1\n"), "negative rate"},
		{"hb min 0 after default", app("room:\n  heartbeat_min: -1\n"), "heartbeat"},
		{"hb min above max", app("room:\n  heartbeat_min: 100\n  heartbeat_max: 50\n  heartbeat_default: 60\n"), "heartbeat"},
		{"hb default below min", app("room:\n  heartbeat_min: 30\n  heartbeat_default: 20\n"), "heartbeat"},
		{"hb default above max", app("room:\n  heartbeat_max: 50\n  heartbeat_default: 60\n"), "heartbeat"},
		{"max frame small", app("room:\n  max_frame: 11\n"), "max_frame"},
		{"max frame huge", app("room:\n  max_frame: 20000000\n"), "max_frame"},
		{"negative max conns", app("room:\n  max_conns: -1\n"), "max_conns"},
		{"bad allow cidr", app("room:\n  allow: [10.0.0.0/33]\n"), "room.allow"},
		{"bad deny ip", app("room:\n  deny: [not-an-ip]\n"), "room.deny"},
		{"ttl order", app("center:\n  default_ttl: 100\n  max_ttl: 50\n"), "default_ttl"},
		{"job keep below a minute", app("center:\n  job_keep: 59s\n"), "job_keep"},
		{"job keep above 30 days", app("center:\n  job_keep: 721h\n"), "job_keep"},
		{"bolt batch delay too short", app("saver:\n  bolt_batch_delay: 50us\n"), "bolt_batch_delay"},
		{"bolt batch delay too long", app("saver:\n  bolt_batch_delay: 51ms\n"), "bolt_batch_delay"},
		{"not yaml", "{", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v; want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("apps:\n  - id: 0\n    secret: x\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"admin_key", "reserved", "shorter than 16", "api_key is empty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c, err := Parse([]byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(b)
	if err != nil {
		t.Fatalf("re-parse of marshalled config: %v\n%s", err, b)
	}
	if a, _ := c2.App(8); a.MaxPayload != 2048 || c2.Room.HeartbeatDefault != 30 {
		t.Fatalf("round trip lost values: %+v %+v", a, c2.Room)
	}
}

func TestIPAllowed(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []string
		ip          string
		want        bool
	}{
		{"no lists", nil, nil, "1.2.3.4", true},
		{"denied ip", nil, []string{"1.2.3.4"}, "1.2.3.4", false},
		{"other ip not denied", nil, []string{"1.2.3.4"}, "1.2.3.5", true},
		{"denied cidr", nil, []string{"10.0.0.0/8"}, "10.200.1.1", false},
		{"unmasked cidr", nil, []string{"10.1.2.3/8"}, "10.9.9.9", false},
		{"allowed cidr", []string{"192.168.0.0/16"}, nil, "192.168.5.5", true},
		{"outside allow", []string{"192.168.0.0/16"}, nil, "8.8.8.8", false},
		{"deny beats allow", []string{"192.168.0.0/16"}, []string{"192.168.1.0/24"}, "192.168.1.7", false},
		{"mapped v4 denied", nil, []string{"1.2.3.4"}, "::ffff:1.2.3.4", false},
		{"mapped v4 allowed", []string{"1.2.3.0/24"}, nil, "::ffff:1.2.3.9", true},
		{"v6 allow", []string{"2001:db8::/32"}, nil, "2001:db8::1", true},
		{"v6 outside", []string{"2001:db8::/32"}, nil, "2001:db9::1", false},
		{"v4 vs v6 list", []string{"2001:db8::/32"}, nil, "1.2.3.4", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{AdminKey: "a", Room: Room{Allow: tt.allow, Deny: tt.deny}}
			if err := c.Prepare(); err != nil {
				t.Fatal(err)
			}
			if got := c.Room.IPAllowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Fatalf("IPAllowed(%s) = %v; want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestClampHeartbeat(t *testing.T) {
	r := Room{HeartbeatMin: 10, HeartbeatMax: 600, HeartbeatDefault: 60}
	tests := []struct{ in, want int }{
		{-5, 60}, {0, 60}, {1, 10}, {9, 10}, {10, 10}, {45, 45}, {600, 600}, {601, 600}, {1 << 30, 600},
	}
	for _, tt := range tests {
		if got := r.ClampHeartbeat(tt.in); got != tt.want {
			t.Errorf("ClampHeartbeat(%d) = %d; want %d", tt.in, got, tt.want)
		}
	}
}

func TestHolder(t *testing.T) {
	c1, err := Parse([]byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(c1)
	if h.Load() != c1 {
		t.Fatal("Load did not return the initial config")
	}
	var calls atomic.Int32
	var seen atomic.Pointer[Config]
	for i := 0; i < 3; i++ {
		h.Subscribe(func(c *Config) { calls.Add(1); seen.Store(c) })
	}
	c2 := Defaults()
	h.Store(c2)
	if h.Load() != c2 {
		t.Fatal("Load did not return the stored config")
	}
	if calls.Load() != 3 || seen.Load() != c2 {
		t.Fatalf("subscribers called %d times with %p; want 3 with %p", calls.Load(), seen.Load(), c2)
	}
	// A subscriber may subscribe or load from its callback without deadlock.
	h.Subscribe(func(c *Config) {
		if h.Load() != c {
			t.Error("Load inside a subscriber returned another config")
		}
	})
	h.Store(c1)
	if calls.Load() != 6 {
		t.Fatalf("calls = %d; want 6", calls.Load())
	}
}

func TestHolderConcurrent(t *testing.T) {
	h := NewHolder(Defaults())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			h.Store(Defaults())
		}
	}()
	for i := 0; i < 1000; i++ {
		if h.Load() == nil {
			t.Fatal("nil config")
		}
	}
	<-done
}

// TestBoltBatchDelay: saver.bolt_batch_delay defaults to bbolt's 2ms and
// takes a value within its bounds (the bounds are in TestParseRejects).
func TestBoltBatchDelay(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", 2 * time.Millisecond},
		{"saver:\n  bolt_batch_delay: 4ms\n", 4 * time.Millisecond},
		{"saver:\n  bolt_batch_delay: 100us\n", 100 * time.Microsecond},
	} {
		c, err := Parse([]byte("admin_key: a\napps:\n  - id: 1\n    secret: 0123456789abcdef\n    api_key: k1\n" + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Saver.BoltBatchDelay; got != tc.want {
			t.Errorf("%q: bolt_batch_delay %v, want %v", tc.yaml, got, tc.want)
		}
	}
}
