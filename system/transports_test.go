package system

import (
	"errors"
	"slices"
	"testing"

	"github.com/lcpush/lcpush/pkg/push"
)

// TestRoomTransports: the room's public addresses of the other transports
// are checked and normalised before anything starts.
func TestRoomTransports(t *testing.T) {
	o := Options{
		PublicTLS: []string{"203.0.113.7:7443", " ", "203.0.113.7:7443"},
		PublicWS:  []string{"203.0.113.7:7001", "ws://push.example.com/v1/ws"},
		PublicWSS: []string{"wss://push.example.com", "push.example.com:8443"},
	}
	got, err := o.roomTransports()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"203.0.113.7:7443"}; !slices.Equal(got.tls, want) {
		t.Errorf("tls = %v, want %v", got.tls, want)
	}
	if want := []string{"ws://203.0.113.7:7001/v1/ws", "ws://push.example.com:80/v1/ws"}; !slices.Equal(got.ws, want) {
		t.Errorf("ws = %v, want %v", got.ws, want)
	}
	if want := []string{"wss://push.example.com:443/v1/ws", "wss://push.example.com:8443/v1/ws"}; !slices.Equal(got.wss, want) {
		t.Errorf("wss = %v, want %v", got.wss, want)
	}
	if got, err := (&Options{}).roomTransports(); err != nil || got.tls != nil || got.ws != nil || got.wss != nil {
		t.Errorf("no addresses: %+v, %v", got, err)
	}
	for _, bad := range []Options{
		{PublicTLS: []string{"tls://h:1"}},
		{PublicTLS: []string{"h"}},
		{PublicWS: []string{"wss://h:1/v1/ws"}},
		{PublicWS: []string{"ws://h:1/elsewhere"}},
		{PublicWSS: []string{"ws://h:1"}},
		{PublicWSS: []string{"https://h:1"}},
	} {
		if _, err := bad.roomTransports(); !errors.Is(err, push.ErrBadAddr) {
			t.Errorf("%+v: %v, want ErrBadAddr", bad, err)
		}
	}
}
