package system

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lcpush/lcpush/pkg/config"
)

// demoConfig is the command's embedded demo configuration (main.go embeds
// the same file).
func demoConfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../config.demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const ownKeys = `admin_key: my-admin-key-0123456789
apps:
  - {id: 1, name: one, secret: my-secret-of-app-one, api_key: my-key-1}
`

// TestDemoKeysListenOnLoopback: with any published demo key in the running
// configuration the Center API, dispatcher and admin port default to
// loopback and refuse another address; with one's own keys nothing changes.
func TestDemoKeysListenOnLoopback(t *testing.T) {
	demoYAML := demoConfig(t)
	demo := parseConfig(t, string(demoYAML))
	copied := parseConfig(t, `admin_key: demo-admin-key
apps:
  - {id: 7, name: mine, secret: my-secret-of-app-seven, api_key: my-key-7}
`)
	oneDemoSecret := parseConfig(t, `admin_key: my-admin-key-0123456789
apps:
  - {id: 1, name: one, secret: demo-secret-app-1-change-me, api_key: my-key-1}
`)
	oneDemoAPIKey := parseConfig(t, `admin_key: my-admin-key-0123456789
apps:
  - {id: 2, name: two, secret: my-secret-of-app-two, api_key: demo-key-app-2}
`)
	own := parseConfig(t, ownKeys)
	all, err := resolveTargets([]string{"all"}, false)
	if err != nil {
		t.Fatal(err)
	}
	roomOnly := map[string]bool{"keeper": true, "room": true}
	tests := []struct {
		name                  string
		cfg                   *config.Config
		run                   map[string]bool
		in                    Options
		demo                  bool
		center, dispatch, adm string
		refused               string // the flag named in the error
	}{
		{"embedded demo, no flags: loopback", demo, all, Options{},
			true, "127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:9000", ""},
		{"embedded demo on loopback ports", demo, all,
			Options{CenterAddr: "127.0.0.1:0", DispatchAddr: "[::1]:0", AdminAddr: "localhost:9100"},
			true, "127.0.0.1:0", "[::1]:0", "localhost:9100", ""},
		{"embedded demo, center on all interfaces", demo, all, Options{CenterAddr: ":8000"},
			true, "", "", "", "-center-addr"},
		{"embedded demo, center on 0.0.0.0", demo, all, Options{CenterAddr: "0.0.0.0:8000"},
			true, "", "", "", "-center-addr"},
		{"embedded demo, dispatcher on a LAN address", demo, all, Options{DispatchAddr: "10.1.2.3:8001"},
			true, "", "", "", "-dispatch-addr"},
		{"embedded demo, admin on all interfaces", demo, all, Options{AdminAddr: ":9000"},
			true, "", "", "", "-admin-addr"},
		{"embedded demo, admin on a host name", demo, all, Options{AdminAddr: "example.com:9000"},
			true, "", "", "", "-admin-addr"},
		{"embedded demo, a room process: center flag unused", demo, roomOnly, Options{CenterAddr: ":8000", DispatchAddr: ":8001"},
			true, ":8000", ":8001", "127.0.0.1:9000", ""},
		{"copied demo admin key", copied, all, Options{CenterAddr: ":8000"},
			true, "", "", "", "-center-addr"},
		{"one demo secret", oneDemoSecret, all, Options{}, true, "127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:9000", ""},
		{"one demo api key", oneDemoAPIKey, all, Options{DispatchAddr: ":8001"},
			true, "", "", "", "-dispatch-addr"},
		{"own keys, no flags: all interfaces", own, all, Options{},
			false, ":8000", ":8001", "127.0.0.1:9000", ""},
		{"own keys, any address", own, all, Options{CenterAddr: "0.0.0.0:8000", DispatchAddr: ":8001", AdminAddr: ":9000"},
			false, "0.0.0.0:8000", ":8001", ":9000", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.in
			o.DemoConfig = demoYAML
			demo, err := resolveListen(&o, tc.cfg, tc.run)
			if demo != tc.demo {
				t.Fatalf("demo = %v, want %v", demo, tc.demo)
			}
			if tc.refused != "" {
				if !errors.Is(err, errDemoKeys) || !strings.Contains(err.Error(), tc.refused) ||
					!strings.Contains(err.Error(), "demo keys are published: listen on loopback or use -config with your own keys") {
					t.Fatalf("err %v, want the demo-keys refusal naming %s", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.CenterAddr != tc.center || o.DispatchAddr != tc.dispatch || o.AdminAddr != tc.adm {
				t.Fatalf("addresses %q %q %q, want %q %q %q", o.CenterAddr, o.DispatchAddr, o.AdminAddr, tc.center, tc.dispatch, tc.adm)
			}
		})
	}
}

// TestDemoKeysAreTheREADMEs: the keys the refusal looks for are the ones
// the README publishes.
func TestDemoKeysAreTheREADMEs(t *testing.T) {
	keys, err := demoKeys(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"demo-admin-key", "demo-key-app-1", "demo-key-app-2",
		"demo-secret-app-1-change-me", "demo-secret-app-2-change-me"} {
		if !keys[k] {
			t.Errorf("%q is not a demo key", k)
		}
	}
	if len(keys) != 5 {
		t.Errorf("demo keys %v, want the 5 of config.demo.yaml", keys)
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8000": true, "127.1.2.3:1": true, "[::1]:8000": true, "localhost:8000": true, "LOCALHOST:1": true,
		":8000": false, "0.0.0.0:8000": false, "[::]:8000": false, "10.0.0.1:8000": false,
		"example.com:80": false, "127.0.0.1": false, "": false,
	} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
