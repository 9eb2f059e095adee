// Package config is the typed configuration model shared by every service:
// the app registry (ids, secrets, API keys, callback URLs, limits) and the
// settings of each service that may change at run time. keeper loads it (from
// a file or from ZooKeeper), validates it and publishes it through a
// Holder; services read the current value from the Holder and never mutate it.
// A reload swaps the whole validated value.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lcpush/lcpush/pkg/proxyhdr"
)

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("config: invalid")

// Config is one complete, validated configuration.
type Config struct {
	// AdminKey authorizes operator endpoints (stats, pprof) of the Center API.
	AdminKey    string      `yaml:"admin_key"`
	Apps        []App       `yaml:"apps"`
	Room        Room        `yaml:"room"`
	Center      Center      `yaml:"center"`
	Coordinator Coordinator `yaml:"coordinator"`
	Saver       Saver       `yaml:"saver"`

	byID  map[uint32]*App
	byKey map[string]*App
}

// App is one product registered on the platform.
type App struct {
	ID     uint32 `yaml:"id"`
	Name   string `yaml:"name"`
	Secret string `yaml:"secret"` // signs client tokens and callback bodies
	APIKey string `yaml:"api_key"`
	// CallbackURL receives upstream data and, with StatusEvents, online/offline events.
	CallbackURL  string `yaml:"callback_url"`
	StatusEvents bool   `yaml:"status_events"`
	// MaxPayload is the largest push payload in bytes (413 above it).
	MaxPayload int `yaml:"max_payload"`
	// MaxMulticast is the most uids one push request may name.
	MaxMulticast int `yaml:"max_multicast"`
	// PushRate and PushBurst limit the recipients per second pushed through
	// the API (a unicast is one, a multicast of n is n), on each center. A
	// push the rate cannot send at once waits in the app's send queue.
	PushRate  float64 `yaml:"push_rate"`
	PushBurst int     `yaml:"push_burst"`
	// PushQueue bounds the recipients waiting in the app's send queue
	// (default 60 s of push_rate; negative: no queue, a push over the rate
	// is refused with 429), PushQueueBytes the bytes they hold (payload,
	// uids and bookkeeping; default 64 MiB). A push that does not fit is
	// refused with 429 and Retry-After.
	PushQueue      int   `yaml:"push_queue"`
	PushQueueBytes int64 `yaml:"push_queue_bytes"`
	// BroadcastRate is the default deliveries per second of a broadcast job.
	BroadcastRate float64 `yaml:"broadcast_rate"`
	// CallbackQueue bounds the callbacks waiting for this app; more are dropped and counted.
	CallbackQueue int `yaml:"callback_queue"`
	// CallbackBatch above 1 sends up to that many events in one POST,
	// {"events":[event, ...]}; 0 or 1 sends one event per POST (max 10000).
	CallbackBatch int `yaml:"callback_batch"`
	// CallbackLinger is how long a batch may wait for more events before it
	// is sent anyway (default 50ms, at most 10s); only with CallbackBatch > 1.
	CallbackLinger time.Duration `yaml:"callback_linger"`
	// CallbackRoutes send upstream data of the listed types to their own
	// URL; other types, and status events, go to CallbackURL.
	CallbackRoutes []CallbackRoute `yaml:"callback_routes"`
	// StatusDebounce, when above 0, holds an offline event this long: an
	// online of the same uid within it cancels both (at most 1h).
	StatusDebounce time.Duration `yaml:"status_debounce"`
	// StatusDebounceMax bounds the offline events held by StatusDebounce
	// (default 10000, at most 1000000); past it they are sent at once.
	StatusDebounceMax int `yaml:"status_debounce_max"`

	routes map[uint16]string // CallbackRoutes by type, built by Prepare
}

// CallbackRoute sends upstream data of Types (0..65535) to URL (http or https).
type CallbackRoute struct {
	Types []int  `yaml:"types"`
	URL   string `yaml:"url"`
}

