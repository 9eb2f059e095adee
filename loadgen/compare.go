package loadgen

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Compare reads every result.json under in (one scenario run per folder, as
// scripts/bench.sh leaves them) and writes into out the side-by-side view
// that docs/benchmarks.md shows: compare.md (the tables, ratios to lcpush)
// and one SVG chart per scenario. Of several runs of the same thing the
// newest counts.
func Compare(in, out string) error {
	rs, skipped, err := readResults(in)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return fmt.Errorf("%w: no result.json under %s", ErrUsage, in)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Benchmarks side by side\n\n%d runs from %s, %s to %s.\n\n", len(rs), in,
		rs[0].Started.Format("2006-01-02 15:04"), rs[len(rs)-1].Started.Format("15:04"))
	if len(skipped) > 0 {
		fmt.Fprintf(&md, "Not single runs, left out (summaries of several runs, read their own report.md): %s.\n\n", strings.Join(skipped, ", "))
	}
	charts := map[string][]bar{}
	compareIdle(&md, rs, charts)
	compareStorm(&md, rs)
	compareFanout(&md, rs, charts)
	compareUnicast(&md, rs, charts)
	titles := map[string][2]string{
		"idle-rss-per-conn": {"RSS per idle authenticated connection", "B"},
		"idle-lcpush-by-n":  {"lcpush RSS per idle connection by N", "B"},
		"fanout-last-p50":   {"one 256 B message to N connections: last client has it, p50 of the rounds", "ms"},
		"stream-delivered":  {"sustained broadcast stream: delivered messages per second", "msg/s"},
		"unicast-latency":   {"unicast through the API: p99 from the scheduled send", "ms"},
	}
	for name, bs := range charts {
		t := titles[name]
		if err := os.WriteFile(filepath.Join(out, name+".svg"), barChart(t[0], t[1], bs), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(out, "compare.md"), []byte(md.String()), 0o644)
}

// readResults reads every single-run result.json under in; skipped names
// the ones of another shape (the summaries of several runs, such as
// sustain-runs-*, whose "target" is a name).
func readResults(in string) (rs []*Result, skipped []string, err error) {
	err = filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "result.json" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				rel, _ := filepath.Rel(in, filepath.Dir(p))
				skipped = append(skipped, rel)
				return nil
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		if r.Target != nil {
			rs = append(rs, &r)
		}
		return nil
	})
	slices.SortStableFunc(rs, func(a, b *Result) int { return a.Started.Compare(b.Started) })
	return rs, skipped, err
}

// latest keeps, per key, the newest result that has one.
func latest(rs []*Result, key func(*Result) (string, bool)) (map[string]*Result, []string) {
	m := map[string]*Result{}
	var keys []string
	for _, r := range rs {
		k, ok := key(r)
		if !ok {
			continue
		}
		if _, seen := m[k]; !seen {
			keys = append(keys, k)
		}
		m[k] = r
	}
	return m, keys
}

// targetOrder sorts lcpush first, then naive, nats, mqtt.
func targetOrder(kind string) int {
	return cmp.Or(slices.Index([]string{"lcpush", "lcpush-ws", "external", "naive", "nats", "mqtt", "centrifugo"}, kind)+1, 9)
}

func sortByTarget(keys []string, m map[string]*Result) {
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(targetOrder(m[a].Target.Kind), targetOrder(m[b].Target.Kind)), cmp.Compare(m[a].N, m[b].N))
	})
}

func ratio(ours, theirs float64) string {
	if ours <= 0 || theirs <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", theirs/ours)
}

