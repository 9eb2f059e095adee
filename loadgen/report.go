package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// writeReport writes v as dir/result.json and md as dir/report.md (the
// summaries of several runs: bcast-qos, sustain).
func writeReport(dir string, v any, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "result.json"), js, 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "report.md"), []byte(md), 0o644)
	}
	return err
}

// writeResults writes result.json, report.md and the SVG charts into dir.
func writeResults(dir string, r *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), js, 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# %s: %s, N = %d\n\n", r.Scenario, r.Target.Kind, r.N)
	fmt.Fprintf(&md, "Run %s, %.1f s, %d CPUs, %s, %d client process(es).\n\n",
		r.Started.Format(time.RFC3339), r.Seconds, r.Machine.CPUs, r.Machine.Go, r.Processes)
	cmd := r.Command
	if cmd == "" { // a result.json written before Command existed
		cmd = commandLine([]string{"bench"}, r.Args)
	}
	fmt.Fprintf(&md, "Command (from the module root, lcpush built with `go build -o lcpush .`): `%s`\n\n", cmd)
	if r.Target.Store != "" {
		fmt.Fprintf(&md, "Store: %s.\n\n", r.Target.Store)
	}
	summary(&md, r)
	if r.Idle != nil {
		bars := []bar{
			{"RSS", r.Idle.RSSPerConn}, {"Go heap", r.Idle.HeapPerConn}, {"kernel TCP buffers (both ends)", r.Idle.KernelPerConn}, {"kernel slab (both ends)", r.Idle.SlabPerConn},
		}
		if err := os.WriteFile(filepath.Join(dir, "memory.svg"), barChart("bytes per idle connection", "B", bars), 0o644); err != nil {
			return err
		}
		md.WriteString("\n![memory per connection](memory.svg)\n")
	}
	if r.Fanout != nil && len(r.Fanout.Rounds) > 0 {
		var bs []bar
		for _, rd := range r.Fanout.Rounds {
			bs = append(bs, bar{fmt.Sprint(rd.ID), rd.LastMs})
		}
		if err := os.WriteFile(filepath.Join(dir, "fanout.svg"), barChart("time until the last client has it, per round", "ms", bs), 0o644); err != nil {
			return err
		}
		md.WriteString("\n![fan-out per round](fanout.svg)\n")
	}
	if r.Stream != nil && len(r.Stream.Samples) > 0 {
		var bs []bar
		for _, s := range r.Stream.Samples {
			bs = append(bs, bar{fmt.Sprintf("%.0fs", s.T), s.PerSec})
		}
		if err := os.WriteFile(filepath.Join(dir, "stream.svg"), barChart("delivered messages per second", "msg/s", bs), 0o644); err != nil {
			return err
		}
		md.WriteString("\n![stream](stream.svg)\n")
	}
	if len(r.Unicast) > 0 {
		var bs []bar
		for _, u := range r.Unicast {
			l := fmt.Sprintf("%.0f/s ", u.Rate)
			bs = append(bs, bar{l + "p50", u.Latency.P50ms}, bar{l + "p99", u.Latency.P99ms}, bar{l + "p999", u.Latency.P999})
		}
		if err := os.WriteFile(filepath.Join(dir, "unicast.svg"), barChart("unicast latency, scheduled send to client", "ms", bs), 0o644); err != nil {
			return err
		}
		md.WriteString("\n![unicast latency](unicast.svg)\n")
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()), 0o644)
}