// UpstreamURL is the callback URL of upstream data of type typ: its
// route's URL, else CallbackURL (empty: none).
func (a *App) UpstreamURL(typ uint16) string {
	if a.routes != nil {
		if u, ok := a.routes[typ]; ok {
			return u
		}
		return a.CallbackURL
	}
	for _, r := range a.CallbackRoutes { // not prepared
		for _, t := range r.Types {
			if t == int(typ) {
				return r.URL
			}
		}
	}
	return a.CallbackURL
}

// Room holds the gateway settings that can change while it runs.
type Room struct {
	// Heartbeat bounds in seconds; a client's requested hb is clamped to [Min, Max].
	HeartbeatMin     int `yaml:"heartbeat_min"`
	HeartbeatMax     int `yaml:"heartbeat_max"`
	HeartbeatDefault int `yaml:"heartbeat_default"`
	// HeartbeatGrace is added to 2 x hb before an idle connection is closed.
	HeartbeatGrace time.Duration `yaml:"heartbeat_grace"`
	AuthDeadline   time.Duration `yaml:"auth_deadline"`
	// TokenSkew is the clock skew allowed when checking token expiry.
	TokenSkew time.Duration `yaml:"token_skew"`
	// MaxConns caps connections per room process; keep it below the open-files limit.
	MaxConns      int `yaml:"max_conns"`
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxFrame is the largest Len a client frame may announce.
	MaxFrame int `yaml:"max_frame"`
	// Allow, when not empty, admits only these prefixes; Deny refuses these. CIDR or bare IPs.
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
	// MaxPending bounds pushes queued for one connection that is still authenticating.
	MaxPending int `yaml:"max_pending"`
	// MaxAuthFrame is the largest Len a connection may announce before it
	// has authenticated: an AUTH frame is well under 1 KiB, so a connection
	// that never authenticates can make the room buffer this much at most.
	MaxAuthFrame int `yaml:"max_auth_frame"`
	// MaxUnauthed caps connections that have not authenticated yet, in
	// total and per client IP: idle sockets from a few addresses must not
	// lock out every new login.
	MaxUnauthed      int `yaml:"max_unauthed"`
	MaxUnauthedPerIP int `yaml:"max_unauthed_per_ip"`
	// ConnectRatePerIP and ConnectBurstPerIP bound new connections per
	// second from one client IP (a token bucket, at most 1000/s); more are
	// refused at accept. A negative rate turns the limit off (load tests).
	ConnectRatePerIP  float64 `yaml:"connect_rate_per_ip"`
	ConnectBurstPerIP int     `yaml:"connect_burst_per_ip"`
	// MaxTokenLifetime is the longest a token may still be valid when it is
	// presented (expiry - now, beyond TokenSkew): a token minted with an
	// expiry in the far future is refused as bad_token.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// Limits bound the frames of each op one connection may send; a frame
	// over its limit gets ERROR rate_limited, and a connection that spends
	// its Errors budget too is closed.
	Limits OpLimits `yaml:"limits"`
	// WebSocket holds the settings of the WebSocket listener (PROTOCOL.md
	// "Transports"; docs/tls.md).
	WebSocket RoomWebSocket `yaml:"websocket"`
	// Proxy holds the PROXY protocol settings (docs/tls.md).
	Proxy RoomProxy `yaml:"proxy"`
	// ResumeWindow is the reconnect window: a session the client's side
	// closed is held this long, and the same uid logging in to the same
	// room for the same app within it resumes it (no offline/online events,
	// the register entry kept). 0 (the default) turns it off.
	ResumeWindow time.Duration `yaml:"resume_window"`
	// ResumeMax bounds the sessions held at once (about 100 bytes each);
	// beyond it a closed session is unregistered at once.
	ResumeMax int `yaml:"resume_max"`
	// Linger bounds the delay the write path may add to gather pushes and
	// broadcasts that arrive faster than a loop flushes them one by one,
	// so each connection gets them in one write (docs/architecture.md,
	// "Adaptive linger"). An idle loop writes at once. Unset: 10ms; 0: off;
	// at most 50ms. Use LingerBound.
	Linger *time.Duration `yaml:"linger"`

	allow, deny []netip.Prefix
}

