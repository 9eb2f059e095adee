package saver

import (
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Service exposes the delivery status of its store.
func TestServiceStatus(t *testing.T) {
	s, err := New(Config{}, NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(bg) })
	exp := time.Now().Add(time.Hour).Unix()
	if err := s.OpenStatus(bg, push.MessageStatus{MsgID: 1, App: 1, Kind: push.KindUnicast, Expires: exp}, []string{"u"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(bg, msg(1, 1, exp), []string{"u"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSent(bg, []push.StatusDelta{{MsgID: 1, App: 1, UID: "u", Sent: 1}}); err != nil {
		t.Fatal(err)
	}
	st, ok, err := s.Status(bg, 1, 1)
	if err != nil || !ok || st.Stored != 1 || st.Sent != 1 || st.Targets != 1 {
		t.Fatalf("status %+v %v %v", st, ok, err)
	}
	if state, err := s.UserState(bg, 1, 1, "u"); err != nil || state != push.StateSent {
		t.Fatalf("user state %q %v", state, err)
	}
	_ = s.Shutdown(bg)
	if _, _, err := s.Status(bg, 1, 1); err == nil {
		t.Fatal("status after shutdown: no error")
	}
}