func compareIdle(md *strings.Builder, rs []*Result, charts map[string][]bar) {
	m, keys := latest(rs, func(r *Result) (string, bool) {
		return fmt.Sprintf("%s/%d/%d", r.Target.Kind, r.N, len(r.Target.PIDs)), r.Scenario == "idle" && r.Idle != nil
	})
	if len(keys) == 0 {
		return
	}
	sortByTarget(keys, m)
	ref := map[int]float64{} // lcpush RSS/conn by N, one process
	for _, k := range keys {
		if r := m[k]; r.Target.Kind == "lcpush" && len(r.Target.PIDs) == 0 {
			ref[r.N] = r.Idle.RSSPerConn
		}
	}
	md.WriteString("## (a) Idle memory per connection\n\n| target | N | processes | RSS / conn | Go heap / conn | goroutines / conn | kernel slab / conn (both ends) | RSS vs lcpush |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range keys {
		r := m[k]
		i := r.Idle
		fmt.Fprintf(md, "| %s | %d | %d | %.0f B | %.0f B | %.2f | %.0f B | %s |\n", r.Target.Kind, r.N, 1+len(r.Target.PIDs),
			i.RSSPerConn, i.HeapPerConn, i.GoroutinesPerConn, i.SlabPerConn, ratio(ref[r.N], i.RSSPerConn))
		switch {
		case r.Target.Kind == "lcpush" && len(r.Target.PIDs) == 0:
			charts["idle-lcpush-by-n"] = append(charts["idle-lcpush-by-n"], bar{fmt.Sprintf("N=%d", r.N), i.RSSPerConn})
			if r.N == 10000 {
				charts["idle-rss-per-conn"] = append(charts["idle-rss-per-conn"], bar{"lcpush", i.RSSPerConn})
			}
		case len(r.Target.PIDs) > 0:
			charts["idle-lcpush-by-n"] = append(charts["idle-lcpush-by-n"], bar{fmt.Sprintf("N=%d (%d procs)", r.N, 1+len(r.Target.PIDs)), i.RSSPerConn})
		case r.N == 10000:
			charts["idle-rss-per-conn"] = append(charts["idle-rss-per-conn"], bar{r.Target.Kind, i.RSSPerConn})
		}
	}
	md.WriteString("\n(ratio > 1: the target uses that many times lcpush's RSS per connection at the same N)\n\n")
}