// DefaultLinger is room.linger when it is not set; MaxLinger its bound.
const (
	DefaultLinger = 10 * time.Millisecond
	MaxLinger     = 50 * time.Millisecond
)

// LingerBound is room.linger: DefaultLinger when unset, 0 when off.
func (r *Room) LingerBound() time.Duration {
	if r.Linger == nil {
		return DefaultLinger
	}
	return *r.Linger
}

// RoomWebSocket holds the WebSocket settings of the room.
type RoomWebSocket struct {
	// Origins is the allow list of Origin values a browser page may connect
	// from (scheme://host[:port], compared without regard to case); a
	// request without Origin (native clients) is always accepted. Empty:
	// any origin.
	Origins []string `yaml:"origins"`
	// Cookie, when set, names a sticky cookie sent on the upgrade answer
	// (Set-Cookie: NAME=ROOM_ID), for L7 balancers. Empty: none.
	Cookie string `yaml:"cookie"`
}

// RoomProxy holds the PROXY protocol settings of the room.
type RoomProxy struct {
	// Trusted lists the peers (CIDR prefixes or single addresses) that must
	// send a PROXY v1 or v2 header first; a connection from one of them
	// without a header is closed, and a PROXY header from any other peer is
	// refused. Empty: PROXY off (every peer is untrusted).
	Trusted []string `yaml:"trusted"`

	trusted proxyhdr.Trusted
}

// TrustedProxies returns the parsed Trusted list (valid after Prepare).
func (p *RoomProxy) TrustedProxies() proxyhdr.Trusted { return p.trusted }

// OpLimits are the per-connection token buckets of the client ops.
type OpLimits struct {
	Ping     OpLimit `yaml:"ping"`     // default 1/s, burst 10: heartbeats are >= 10 s apart
	Ack      OpLimit `yaml:"ack"`      // default 100/s, burst 200 (ACK frames, each up to 8k ids)
	Bind     OpLimit `yaml:"bind"`     // BIND and UNBIND together, default 2/s, burst 20
	Upstream OpLimit `yaml:"upstream"` // default 50/s, burst 100
	Errors   OpLimit `yaml:"errors"`   // ERROR replies, default 2/s, burst 20
}

// OpLimit is a token bucket: Rate frames per second, Burst at once.
type OpLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

func (l *OpLimit) fill(rate float64, burst int) {
	if l.Rate == 0 {
		l.Rate = rate
	}
	setInt(&l.Burst, burst)
}

func (l OpLimit) valid() bool {
	return l.Rate >= 0.001 && l.Rate <= 1000 && l.Burst >= 1 && l.Burst <= 65535
}

// Center holds API settings.
type Center struct {
	DefaultTTL int `yaml:"default_ttl"` // seconds
	MaxTTL     int `yaml:"max_ttl"`     // seconds
	// MaxJobs bounds the broadcast jobs running at once on one center, and
	// MaxJobsPerApp those of one app, so no app can take every slot.
	MaxJobs       int `yaml:"max_jobs"`
	MaxJobsPerApp int `yaml:"max_jobs_per_app"`
	// MinBroadcastRate is the lowest deliveries per second a broadcast may
	// ask for: a job paced slower would hold its slot for ever.
	MinBroadcastRate float64 `yaml:"min_broadcast_rate"`
	// JobDeadline bounds how long one broadcast job may run; it is then
	// failed and its slot freed (offline users still get a QoS 1 message at
	// their next login).
	JobDeadline time.Duration `yaml:"job_deadline"`
	// JobKeep is how long a finished job stays readable (GET
	// /v1/jobs/{id}) in the store shared by the centers; default 1h,
	// 1m..30 days.
	JobKeep time.Duration `yaml:"job_keep"`
}

