package saver

import (
	"errors"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

// Checkpoint changes nothing a Load or Ack sees: unknown uids and apps,
// repeated ends and apps, an end without apps and an empty call are
// harmless; a malformed uid refuses the call; a closed store refuses it.
func contractCheckpoint(t *testing.T, st Store) {
	exp := future()
	mustBroadcast(t, st, msg(1, 1, exp))
	mustBroadcast(t, st, msg(2, 1, exp))
	mustSave(t, st, msg(3, 2, exp), "a")
	wantLoadApps(t, st, "a", []uint32{1, 2}, 1, 2, 3)
	mustAckFor(t, st, "a", []uint32{1}, 1, 1)
	for _, tc := range []struct {
		name string
		ends []push.SessionEnd
	}{
		{"none", nil},
		{"ended sessions", []push.SessionEnd{{UID: "a", Apps: []uint32{1, 2}}}},
		{"unknown uid and apps", []push.SessionEnd{{UID: "nobody", Apps: []uint32{1, 99}}, {UID: "a", Apps: []uint32{99}}}},
		{"repeated", []push.SessionEnd{{UID: "a", Apps: []uint32{1, 1}}, {UID: "a", Apps: []uint32{1}}}},
		{"no apps", []push.SessionEnd{{UID: "a"}}},
	} {
		if err := st.Checkpoint(bg, tc.ends); err != nil {
			t.Fatalf("%s: checkpoint: %v", tc.name, err)
		}
		wantLoadApps(t, st, "a", []uint32{1, 2}, 2, 3)
		wantLoadApps(t, st, "nobody", []uint32{1}, 1, 2)
	}
	if err := st.Checkpoint(bg, []push.SessionEnd{{UID: "ok", Apps: []uint32{1}}, {UID: "", Apps: []uint32{1}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("checkpoint of an empty uid: %v, want ErrInvalid", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Checkpoint(bg, []push.SessionEnd{{UID: "a", Apps: []uint32{1}}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("checkpoint after close: %v, want ErrClosed", err)
	}
}
