package system_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/internal/testkit/systest"
	"github.com/lcpush/lcpush/system"
)

// TestDispatchTransportsSingleProcess: in one process the dispatcher hands
// out the local room's addresses of every announced transport.
func TestDispatchTransportsSingleProcess(t *testing.T) {
	sys := systest.Start(t, testkit.ConfigYAML(""), func(o *system.Options) {
		o.PublicTLS = []string{"203.0.113.7:7443"}
		o.PublicWS = []string{"203.0.113.7:7001"}
		o.PublicWSS = []string{"wss://push.example.com/v1/ws"}
	})
	want := map[string][]string{
		"":    {sys.RoomAddr()},
		"tcp": {sys.RoomAddr()},
		"tls": {"203.0.113.7:7443"},
		"ws":  {"ws://203.0.113.7:7001/v1/ws"},
		"wss": {"wss://push.example.com:443/v1/ws"},
	}
	for tr, addrs := range want {
		q := url.Values{"uid": {"u1"}}
		if tr != "" {
			q.Set("transport", tr)
		}
		resp, err := http.Get("http://" + sys.DispatchAddr() + "/v1/dispatch?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		var ans struct {
			Addrs []string `json:"addrs"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !slices.Equal(ans.Addrs, addrs) {
			t.Errorf("transport %q: %d %v %v, want %v", tr, resp.StatusCode, ans.Addrs, err, addrs)
		}
	}
}