// Coordinator holds callback settings.
type Coordinator struct {
	Workers        int           `yaml:"workers"`
	Timeout        time.Duration `yaml:"timeout"`
	Retries        int           `yaml:"retries"`
	RetryBaseDelay time.Duration `yaml:"retry_base_delay"`
}

// Saver holds storage settings.
type Saver struct {
	// ExpireEvery is how often expired messages are swept.
	ExpireEvery time.Duration `yaml:"expire_every"`
	// MaxLoads parks a message loaded this many times without ACK (a client
	// that never ACKs); InboxCap bounds a user's stored messages, dropping
	// the oldest. 0 takes the saver's default, negative turns it off. Read at start.
	MaxLoads int `yaml:"max_loads"`
	InboxCap int `yaml:"inbox_cap"`
	// DurableQueue bounds rows waiting for MySQL (Redis store); past it QoS 1
	// sends are refused with 503. 0 takes the default.
	DurableQueue int `yaml:"durable_queue"`
	// ReconcileEvery is how often the Redis store recounts pending and
	// parked from MySQL (one GROUP BY over the inbox table); a Redis loss
	// triggers a recount at once. 0 takes the saver's default (1 minute).
	// Read at start.
	ReconcileEvery time.Duration `yaml:"reconcile_every"`
	// BoltBatchDelay is how long a write of the embedded durable store
	// (-store bolt) waits for others to share its commit and its fsyncs
	// (bbolt's MaxBatchDelay). Longer carries more writes per commit: a
	// slow disk keeps up at a higher rate, and every push waits longer.
	// Default 2ms, 100µs..50ms (docs/benchmarks.md, "Unicast p99"). Read at start.
	BoltBatchDelay time.Duration `yaml:"bolt_batch_delay"`
}

// Defaults returns a configuration with every setting at its default and no apps.
func Defaults() *Config {
	c := &Config{}
	c.fillDefaults()
	return c
}

func (c *Config) fillDefaults() {
	r := &c.Room
	setInt(&r.HeartbeatMin, 10)
	setInt(&r.HeartbeatMax, 600)
	setInt(&r.HeartbeatDefault, 60)
	setDur(&r.HeartbeatGrace, 10*time.Second)
	setDur(&r.AuthDeadline, 10*time.Second)
	setDur(&r.TokenSkew, 60*time.Second)
	setInt(&r.MaxConns, 18000)
	setInt(&r.MaxConnsPerIP, 1000)
	setInt(&r.MaxFrame, 65536+12)
	setInt(&r.MaxPending, 64)
	setInt(&r.MaxAuthFrame, 1024)
	setInt(&r.MaxUnauthed, 4096)
	setInt(&r.MaxUnauthedPerIP, 64)
	if r.ConnectRatePerIP == 0 {
		r.ConnectRatePerIP = 50
	}
	setInt(&r.ConnectBurstPerIP, 200)
	setDur(&r.MaxTokenLifetime, 30*24*time.Hour)
	setInt(&r.ResumeMax, 65536)
	r.Limits.Ping.fill(1, 10)
	r.Limits.Ack.fill(100, 200)
	r.Limits.Bind.fill(2, 20)
	r.Limits.Upstream.fill(50, 100)
	r.Limits.Errors.fill(2, 20)
	setInt(&c.Center.DefaultTTL, 86400)
	setInt(&c.Center.MaxTTL, 7*86400)
	setInt(&c.Center.MaxJobs, 64)
	setInt(&c.Center.MaxJobsPerApp, min(8, max(c.Center.MaxJobs, 1)))
	if c.Center.MinBroadcastRate == 0 {
		c.Center.MinBroadcastRate = 10
	}
	setDur(&c.Center.JobDeadline, 6*time.Hour)
	setDur(&c.Center.JobKeep, time.Hour)
	setInt(&c.Coordinator.Workers, 16)
	setDur(&c.Coordinator.Timeout, 5*time.Second)
	setInt(&c.Coordinator.Retries, 3)
	setDur(&c.Coordinator.RetryBaseDelay, 200*time.Millisecond)
	setDur(&c.Saver.ExpireEvery, time.Minute)
	setDur(&c.Saver.BoltBatchDelay, 2*time.Millisecond)
	for i := range c.Apps {
		a := &c.Apps[i]
		setInt(&a.MaxPayload, 4096)
		setInt(&a.MaxMulticast, 1000)
		if a.PushRate == 0 {
			a.PushRate = 1000
		}
		// 100 ms of the rate: a burst over it waits in the send queue, so
		// 5,000 pushes at 1,000/s take 5 s, not 4 after a free second.
		setInt(&a.PushBurst, max(1, int(min(a.PushRate/10, 1<<30))))
		if a.PushQueue == 0 { // 60 s of the rate, rounded up
			a.PushQueue = int(min(60*a.PushRate+0.999, 1<<40))
		}
		if a.PushQueueBytes == 0 {
			a.PushQueueBytes = 64 << 20
		}
		if a.BroadcastRate == 0 {
			a.BroadcastRate = 50000
		}
		setInt(&a.CallbackQueue, 1024)
		setDur(&a.CallbackLinger, 50*time.Millisecond)
		setInt(&a.StatusDebounceMax, 10000)
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

// Parse decodes YAML, rejects unknown fields, fills defaults and validates.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := c.Prepare(); err != nil {
		return nil, err
	}
	return c, nil
}

