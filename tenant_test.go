package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/system"
)

// tenantStores are the stores the cross-tenant tests run on: every one the
// system can be started with (Redis + MySQL needs the real servers).
var tenantStores = map[string]func(*testing.T, *system.Options){
	"memory": func(_ *testing.T, o *system.Options) { o.Store = "memory" },
	"bolt":   func(_ *testing.T, o *system.Options) { o.Store = "bolt" },
	"redis": func(t *testing.T, o *system.Options) {
		addr, dsn := redisForTest(t)
		o.Store, o.RedisAddrs, o.MySQLDSN = "redis", []string{addr}, dsn
	},
}

// TestTenantIsolation: app 1 cannot delete, kick, read the status of, or
// count the messages of app 2's users, on every store.
func TestTenantIsolation(t *testing.T) {
	for name, store := range tenantStores {
		t.Run(name, func(t *testing.T) {
			sys := systest.Start(t, testkit.ConfigYAML(""), func(o *system.Options) { store(t, o) })
			run := strconv.FormatInt(time.Now().UnixNano(), 36)
			victim := "victim-" + run

			// Three app-2 messages wait for the victim; app 1 has none.
			var ids []uint64
			for i := 0; i < 3; i++ {
				out := testkit.PushText(t, sys.CenterAddr(), 2, testkit.Key2, []string{victim}, fmt.Sprint("for app 2 #", i), 1)
				id, _ := strconv.ParseUint(out["msg_id"].(string), 10, 64)
				ids = append(ids, id)
			}
			pending := func(app uint32, key string) float64 {
				code, out, _ := testkit.API(t, sys.CenterAddr(), "GET", fmt.Sprintf("/v1/apps/%d/users/%s", app, victim), key, "")
				if code != 200 {
					t.Fatalf("users answer %d %v", code, out)
				}
				p, _ := out["pending"].(float64)
				return p
			}
			if p := pending(1, testkit.Key1); p != 0 {
				t.Fatalf("app 1 counts %v of app 2's messages", p)
			}
			if p := pending(2, testkit.Key2); p != 3 {
				t.Fatalf("app 2 counts %v pending, want 3", p)
			}

			// Delete: an app-1 connection of the same uid ACKs the real ids.
			att := testkit.Login(t, sys.RoomAddr(), 1, victim)
			att.Write(proto.AppendAck(nil, 1, ids))
			att.Send(proto.OpPing, 0, 0, nil)
			att.Expect(proto.OpPong) // the ACK was read before the PING
			testkit.WaitFor(t, "the ACK applied (it must take no effect)", 2*time.Second, func() bool { return pending(2, testkit.Key2) == 3 })
			att.Close()

			// Kick and status: the victim online on app 2 only.
			v := testkit.Login(t, sys.RoomAddr(), 2, victim)
			for i := 0; i < 3; i++ {
				if got, _, _ := v.ExpectPush(); got != ids[i] {
					t.Fatalf("victim got %d, want %d", got, ids[i])
				}
			}
			v.Write(proto.AppendAck(nil, 2, ids))
			testkit.WaitFor(t, "the victim's own ACK applied", 2*time.Second, func() bool { return pending(2, testkit.Key2) == 0 })

			// The attacker's app-1 session is gone once its close is
			// handled; app 2's stays invisible to app 1.
			var out map[string]any
			testkit.WaitFor(t, "app 1 to see the victim offline", 2*time.Second, func() bool {
				_, out, _ = testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/1/users/"+victim, testkit.Key1, "")
				return out["online"] == false
			})
			if out["room"] != nil || out["apps"] != nil || out["pending"] != float64(0) {
				t.Fatalf("app 1 reads app 2's session: %v", out)
			}
			code := 0
			code, out, _ = testkit.API(t, sys.CenterAddr(), "POST", "/v1/apps/1/users/"+victim+"/kick", testkit.Key1, `{}`)
			if code != 200 || out["kicked"] != false {
				t.Fatalf("app 1 kick of an app-2 user: %d %v", code, out)
			}
			// A login through app 1 elsewhere leaves the app-2 session alone.
			a1 := testkit.Login(t, sys.RoomAddr(), 1, victim)
			testkit.PushText(t, sys.CenterAddr(), 2, testkit.Key2, []string{victim}, "still yours", 0)
			if _, payload, f := v.ExpectPush(); string(payload) != "still yours" || f.App != 2 {
				t.Fatalf("victim got %q on app %d", payload, f.App)
			}
			testkit.PushText(t, sys.CenterAddr(), 1, testkit.Key1, []string{victim}, "for app 1", 0)
			if _, payload, f := a1.ExpectPush(); string(payload) != "for app 1" || f.App != 1 {
				t.Fatalf("app-1 connection got %q on app %d", payload, f.App)
			}
			code, out, _ = testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/2/users/"+victim, testkit.Key2, "")
			if code != 200 || out["online"] != true {
				t.Fatalf("victim offline for app 2: %d %v", code, out)
			}
			if apps, _ := json.Marshal(out["apps"]); string(apps) != "[2]" {
				t.Fatalf("app 2 sees apps %s", apps)
			}
			// App 1 kicks its own session: the app-2 connection stays.
			code, out, _ = testkit.API(t, sys.CenterAddr(), "POST", "/v1/apps/1/users/"+victim+"/kick", testkit.Key1, `{}`)
			if code != 200 || out["kicked"] != true {
				t.Fatalf("app 1 kick of its own session: %d %v", code, out)
			}
			f := a1.Expect(proto.OpKick)
			var k proto.Kick
			_ = json.Unmarshal(f.Body, &k)
			if k.Code != 2 {
				t.Fatalf("KICK %+v, want code 2", k)
			}
			v.Send(proto.OpPing, 0, 0, nil)
			v.Expect(proto.OpPong)
		})
	}
}

// TestTenantBroadcastSlots: one app cannot take every broadcast slot, on
// every store (QoS 1 broadcasts are stored).
func TestTenantBroadcastSlots(t *testing.T) {
	for name, store := range tenantStores {
		t.Run(name, func(t *testing.T) {
			cfg := testkit.ConfigYAML("") + "center:\n  max_jobs: 6\n  max_jobs_per_app: 3\n  min_broadcast_rate: 1\n"
			sys := systest.Start(t, cfg, func(o *system.Options) { store(t, o) })
			// Online app-1 users make app 1's jobs last: 20 users at 2/s.
			for i := 0; i < 20; i++ {
				testkit.Login(t, sys.RoomAddr(), 1, fmt.Sprintf("slot-%d-%d", time.Now().UnixNano(), i))
			}
			bcast := func(app uint32, key string) (int, map[string]any) {
				code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", fmt.Sprintf("/v1/apps/%d/broadcast", app), key, `{"text":"b","qos":1,"rate":2}`)
				return code, out
			}
			for i := 0; i < 3; i++ {
				if code, out := bcast(1, testkit.Key1); code != 202 {
					t.Fatalf("app 1 broadcast #%d: %d %v", i, code, out)
				}
			}
			if code, out := bcast(1, testkit.Key1); code != 429 || testkit.ErrCode(out) != "rate_limited" {
				t.Fatalf("app 1 past its slots: %d %v, want 429 rate_limited", code, out)
			}
			if code, out := bcast(2, testkit.Key2); code != 202 {
				t.Fatalf("app 2 while app 1 holds its slots: %d %v", code, out)
			}
		})
	}
}
