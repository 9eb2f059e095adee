package loadgen

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

type bar struct {
	label string
	v     float64
}

// Chart geometry, in pixels; font sizes are those of the SVG.
const (
	chartW     = 720
	chartTop   = 44 // the title above, value labels of the highest bar below it
	chartRight = 12
	charW      = 6.4 // average advance of an 11 px sans-serif character
)

// barChart draws a small self-contained SVG bar chart of bars in unit
// ("B", "ms", "msg/s", anything else as is): a round scale (0 and 4 or 5
// ticks of 1, 2, 2.5 or 5 times a power of ten, in KiB/MiB, s, k/s or M/s
// when the values call for it), the value of every bar above it, and
// margins measured from the labels so that none is cut off. Every bar
// keeps its exact value in data-value (and its label in data-label), from
// which redrawCharts draws the chart again.
func barChart(title, unit string, bars []bar) []byte {
	maxV := 0.0
	for _, b := range bars {
		maxV = max(maxV, b.v)
	}
	axis := scaleFor(unit, maxV)
	step, top := niceScale(maxV / axis.div)
	var ticks []string
	tickW := 0
	for v := 0.0; v <= top+step/2; v += step {
		t := fmtTick(v, step) + " " + axis.unit
		ticks = append(ticks, t)
		tickW = max(tickW, len(t))
	}
	left := 14 + int(float64(tickW)*charW)
	n := max(len(bars), 1)
	slot := float64(chartW-left-chartRight) / float64(n)
	labelW := 0
	for _, b := range bars {
		labelW = max(labelW, len(b.label))
	}
	// Labels wider than their slot are written at an angle (40 degrees):
	// the bottom margin takes their height, the left one the first one's
	// reach to the left of its bar.
	slant := float64(labelW)*charW > slot*0.95
	h, bottom := 360, 34
	if slant {
		reach := float64(labelW) * charW
		bottom = 24 + int(reach*math.Sin(40*math.Pi/180))
		h = 300 + bottom
		if need := int(reach*math.Cos(40*math.Pi/180)) + 6; float64(left)+slot/2 < float64(need) {
			left = need - int(slot/2)
			slot = float64(chartW-left-chartRight) / float64(n)
		}
	}
	valueSize := 11
	if slot < 60 {
		valueSize = 9
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11" data-unit="%s">`+"\n", chartW, h, esc(unit))
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14">%s</text>`+"\n", esc(title))
	plotH := float64(h - chartTop - bottom)
	for i, t := range ticks {
		y := float64(h-bottom) - plotH*float64(i)*step/top
		fmt.Fprintf(&s, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, chartW-chartRight, y, y, left-6, y+4, esc(t))
	}
	for i, b := range bars {
		bh := plotH * b.v / axis.div / top
		x := float64(left) + slot*float64(i)
		val := fmtValue(unit, b.v)
		fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4C78A8" data-label="%s" data-value="%s"><title>%s: %s</title></rect>`+"\n",
			x+slot*0.1, float64(h-bottom)-bh, slot*0.8, bh, esc(b.label), strconv.FormatFloat(b.v, 'g', -1, 64), esc(b.label), esc(val))
		fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="%d">%s</text>`+"\n",
			x+slot/2, float64(h-bottom)-bh-4, valueSize, esc(val))
		if slant {
			fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="end" transform="rotate(-40 %.1f %d)">%s</text>`+"\n",
				x+slot/2, h-bottom+14, x+slot/2, h-bottom+14, esc(b.label))
		} else {
			fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x+slot/2, h-bottom+16, esc(b.label))
		}
	}
	s.WriteString("</svg>\n")
	return []byte(s.String())
}

// scale is a display unit: values are divided by div and written with unit.
type scale struct {
	div  float64
	unit string
}

// scaleFor picks the unit an axis of values up to maxV is written in.
func scaleFor(unit string, maxV float64) scale {
	switch unit {
	case "B", "bytes":
		switch {
		case maxV >= 10<<20:
			return scale{1 << 20, "MiB"}
		case maxV >= 10<<10:
			return scale{1 << 10, "KiB"}
		}
		return scale{1, "B"}
	case "msg/s", "/s":
		switch {
		case maxV >= 2e6:
			return scale{1e6, "M/s"}
		case maxV >= 2e3:
			return scale{1e3, "k/s"}
		}
		return scale{1, "/s"}
	case "ms":
		if maxV >= 2000 {
			return scale{1000, "s"}
		}
	}
	return scale{1, unit}
}