// Marshal encodes the configuration as YAML.
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }

// Prepare fills defaults, validates and builds the lookup indexes. It must be
// called once on a Config built in code before it is published.
func (c *Config) Prepare() error {
	c.fillDefaults()
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.AdminKey == "" {
		bad("admin_key is empty")
	}
	c.byID = make(map[uint32]*App, len(c.Apps))
	c.byKey = make(map[string]*App, len(c.Apps))
	for i := range c.Apps {
		a := &c.Apps[i]
		switch {
		case a.ID == 0:
			bad("apps[%d]: id 0 is reserved", i)
		case c.byID[a.ID] != nil:
			bad("apps[%d]: duplicate id %d", i, a.ID)
		}
		if len(a.Secret) < 16 {
			bad("app %d: secret shorter than 16 bytes", a.ID)
		}
		if a.APIKey == "" {
			bad("app %d: api_key is empty", a.ID)
		} else if c.byKey[a.APIKey] != nil || a.APIKey == c.AdminKey {
			bad("app %d: api_key is not unique", a.ID)
		}
		if a.CallbackURL != "" && !strings.HasPrefix(a.CallbackURL, "http://") && !strings.HasPrefix(a.CallbackURL, "https://") {
			bad("app %d: callback_url must be http(s)", a.ID)
		}
		if a.MaxPayload < 0 || a.MaxPayload > 1<<20 {
			bad("app %d: max_payload out of range (0..1MiB)", a.ID)
		}
		if a.PushRate < 0 || a.BroadcastRate < 0 {
			bad("app %d: negative rate", a.ID)
		}
		if a.PushQueueBytes < 0 {
			bad("app %d: negative push_queue_bytes", a.ID)
		}
		a.validateCallbacks(bad)
		c.byID[a.ID] = a
		c.byKey[a.APIKey] = a
	}
	r := &c.Room
	if r.HeartbeatMin < 1 || r.HeartbeatMin > r.HeartbeatMax || r.HeartbeatDefault < r.HeartbeatMin || r.HeartbeatDefault > r.HeartbeatMax {
		bad("room: need 1 <= heartbeat_min <= heartbeat_default <= heartbeat_max")
	}
	if r.MaxFrame < 12 || r.MaxFrame > 16<<20 {
		bad("room: max_frame out of range (12..16MiB)")
	}
	if r.HeartbeatGrace < 0 || r.AuthDeadline < 0 || r.TokenSkew < 0 || r.MaxPending < 0 {
		bad("room: durations and max_pending must not be negative")
	}
	if r.Linger != nil && (*r.Linger < 0 || *r.Linger > MaxLinger) {
		bad("room: need 0 <= linger <= 50ms")
	}
	if r.ResumeWindow < 0 || r.ResumeWindow > 5*time.Minute || r.ResumeMax < 1 {
		bad("room: need 0 <= resume_window <= 5m and resume_max >= 1")
	}
	if r.MaxConns < 1 || r.MaxConnsPerIP < 1 {
		bad("room: max_conns and max_conns_per_ip must be positive")
	}
	if r.MaxAuthFrame < 12 || r.MaxAuthFrame > r.MaxFrame {
		bad("room: need 12 <= max_auth_frame <= max_frame")
	}
	if r.MaxUnauthed < 1 || r.MaxUnauthedPerIP < 1 || r.ConnectBurstPerIP < 1 {
		bad("room: max_unauthed, max_unauthed_per_ip and connect_burst_per_ip must be positive")
	}
	for name, l := range map[string]OpLimit{"ping": r.Limits.Ping, "ack": r.Limits.Ack, "bind": r.Limits.Bind, "upstream": r.Limits.Upstream, "errors": r.Limits.Errors} {
		if !l.valid() {
			bad("room.limits.%s: need rate 0.001..1000 per second and burst 1..65535", name)
		}
	}
	if r.MaxTokenLifetime < time.Minute {
		bad("room: max_token_lifetime below one minute")
	}
	var err error
	if r.allow, err = parsePrefixes(r.Allow); err != nil {
		bad("room.allow: %v", err)
	}
	if r.deny, err = parsePrefixes(r.Deny); err != nil {
		bad("room.deny: %v", err)
	}
	if r.Proxy.trusted, err = proxyhdr.ParseTrusted(r.Proxy.Trusted); err != nil {
		bad("room.proxy.trusted: %v", err)
	}
	for _, o := range r.WebSocket.Origins {
		if !validOrigin(o) {
			bad("room.websocket.origins: %q is not scheme://host[:port]", o)
		}
	}
	if ck := r.WebSocket.Cookie; ck != "" && !validCookieName(ck) {
		bad("room.websocket.cookie: %q is not a cookie name (an HTTP token)", ck)
	}
	if c.Center.DefaultTTL > c.Center.MaxTTL {
		bad("center: default_ttl above max_ttl")
	}
	if c.Center.MaxJobs < 1 || c.Center.MaxJobsPerApp < 1 || c.Center.MaxJobsPerApp > c.Center.MaxJobs {
		bad("center: need 1 <= max_jobs_per_app <= max_jobs")
	}
	if c.Center.MinBroadcastRate < 0 || c.Center.JobDeadline < time.Second {
		bad("center: min_broadcast_rate must not be negative, job_deadline at least 1s")
	}
	if c.Center.JobKeep < time.Minute || c.Center.JobKeep > 30*24*time.Hour {
		bad("center: job_keep must be 1m..720h (30 days)")
	}
	if d := c.Saver.BoltBatchDelay; d < 100*time.Microsecond || d > 50*time.Millisecond {
		bad("saver: bolt_batch_delay must be 100µs..50ms")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// validateCallbacks checks the batching, debounce and route settings of a
// and builds its route index.
func (a *App) validateCallbacks(bad func(string, ...any)) {
	if a.CallbackBatch < 0 || a.CallbackBatch > 10000 {
		bad("app %d: callback_batch out of range (0..10000)", a.ID)
	}
	if a.CallbackLinger < 0 || a.CallbackLinger > 10*time.Second {
		bad("app %d: callback_linger out of range (0..10s)", a.ID)
	}
	if a.StatusDebounce < 0 || a.StatusDebounce > time.Hour {
		bad("app %d: status_debounce out of range (0..1h)", a.ID)
	}
	if a.StatusDebounceMax < 1 || a.StatusDebounceMax > 1000000 {
		bad("app %d: status_debounce_max out of range (1..1000000)", a.ID)
	}
	a.routes = nil
	if len(a.CallbackRoutes) == 0 {
		return
	}
	a.routes = make(map[uint16]string)
	for i, r := range a.CallbackRoutes {
		if !validCallbackURL(r.URL) {
			bad("app %d: callback_routes[%d].url must be an http(s) URL with a host", a.ID, i)
		}
		if len(r.Types) == 0 {
			bad("app %d: callback_routes[%d].types is empty", a.ID, i)
		}
		for _, t := range r.Types {
			if t < 0 || t > 65535 {
				bad("app %d: callback_routes[%d]: type %d out of range (0..65535)", a.ID, i, t)
				continue
			}
			if _, dup := a.routes[uint16(t)]; dup {
				bad("app %d: callback_routes: type %d is routed twice", a.ID, t)
				continue
			}
			a.routes[uint16(t)] = r.URL
		}
	}
}

// validCallbackURL reports whether u is an absolute http or https URL with a host.
func validCallbackURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

// validOrigin checks an Origin allow-list entry: scheme://host[:port], no
// path, query or user, as browsers send it (RFC 6454).
func validOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.Path == "" && u.RawQuery == "" && u.User == nil && u.Fragment == "" && !u.ForceQuery
}

// validCookieName reports whether name is an HTTP token (RFC 6265 4.1.1).
func validCookieName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP", s)
		}
		a = a.Unmap() // clients are matched unmapped
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// App returns the app with the given id.
func (c *Config) App(id uint32) (*App, bool) {
	a, ok := c.byID[id]
	return a, ok
}

