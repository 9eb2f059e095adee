package loadgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct{ max, step, top float64 }{
		{19.68, 5, 20}, {3.05, 1, 4}, {176.5, 50, 200}, {1, 0.2, 1}, {0.35, 0.1, 0.4}, {17.04, 5, 20}, {100, 20, 100}, {0, 1, 4},
	} {
		step, top := niceScale(tc.max)
		if step != tc.step || top != tc.top {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.max, step, top, tc.step, tc.top)
		}
	}
}

func TestFmtValue(t *testing.T) {
	for _, tc := range []struct {
		unit string
		v    float64
		want string
	}{
		{"B", 1404, "1,404 B"}, {"B", 20154, "19.7 KiB"}, {"B", 847.5, "848 B"}, {"B", 3359, "3,359 B"}, {"B", 30 << 20, "30.0 MiB"},
		{"msg/s", 3.05e6, "3.05 M/s"}, {"msg/s", 368100, "368 k/s"}, {"msg/s", 49970, "50.0 k/s"}, {"msg/s", 12, "12.0 /s"},
		{"ms", 72.55, "72.5 ms"}, {"ms", 1.393, "1.39 ms"}, {"ms", 2500, "2.50 s"}, {"ms", 0, "0 ms"},
	} {
		if got := fmtValue(tc.unit, tc.v); got != tc.want {
			t.Errorf("fmtValue(%q, %v) = %q, want %q", tc.unit, tc.v, got, tc.want)
		}
	}
}

// A chart has round ticks in a readable unit, a value label per bar, no
// exponent, and reads back exactly (redraw).
func TestBarChartRoundTrip(t *testing.T) {
	bars := []bar{{"lcpush", 1404}, {"naive", 20154}, {"nats", 19160}, {"mqtt", 847.5}}
	svg := string(barChart("RSS per idle authenticated connection", "B", bars))
	for _, want := range []string{">0 KiB<", ">5 KiB<", ">20 KiB<", ">1,404 B<", ">19.7 KiB<", ">848 B<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %s:\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "e+") {
		t.Errorf("chart has an exponent:\n%s", svg)
	}
	title, unit, got, err := parseChart([]byte(svg))
	if err != nil || title != "RSS per idle authenticated connection" || unit != "B" || len(got) != len(bars) {
		t.Fatalf("parse: %q %q %v %v", title, unit, got, err)
	}
	for i := range bars {
		if got[i] != bars[i] {
			t.Errorf("bar %d: %v, want %v", i, got[i], bars[i])
		}
	}
}

// Charts drawn by the old code (value in the title, %.4g) are read too,
// which is how docs/bench was redrawn.
func TestRedrawOldChart(t *testing.T) {
	old := `<svg xmlns="http://www.w3.org/2000/svg" width="720" height="360" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/><text x="70" y="20" font-size="14">sustained broadcast stream: delivered messages per second</text>
<line x1="70" x2="710" y1="40.0" y2="40.0" stroke="#ddd"/><text x="66" y="44.0" text-anchor="end">3.05e+06 msg/s</text>
<rect x="86.0" y="300.5" width="128.0" height="19.5" fill="#4C78A8"><title>lcpush 400/s: 3.05e+06 msg/s</title></rect>
<rect x="246.0" y="40.0" width="128.0" height="280.0" fill="#4C78A8"><title>naive 400/s: 3.681e+05 msg/s</title></rect>
</svg>
`
	dir := t.TempDir()
	p := filepath.Join(dir, "stream.svg")
	if err := os.WriteFile(p, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if done, err := redrawCharts(dir); err != nil || len(done) != 1 {
		t.Fatalf("redraw: %v %v", done, err)
	}
	b, _ := os.ReadFile(p)
	svg := string(b)
	for _, want := range []string{">3.05 M/s<", ">368 k/s<", ">4 M/s<", `data-value="368100"`, "delivered messages per second"} {
		if !strings.Contains(svg, want) {
			t.Errorf("redrawn chart lacks %s:\n%s", want, svg)
		}
	}
}