func compareStorm(md *strings.Builder, rs []*Result) {
	m, keys := latest(rs, func(r *Result) (string, bool) { return r.Target.Kind, r.Storm != nil })
	if len(keys) == 0 {
		return
	}
	md.WriteString("## (b) Connect storm\n\n| target | tried | cap | authenticated | per second | handshake p50 / p99 | refused (clients / room metric) | /readyz after | PONGs / online | dropped after |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
	for _, k := range keys {
		r := m[k]
		s := r.Storm
		fmt.Fprintf(md, "| %s | %d | %d | %d | %.0f | %.2f / %.2f ms | %d / %.0f | %v (%.1f ms) | %d / %d | %d |\n", k, s.Tried, s.Cap, s.Authed,
			s.AuthedPerSec, r.Connect.Handshake.P50ms, s.HandshakeP99, s.Refused, s.ServerRefused, s.Ready, s.ReadyMs, s.Pongs, s.Online, s.DroppedAfter)
	}
	md.WriteString("\n")
}

func compareFanout(md *strings.Builder, rs []*Result, charts map[string][]bar) {
	m, keys := latest(rs, func(r *Result) (string, bool) {
		if r.Scenario != "fanout" || r.Stream == nil {
			return "", false
		}
		return fmt.Sprintf("%s/%d/%g", r.Target.Kind, r.N, r.Stream.Rate), true
	})
	// Rounds: the newest run of each target.
	rounds, rkeys := latest(rs, func(r *Result) (string, bool) {
		return fmt.Sprintf("%s/%d", r.Target.Kind, r.N), r.Scenario == "fanout" && r.Fanout != nil && r.Fanout.Complete > 0
	})
	if len(rkeys) == 0 {
		return
	}
	sortByTarget(rkeys, rounds)
	ref := 0.0
	for _, k := range rkeys {
		if r := rounds[k]; r.Target.Kind == "lcpush" {
			ref = r.Fanout.P50LastMs
		}
	}
	md.WriteString("## (c) Broadcast fan-out\n\n| target | N | rounds complete | last client p50 / p99 | per delivery p50 / p99 | p50 vs lcpush |\n|---|---:|---:|---:|---:|---:|\n")
	for _, k := range rkeys {
		r := rounds[k]
		f := r.Fanout
		fmt.Fprintf(md, "| %s | %d | %d of %d | %.1f / %.1f ms | %.1f / %.1f ms | %s |\n", r.Target.Kind, r.N, f.Complete, len(f.Rounds),
			f.P50LastMs, f.P99LastMs, f.Latency.P50ms, f.Latency.P99ms, ratio(ref, f.P50LastMs))
		charts["fanout-last-p50"] = append(charts["fanout-last-p50"], bar{r.Target.Kind, f.P50LastMs})
	}
	md.WriteString("\n(ratio > 1: the target took that many times lcpush's time)\n\n")
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b].Stream.Rate, m[a].Stream.Rate), cmp.Compare(targetOrder(m[a].Target.Kind), targetOrder(m[b].Target.Kind)))
	})
	refs := map[float64]float64{}
	for _, k := range keys {
		if r := m[k]; r.Stream != nil && r.Target.Kind == "lcpush" {
			refs[r.Stream.Rate] = r.Stream.DeliveredPerSec
		}
	}
	md.WriteString("| stream | target | asked deliveries/s | sent / skipped / 429 | delivered / expected | delivered/s | drained after | latency p50 / p99 | lcpush vs target |\n|---|---|---:|---:|---:|---:|---|---:|---:|\n")
	for _, k := range keys {
		r := m[k]
		s := r.Stream
		if s == nil {
			continue
		}
		drained := "no"
		if s.Drained {
			drained = fmt.Sprintf("%.0f ms", s.DrainMs)
		}
		fmt.Fprintf(md, "| %g/s | %s | %.0f | %d / %d / %d | %d / %d | %.0f | %s | %.0f / %.0f ms | %s |\n", s.Rate, r.Target.Kind,
			s.Rate*float64(r.N), s.Sent, s.Skipped, s.RateLimited, s.Delivered, s.Expected, s.DeliveredPerSec, drained,
			s.Latency.P50ms, s.Latency.P99ms, ratio(s.DeliveredPerSec, refs[s.Rate]))
		charts["stream-delivered"] = append(charts["stream-delivered"], bar{fmt.Sprintf("%s %g/s", r.Target.Kind, s.Rate), s.DeliveredPerSec})
	}
	md.WriteString("\n(ratio > 1: lcpush delivered that many times the target's rate)\n\n")
}

func compareUnicast(md *strings.Builder, rs []*Result, charts map[string][]bar) {
	m, keys := latest(rs, func(r *Result) (string, bool) {
		return r.Target.Kind + "/" + r.Target.Store, len(r.Unicast) > 0
	})
	if len(keys) == 0 {
		return
	}
	sortByTarget(keys, m)
	md.WriteString("## (d) Unicast end to end\n\n| target | store | rate | QoS | pushes ok / failed | delivered / lost | p50 | p90 | p99 | p999 | max | API answer p99 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range keys {
		r := m[k]
		for _, u := range r.Unicast {
			l := u.Latency
			fmt.Fprintf(md, "| %s | %s | %.0f/s | %d | %d / %d | %d / %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n",
				r.Target.Kind, cmp.Or(r.Target.Store, "-"), u.Rate, u.QoS, u.OK, u.Failed, u.Delivered, u.Lost,
				l.P50ms, l.P90ms, l.P99ms, l.P999, l.Maxms, u.API.P99ms)
			charts["unicast-latency"] = append(charts["unicast-latency"], bar{fmt.Sprintf("%s %.0f/s", cmp.Or(r.Target.Store, r.Target.Kind), u.Rate), l.P99ms})
		}
	}
	md.WriteString("\n")
}