// niceScale returns the tick step (1, 2, 2.5 or 5 times a power of ten)
// and the top of an axis from 0 that holds maxV in at most 5 steps.
func niceScale(maxV float64) (step, top float64) {
	if !(maxV > 0) || math.IsInf(maxV, 0) {
		return 1, 4
	}
	raw := maxV / 4
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * pow
		if math.Ceil(maxV/step-1e-9) <= 5 {
			break
		}
	}
	return step, step * math.Max(1, math.Ceil(maxV/step-1e-9))
}

// fmtTick writes an axis value with the decimals its step needs.
func fmtTick(v, step float64) string {
	d := 0
	for d < 6 && math.Abs(step*math.Pow(10, float64(d))-math.Round(step*math.Pow(10, float64(d)))) > 1e-9 {
		d++
	}
	if d == 0 {
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	}
	return strconv.FormatFloat(v, 'f', d, 64)
}

// fmtValue writes one bar's value with 3 significant digits in the unit
// that suits it alone (1,404 B; 19.7 KiB; 368 k/s; 3.05 M/s; 72.6 ms);
// bytes below 10 KiB are written whole.
func fmtValue(unit string, v float64) string {
	sc := scaleFor(unit, v)
	x := v / sc.div
	if unit == "B" && sc.div == 1 || x >= 1000 {
		return group(strconv.FormatFloat(math.Round(x), 'f', 0, 64)) + " " + sc.unit
	}
	d := 0
	if x > 0 {
		d = max(0, 2-int(math.Floor(math.Log10(x))))
	}
	return strconv.FormatFloat(x, 'f', d, 64) + " " + sc.unit
}

// group puts thousands separators into a string of digits.
func group(digits string) string {
	neg := strings.HasPrefix(digits, "-")
	digits = strings.TrimPrefix(digits, "-")
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

var (
	chartTitle = regexp.MustCompile(`<text x="[0-9.]+" y="20" font-size="14">([^<]*)</text>`)
	chartUnit  = regexp.MustCompile(`<svg [^>]*data-unit="([^"]*)"`)
	chartBar   = regexp.MustCompile(`data-label="([^"]*)" data-value="([^"]*)"`)
	// Charts drawn before data-value: the value is in the bar's title, as
	// "label: %.4g unit".
	chartOldBar = regexp.MustCompile(`<rect [^>]*><title>([^<]*): ([-0-9.e+]+) ([^<]*)</title></rect>`)
)

// parseChart reads back what barChart drew: the title, unit and bars.
func parseChart(svg []byte) (title, unit string, bars []bar, err error) {
	m := chartTitle.FindSubmatch(svg)
	if m == nil {
		return "", "", nil, fmt.Errorf("%w: not a bar chart of the load tool (no title)", ErrUsage)
	}
	title = unesc(string(m[1]))
	if m := chartUnit.FindSubmatch(svg); m != nil {
		unit = unesc(string(m[1]))
		for _, b := range chartBar.FindAllSubmatch(svg, -1) {
			v, err := strconv.ParseFloat(string(b[2]), 64)
			if err != nil {
				return "", "", nil, fmt.Errorf("%w: bar %q: %v", ErrUsage, b[1], err)
			}
			bars = append(bars, bar{unesc(string(b[1])), v})
		}
		return title, unit, bars, nil
	}
	for _, b := range chartOldBar.FindAllSubmatch(svg, -1) {
		v, err := strconv.ParseFloat(string(b[2]), 64)
		if err != nil {
			return "", "", nil, fmt.Errorf("%w: bar %q: %v", ErrUsage, b[1], err)
		}
		bars = append(bars, bar{unesc(string(b[1])), v})
		unit = unesc(string(b[3]))
	}
	if len(bars) == 0 {
		return "", "", nil, fmt.Errorf("%w: no bars", ErrUsage)
	}
	return title, unit, bars, nil
}

// redrawCharts draws every chart of the load tool under dir again from
// the data it holds (lcpush bench redraw DIR: after a change of barChart,
// e.g. docs/bench, whose raw results are not committed).
func redrawCharts(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.svg"))
	if err != nil {
		return nil, err
	}
	var done []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return done, err
		}
		title, unit, bars, err := parseChart(b)
		if err != nil {
			return done, fmt.Errorf("%s: %w", p, err)
		}
		if err := os.WriteFile(p, barChart(title, unit, bars), 0o644); err != nil {
			return done, err
		}
		done = append(done, p)
	}
	return done, nil
}

func unesc(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&amp;", "&").Replace(s)
}
