package loadgen

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/lcpush/lcpush/loadgen/naive"
)

func TestUnicastAgainstNaive(t *testing.T) {
	s := startNaive(t)
	out := t.TempDir()
	var stdout strings.Builder
	// One connection: the naive server sends every push to everyone, so
	// with N = 1 a push is a unicast.
	err := Main(context.Background(), []string{"unicast", "-quiet", "-n", "1", "-room", s.Addr(),
		"-api", "http://" + s.HTTPAddr(), "-out", out, "-rates", "100,200", "-step", "500ms", "-senders", "4"},
		&stdout, io.Discard)
	if err != nil {
		t.Fatalf("unicast: %v\n%s", err, stdout.String())
	}
	r := readResult(t, out, "unicast-")
	if len(r.Unicast) != 2 {
		t.Fatalf("steps: %+v", r.Unicast)
	}
	for i, want := range []int64{50, 100} {
		u := r.Unicast[i]
		if u.Scheduled != want || u.OK != want || u.Failed != 0 || u.Delivered != want || u.Lost != 0 {
			t.Errorf("step %d: %+v", i, u)
		}
		if u.Latency.Count != uint64(want) || u.Latency.P99ms <= 0 {
			t.Errorf("step %d latency: %+v", i, u.Latency)
		}
	}
	if !strings.Contains(stdout.String(), "unicast rate") {
		t.Errorf("summary missing:\n%s", stdout.String())
	}
}

func TestStormHealthCheck(t *testing.T) {
	s := startNaiveWith(t, naive.Config{HB: 1})
	out := t.TempDir()
	var stdout strings.Builder
	// hb 1 asked and granted: the check waits one heartbeat (and 3 s),
	// then wants every connection's PING answered.
	err := Main(context.Background(), []string{"storm", "-quiet", "-n", "30", "-hb", "1", "-room", s.Addr(),
		"-out", out, "-rate", "10000"}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("storm: %v\n%s", err, stdout.String())
	}
	st := readResult(t, out, "storm-").Storm
	if st == nil || st.Authed != 30 || st.Refused != 0 || st.Online != 30 || st.Pongs < 30 || st.DroppedAfter != 0 {
		t.Fatalf("storm: %+v", st)
	}
}

// The peers are measured only where their Debian packages are installed.
func TestPeersFanout(t *testing.T) {
	for _, tc := range []struct{ target, bin string }{{"nats", "nats-server"}, {"mqtt", "mosquitto"}} {
		t.Run(tc.target, func(t *testing.T) {
			if _, err := exec.LookPath(tc.bin); err != nil {
				if os.Getenv("LCPUSH_INTEGRATION") == "1" {
					t.Fatalf("%s not installed (scripts/test.sh installs it)", tc.bin)
				}
				t.Skip(tc.bin + " not installed")
			}
			out := t.TempDir()
			var stdout strings.Builder
			err := Main(context.Background(), []string{"fanout", "-quiet", "-target", tc.target, "-n", "20",
				"-rounds", "2", "-gap", "10ms", "-stream", "500ms", "-stream-rate", "20", "-out", out}, &stdout, io.Discard)
			if err != nil {
				t.Fatalf("fanout: %v\n%s", err, stdout.String())
			}
			r := readResult(t, out, "fanout-")
			if r.Fanout == nil || r.Fanout.Complete != 2 || r.Stream == nil || !r.Stream.Drained ||
				r.Stream.Delivered != 20*r.Stream.Sent || r.Stream.Sent == 0 {
				t.Fatalf("fanout %+v stream %+v", r.Fanout, r.Stream)
			}
		})
	}
}

func TestLabelledValue(t *testing.T) {
	text := []byte("# HELP x\nlcpush_room_refused_total{reason=\"max_conns\"} 7\n" +
		"lcpush_room_refused_total{reason=\"ip_denied\"} 2\nlcpush_room_refused_totalx{reason=\"max_conns\"} 9\n")
	for _, tc := range []struct {
		label string
		want  float64
	}{{`reason="max_conns"`, 7}, {`reason="ip_denied"`, 2}, {`reason`, 9}, {`reason="none"`, 0}} {
		if got := labelledValue(text, "lcpush_room_refused_total", tc.label); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.label, got, tc.want)
		}
	}
}

func TestMQTTRemainingLength(t *testing.T) {
	for _, tc := range []struct {
		rem  int
		want []byte
	}{{0, []byte{0x30, 0}}, {127, []byte{0x30, 0x7F}}, {128, []byte{0x30, 0x80, 0x01}},
		{16383, []byte{0x30, 0xFF, 0x7F}}, {16384, []byte{0x30, 0x80, 0x80, 0x01}}} {
		if got := appendMQTTHeader(nil, 0x30, tc.rem); !bytes.Equal(got, tc.want) {
			t.Errorf("%d: % x, want % x", tc.rem, got, tc.want)
		}
	}
}
