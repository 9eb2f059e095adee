package testkit

import (
	"fmt"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/token"
)

// The test apps of ConfigYAML: ids 1, 2 and 3, with these secrets and API
// keys, and the admin key.
const (
	Secret1  = "e2e-secret-app-1-xxxxxxxx"
	Secret2  = "e2e-secret-app-2-xxxxxxxx"
	Secret3  = "e2e-secret-app-3-xxxxxxxx"
	Key1     = "e2e-key-1"
	Key2     = "e2e-key-2"
	Key3     = "e2e-key-3"
	AdminKey = "e2e-admin"
)

// Secret is the secret of test app 1, 2 or 3 (a secret no app has for any
// other id, so that its tokens are refused).
func Secret(app uint32) string {
	switch app {
	case 1:
		return Secret1
	case 2:
		return Secret2
	case 3:
		return Secret3
	}
	return "no-such-app-secret-xxxxxxx"
}

// Token is a token for uid on test app app, valid for an hour.
func Token(app uint32, uid string) string {
	return TokenUntil(app, uid, time.Now().Add(time.Hour))
}

// TokenUntil is a token for uid on test app app that expires at exp.
func TokenUntil(app uint32, uid string, exp time.Time) string {
	return token.Sign([]byte(Secret(app)), app, uid, exp.Unix())
}

// ConfigYAML is the base test configuration: the three test apps (app 3
// with callbackURL, which may be empty, and status events), short
// heartbeats (1..300 s, grace 500 ms) and a 700 ms auth deadline. Tests
// append top-level sections (center:, ...) or replace lines.
func ConfigYAML(callbackURL string) string {
	return fmt.Sprintf(`admin_key: %s
apps:
  - {id: 1, name: one, secret: %s, api_key: %s}
  - {id: 2, name: two, secret: %s, api_key: %s}
  - {id: 3, name: three, secret: %s, api_key: %s, callback_url: %q, status_events: true}
room:
  heartbeat_min: 1
  heartbeat_max: 300
  heartbeat_default: 30
  heartbeat_grace: 500ms
  auth_deadline: 700ms
`, AdminKey, Secret1, Key1, Secret2, Key2, Secret3, Key3, callbackURL)
}

// Config is ConfigYAML("") parsed, changed by mod (may be nil) and
// prepared: the same apps for tests that build a service from a
// *config.Config.
func Config(t testing.TB, mod func(*config.Config)) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(ConfigYAML("")))
	if err != nil {
		t.Fatalf("base test config: %v", err)
	}
	if mod != nil {
		mod(c)
	}
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	return c
}