// summary prints the Markdown tables (also what the terminal shows).
func summary(w io.Writer, r *Result) {
	c := r.Connect
	fmt.Fprintf(w, "| connect | value |\n|---|---|\n")
	fmt.Fprintf(w, "| authenticated | %d of %d |\n| dial / auth errors | %d / %d |\n", c.Authed, r.N, c.DialErrors, c.AuthErrors)
	fmt.Fprintf(w, "| authenticated per second | %.0f |\n| handshake p50 / p99 | %.2f / %.2f ms |\n", c.PerSec, c.Handshake.P50ms, c.Handshake.P99ms)
	fmt.Fprintf(w, "| refused before AUTH_OK | %d |\n", c.Refused)
	if c.Retried > 0 {
		fmt.Fprintf(w, "| refused logins dialed again (-retry) | %d |\n", c.Retried)
	}
	fmt.Fprintf(w, "| dropped by server / kicks / errors | %d / %d / %d |\n\n", r.Final.Dropped, r.Final.Kicks, r.Final.Errors)
	if s := r.Storm; s != nil {
		fmt.Fprintf(w, "| storm (cap %d, %d tried) | value |\n|---|---|\n", s.Cap, s.Tried)
		fmt.Fprintf(w, "| authenticated / refused (clients) / refused max_conns (room metric) | %d / %d / %.0f |\n", s.Authed, s.Refused, s.ServerRefused)
		fmt.Fprintf(w, "| authenticated per second / handshake p99 | %.0f / %.2f ms |\n", s.AuthedPerSec, s.HandshakeP99)
		fmt.Fprintf(w, "| /readyz after the storm | %v (%.1f ms) |\n", s.Ready, s.ReadyMs)
		fmt.Fprintf(w, "| server CPU during the connect phase: user / sys, per connection (tool's own) | %.0f / %.0f ms, %.1f µs (%.1f µs) |\n", s.ServerUserMs, s.ServerSysMs, s.ServerUsPerConn, s.ClientUsPerConn)
		for _, c := range s.CPUs {
			fmt.Fprintf(w, "| CPU %d during the connect phase: busy (user / sys / irq+softirq) | %.0f %% (%.0f / %.0f / %.0f) |\n", c.CPU, c.Busy, c.User, c.Sys, c.Softirq)
		}
		fmt.Fprintf(w, "| PONGs within %.0f s / online | %d / %d |\n", s.PongWaitSec, s.Pongs, s.Online)
		fmt.Fprintf(w, "| authenticated connections dropped | %d |\n\n", s.DroppedAfter)
	}
	if len(r.Unicast) > 0 {
		fmt.Fprintf(w, "| unicast rate | QoS | s | ok / failed / offline | achieved/s | delivered / lost | p50 / p99 / p999 / max ms (scheduled -> client) | API answer p99 ms |\n|---|---|---|---|---|---|---|---|\n")
		for _, u := range r.Unicast {
			fmt.Fprintf(w, "| %.0f/s | %d | %.1f | %d / %d / %d | %.0f | %d / %d | %.3f / %.3f / %.3f / %.3f | %.3f |\n",
				u.Rate, u.QoS, u.Seconds, u.OK, u.Failed, u.Offline, u.Achieved, u.Delivered, u.Lost,
				u.Latency.P50ms, u.Latency.P99ms, u.Latency.P999, u.Latency.Maxms, u.API.P99ms)
		}
		fmt.Fprintln(w)
		unicastGCSummary(w, r.Unicast)
	}
	if i := r.Idle; i != nil {
		fmt.Fprintf(w, "| idle memory | before | after | per connection |\n|---|---|---|---|\n")
		fmt.Fprintf(w, "| RSS | %s | %s | %.0f B |\n", mib(i.Before.RSS), mib(i.After.RSS), i.RSSPerConn)
		fmt.Fprintf(w, "| Go heap in use (after GC) | %s | %s | %.0f B |\n", mib(i.Before.HeapInuse), mib(i.After.HeapInuse), i.HeapPerConn)
		fmt.Fprintf(w, "| goroutines | %d | %d | %.2f |\n", i.Before.Goroutine, i.After.Goroutine, i.GoroutinesPerConn)
		fmt.Fprintf(w, "| kernel TCP buffers (machine, both ends) | %s | %s | %.0f B |\n", mib(i.Before.SockMem), mib(i.After.SockMem), i.KernelPerConn)
		fmt.Fprintf(w, "| kernel slab (machine, both ends) | %s | %s | %.0f B |\n\n", mib(i.Before.Slab), mib(i.After.Slab), i.SlabPerConn)
	}
	if f := r.Fanout; f != nil {
		fmt.Fprintf(w, "| fan-out (%d rounds, %d complete) | value |\n|---|---|\n", len(f.Rounds), f.Complete)
		fmt.Fprintf(w, "| last client has it p50 / p99 / max | %.2f / %.2f / %.2f ms |\n", f.P50LastMs, f.P99LastMs, f.MaxLastMs)
		fmt.Fprintf(w, "| per delivery p50 / p99 / p999 | %.2f / %.2f / %.2f ms |\n\n", f.Latency.P50ms, f.Latency.P99ms, f.Latency.P999)
	}
	if r.QoSStream != nil {
		qosStreamSummary(w, r.QoSStream)
	}
	if r.Bcast != nil {
		bcastSummary(w, r.Bcast)
	}
	if r.Sustain != nil {
		sustainSummary(w, r.Sustain)
	}
	if s := r.Stream; s != nil {
		fmt.Fprintf(w, "| stream (%.0f broadcasts/s for %.1f s) | value |\n|---|---|\n", s.Rate, s.Seconds)
		fmt.Fprintf(w, "| sent / rate limited / failed / skipped (API saturated) | %d / %d / %d / %d |\n", s.Sent, s.RateLimited, s.Failed, s.Skipped)
		fmt.Fprintf(w, "| delivered / expected | %d / %d |\n", s.Delivered, s.Expected)
		fmt.Fprintf(w, "| delivered per second (during the stream) | %.0f |\n", s.DeliveredPerSec)
		fmt.Fprintf(w, "| drained after the stream | %v in %.0f ms |\n", s.Drained, s.DrainMs)
		fmt.Fprintf(w, "| latency p50 / p99 / p999 (from scheduled send) | %.2f / %.2f / %.2f ms |\n\n", s.Latency.P50ms, s.Latency.P99ms, s.Latency.P999)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