// AppByKey returns the app whose API key is key.
func (c *Config) AppByKey(key string) (*App, bool) {
	a, ok := c.byKey[key]
	return a, ok
}

// IPAllowed applies the allow and deny lists to a client address.
func (r *Room) IPAllowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range r.deny {
		if p.Contains(ip) {
			return false
		}
	}
	if len(r.allow) == 0 {
		return true
	}
	for _, p := range r.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClampHeartbeat turns a client's requested heartbeat (0 = none) into the negotiated one.
func (r *Room) ClampHeartbeat(hb int) int {
	switch {
	case hb <= 0:
		return r.HeartbeatDefault
	case hb < r.HeartbeatMin:
		return r.HeartbeatMin
	case hb > r.HeartbeatMax:
		return r.HeartbeatMax
	}
	return hb
}

// Holder publishes the current configuration to every reader. Reads are one
// atomic load; Store swaps the whole value and notifies subscribers.
type Holder struct {
	cur  atomic.Pointer[Config]
	mu   sync.Mutex
	subs []func(*Config)
}

// NewHolder returns a Holder publishing c, which must be prepared.
func NewHolder(c *Config) *Holder {
	h := &Holder{}
	h.cur.Store(c)
	return h
}

// Load returns the current configuration. Callers must not modify it.
func (h *Holder) Load() *Config { return h.cur.Load() }

// Store publishes c (already prepared) and calls the subscribers.
func (h *Holder) Store(c *Config) {
	h.mu.Lock()
	h.cur.Store(c)
	subs := append([]func(*Config){}, h.subs...)
	h.mu.Unlock()
	for _, f := range subs {
		f(c)
	}
}

// Subscribe calls f after every Store, on the storing goroutine; f must not
// block. Concurrent Stores may notify out of order: f should read Load()
// rather than trust its argument to be the newest.
func (h *Holder) Subscribe(f func(*Config)) {
	h.mu.Lock()
	h.subs = append(h.subs, f)
	h.mu.Unlock()
}
