package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/system"
)

// The reconnect window end to end: a device that drops and comes back
// within room.resume_window is never offline for the product or the
// register, gets its unACKed QoS 1 message again, and its resume costs
// fewer register and store calls than its first login; a window that
// ends unclaimed reports it offline.
func TestE2EReconnectWindow(t *testing.T) {
	for name, store := range tenantStores { // every store (issue 14, Done-when 5)
		t.Run(name, func(t *testing.T) { reconnectWindow(t, func(o *system.Options) { store(t, o) }) })
	}
}

func reconnectWindow(t *testing.T, store func(*system.Options)) {
	cb := testkit.NewProduct(t, testkit.Secret3)
	sys := systest.Start(t, testkit.ConfigYAML(cb.URL())+"  resume_window: 2s\n", store)
	uid := "flashy-" + strconv.FormatInt(time.Now().UnixNano(), 36) // a shared Redis keeps earlier runs
	online := func() bool {
		_, out, _ := testkit.API(t, sys.CenterAddr(), "GET", "/v1/apps/3/users/"+uid, testkit.Key3, "")
		return out["online"] == true
	}
	testkit.PushText(t, sys.CenterAddr(), 3, testkit.Key3, []string{uid}, "keep me", 1)

	before := testkit.Counter(t, "lcpush_room_session_calls_total", nil)
	c1 := testkit.Login(t, sys.RoomAddr(), 3, uid)
	c1.ExpectPushText(3, "keep me") // not ACKed
	testkit.WaitFor(t, "the online event", 5*time.Second, func() bool { return cb.StatusCount(uid, "online") == 1 })
	fresh := testkit.Counter(t, "lcpush_room_session_calls_total", nil) - before

	c1.Close()
	// The room has closed the session (its own count says so): held, the
	// register still routes to it, the product hears nothing.
	testkit.WaitFor(t, "the room to close the session", 5*time.Second, func() bool { return sys.Room.Online() == 0 })
	if !online() {
		t.Fatal("offline in the register during the reconnect window")
	}
	before = testkit.Counter(t, "lcpush_room_session_calls_total", nil)
	c2 := testkit.Login(t, sys.RoomAddr(), 3, uid)
	c2.ExpectPushText(3, "keep me") // redelivered from storage
	resumed := testkit.Counter(t, "lcpush_room_session_calls_total", nil) - before
	if resumed >= fresh {
		t.Fatalf("a resume made %v register/store calls, a fresh login %v: want fewer", resumed, fresh)
	}
	t.Logf("register+store calls: fresh login %v, resume %v", fresh, resumed)
	if on, off := cb.StatusCount(uid, "online"), cb.StatusCount(uid, "offline"); on != 1 || off != 0 {
		t.Fatalf("status events after the resume: online %d offline %d, want 1 and 0", on, off)
	}
	if !online() {
		t.Fatal("offline after the resume")
	}

	// Gone for good: the window ends and the product hears it once.
	c2.Close()
	testkit.WaitFor(t, "the offline event after the window", 10*time.Second, func() bool { return cb.StatusCount(uid, "offline") == 1 })
	if online() {
		t.Fatal("still online after the window")
	}
}
