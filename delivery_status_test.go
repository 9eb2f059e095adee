package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/pkg/token"
	"github.com/lcpush/lcpush/system"
)

// statusApp is the app the delivery status test runs in: a fresh id per
// run, so that a shared Redis store holds nothing of it from earlier runs
// (its broadcasts reach every user of the app).
type statusApp struct {
	id          uint32
	key, secret string
}

func (a statusApp) login(t *testing.T, sys *system.System, uid string) *testkit.Conn {
	t.Helper()
	c := testkit.Dial(t, sys.RoomAddr())
	c.Login(a.id, uid, token.Sign([]byte(a.secret), a.id, uid, time.Now().Add(time.Hour).Unix()), 30)
	return c
}

// statusOf is GET /v1/messages/{id} (?uid= when uid is set) with key.
func statusOf(t *testing.T, sys *system.System, key, id, uid string) (int, map[string]any) {
	t.Helper()
	path := "/v1/messages/" + id
	if uid != "" {
		path += "?uid=" + uid
	}
	code, out, _ := testkit.API(t, sys.CenterAddr(), "GET", path, key, "")
	return code, out
}

// wantStatus waits until the message's counts (and uid's state, when uid
// is set) are want.
func wantStatus(t *testing.T, sys *system.System, a statusApp, id, uid string, want map[string]any) {
	t.Helper()
	var last map[string]any
	ok := testkit.Poll(10*time.Second, func() bool {
		code, out := statusOf(t, sys, a.key, id, uid)
		last = out
		if code != 200 {
			return false
		}
		for k, v := range want {
			if k == "state" {
				u, _ := out["user"].(map[string]any)
				if u == nil || u["state"] != v {
					return false
				}
				continue
			}
			if fmt.Sprint(out[k]) != fmt.Sprint(v) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("message %s (uid %q): %v, want %v", id, uid, last, want)
	}
}

func pushTTL(t *testing.T, sys *system.System, a statusApp, uids []string, text string, qos, ttl int) string {
	t.Helper()
	body := fmt.Sprintf(`{"uids":%s,"text":%q,"qos":%d,"ttl":%d}`, mustJSON(uids), text, qos, ttl)
	code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", fmt.Sprintf("/v1/apps/%d/push", a.id), a.key, body)
	if code != 200 && code != 202 {
		t.Fatalf("push: %d %v", code, out)
	}
	return out["msg_id"].(string)
}

// Issue 14, Done-when 4 and 5: GET /v1/messages/{id} is right after each
// step of a message's life (a unicast to an offline user, its delivery,
// its ACK; another one's expiry; a QoS 0 unicast; a multicast; a broadcast
// while it runs and after it), on every store, and tenants see nothing of
// each other's messages.
func TestDeliveryStatus(t *testing.T) {
	for name, store := range tenantStores {
		t.Run(name, func(t *testing.T) {
			run := strconv.FormatInt(time.Now().UnixNano(), 36)
			a := statusApp{id: uint32(1000 + time.Now().UnixNano()%1_000_000), key: "status-key-" + run, secret: "status-secret-" + run + "-xxxxxxxx"}
			cfg := testkit.ConfigYAML("")
			slow := statusApp{id: a.id + 1, key: a.key + "-slow", secret: a.secret + "-slow"}
			cfg = strings.Replace(cfg, "room:\n", fmt.Sprintf("  - {id: %d, name: status, secret: %s, api_key: %s}\n"+
				"  - {id: %d, name: slow, secret: %s, api_key: %s, push_rate: 1, push_burst: 1}\nroom:\n",
				a.id, a.secret, a.key, slow.id, slow.secret, slow.key), 1)
			cfg += "saver:\n  expire_every: 200ms\n"
			sys := systest.Start(t, cfg, func(o *system.Options) { store(t, o) })

			// A unicast to an offline user: stored; delivered at login: sent; ACKed.
			alice := "alice-" + run
			id := pushTTL(t, sys, a, []string{alice}, "for alice", 1, 600)
			wantStatus(t, sys, a, id, alice, map[string]any{"kind": "unicast", "app": a.id, "targets": 1, "stored": 1, "sent": 0, "acked": 0, "queued": 0, "state": "stored"})
			c := a.login(t, sys, alice)
			mid := c.ExpectPushText(a.id, "for alice")
			wantStatus(t, sys, a, id, alice, map[string]any{"stored": 1, "sent": 1, "acked": 0, "state": "sent"})
			c.Ack(mid)
			wantStatus(t, sys, a, id, alice, map[string]any{"stored": 1, "sent": 1, "acked": 1, "state": "acked"})

			// Tenants: another app's key, and an unknown id, get 404.
			if code, out := statusOf(t, sys, testkit.Key2, id, ""); code != 404 {
				t.Fatalf("another app's key read the status: %d %v", code, out)
			}
			if code, _ := statusOf(t, sys, a.key, "12345", ""); code != 404 {
				t.Fatalf("unknown message: %d", code)
			}
			if code, out := statusOf(t, sys, testkit.AdminKey, id, ""); code != 200 || out["acked"] != float64(1) {
				t.Fatalf("admin key: %d %v", code, out)
			}

			// A unicast nobody fetches expires.
			bob := "bob-" + run
			idx := pushTTL(t, sys, a, []string{bob}, "expires", 1, 1)
			wantStatus(t, sys, a, idx, bob, map[string]any{"stored": 1, "expired": 1, "state": "expired"})

			// QoS 0 to an online user: sent, never stored.
			id0 := pushTTL(t, sys, a, []string{alice}, "qos 0", 0, 600)
			c.ExpectPushText(a.id, "qos 0")
			wantStatus(t, sys, a, id0, alice, map[string]any{"kind": "unicast", "stored": 0, "sent": 1, "state": "sent"})

			// A multicast: one online (alice), two offline.
			m2, m3 := "m2-"+run, "m3-"+run
			idm := pushTTL(t, sys, a, []string{alice, m2, m3}, "to three", 1, 600)
			c.ExpectPushText(a.id, "to three")
			wantStatus(t, sys, a, idm, m2, map[string]any{"kind": "multicast", "targets": 3, "stored": 3, "sent": 1, "acked": 0, "state": "stored"})
			wantStatus(t, sys, a, idm, alice, map[string]any{"state": "sent"})

			// A broadcast at 10/s to 20 more connections: counts move while
			// it runs, and the job answers them too.
			var conns []*testkit.Conn
			for i := range 20 {
				conns = append(conns, a.login(t, sys, fmt.Sprintf("b%d-%s", i, run)))
			}
			code, out, _ := testkit.API(t, sys.CenterAddr(), "POST", fmt.Sprintf("/v1/apps/%d/broadcast", a.id), a.key, `{"text":"to all","qos":1,"rate":10}`)
			if code != 202 {
				t.Fatalf("broadcast: %d %v", code, out)
			}
			idb, job := out["msg_id"].(string), out["job_id"].(string)
			var during map[string]any
			testkit.WaitFor(t, "the broadcast under way", 10*time.Second, func() bool {
				_, during = statusOf(t, sys, a.key, idb, "")
				_, js, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/jobs/"+job, a.key, "")
				s, _ := during["sent"].(float64)
				return js["state"] == "running" && s > 0 && s < 21
			})
			if during["kind"] != "broadcast" || during["stored"] != float64(1) {
				t.Fatalf("broadcast while it runs: %v", during)
			}
			for _, bc := range append(conns, c) {
				id := bc.ExpectPushText(a.id, "to all")
				bc.Ack(id)
			}
			wantStatus(t, sys, a, idb, "", map[string]any{"kind": "broadcast", "stored": 1, "sent": 21, "acked": 21})
			testkit.WaitFor(t, "the job done with its counts", 10*time.Second, func() bool {
				_, js, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/jobs/"+job, a.key, "")
				return js["state"] == "done" && js["sent"] == float64(21) && js["acked"] == float64(21)
			})
			wantStatus(t, sys, a, idb, "b0-"+run, map[string]any{"state": "acked"})

			// Queued in the send queue (push_rate 1): counted, then released.
			pushTTL(t, sys, slow, []string{"q1-" + run}, "first", 1, 600)
			idq := pushTTL(t, sys, slow, []string{"q2-" + run}, "second, queued", 1, 600)
			code, out = statusOf(t, sys, slow.key, idq, "q2-"+run)
			if u, _ := out["user"].(map[string]any); code != 200 || out["queued"] != float64(1) || u["state"] != "queued" {
				t.Fatalf("a queued push: %d %v", code, out)
			}
			wantStatus(t, sys, slow, idq, "q2-"+run, map[string]any{"queued": 0, "stored": 1, "state": "stored"})
		})
	}
}
