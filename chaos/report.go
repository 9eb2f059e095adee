package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

func numCPU() int       { return runtime.NumCPU() }
func goVersion() string { return runtime.Version() }

// gitCommit is the short commit of the tree in dir, with "uncommitted
// changes" when the tree differs from it.
func gitCommit(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not a git tree)"
	}
	c := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", dir, "status", "--porcelain").Output()
	if err != nil || len(strings.TrimSpace(string(st))) == 0 {
		return c
	}
	// Where the changes are: files at the top, folders with a count.
	var order []string
	count := map[string]int{}
	// Only the newline goes: a porcelain line starts with its status, which may be a space.
	for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
		if len(l) < 4 {
			continue
		}
		p := strings.TrimSpace(l[3:])
		key := p
		if strings.HasSuffix(p, "/") { // a new folder
			if count[p] == 0 {
				order = append(order, p)
			}
			count[p] = -1
			continue
		}
		if i := strings.IndexByte(p, '/'); i >= 0 {
			key = p[:i+1]
		}
		if count[key] == 0 {
			order = append(order, key)
		}
		count[key]++
	}
	var parts []string
	for _, k := range order {
		switch {
		case count[k] < 0:
			parts = append(parts, k+" (new)")
		case strings.HasSuffix(k, "/"):
			parts = append(parts, fmt.Sprintf("%s (%d files)", k, count[k]))
		default:
			parts = append(parts, k)
		}
	}
	return c + " with uncommitted changes in " + strings.Join(parts, ", ")
}

// WriteJSON writes the result file.
func WriteJSON(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func fmtRecover(ph *Phase) string {
	if ph.Fault == "none" {
		if ph.RecoverS == 0 {
			return "-"
		}
		return fmt.Sprintf("(%.2f)", ph.RecoverS)
	}
	s := fmt.Sprintf("%.2f / %.2f", ph.RecoverS, ph.RecoverAfterS)
	if !ph.Recovered {
		s += " (not recovered)"
	}
	return s
}

// Table writes the markdown table of the phases.
func Table(w io.Writer, r *Result) {
	fmt.Fprintln(w, "| fault | accepted | delivered | lost at settle | lost at end | duplicates | API errors (by status) | recover (s): from the fault / after it was over | waited for a reconnect | reconnects | AUTH failures |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
	row := func(ph *Phase, name string) {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %s | %s | %d | %d | %d |\n", name, ph.Accepted, ph.Delivered,
			ph.Lost, ph.LostAtEnd, ph.Duplicates, errString(ph.Errors), fmtRecover(ph), ph.WaitedReconnect, ph.Reconnect, ph.AuthFails)
	}
	for _, ph := range r.Phases {
		name := ph.Fault
		if ph.Target != "" {
			name += " (" + ph.Target + ")"
		}
		if ph.Fault == "none" {
			name = "baseline (no fault)"
		}
		row(ph, name)
	}
	t := r.Total
	fmt.Fprintf(w, "| **total** | %d | %d | %d | %d | %d | %s | max %.2f / %.2f | %d | %d | %d |\n", t.Accepted, t.Delivered,
		t.Lost, t.LostAtEnd, t.Duplicates, errString(t.Errors), t.RecoverS, t.RecoverAfterS, t.WaitedReconnect, t.Reconnect, t.AuthFails)
}

// Markdown is the report section: command, machine, date, commit, table,
// the cluster's counts after the run, and the other figures per phase.
func Markdown(r *Result) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Run of %s (UTC), %.0f s; tree at commit %s.\n\n", r.Started.UTC().Format("2006-01-02 15:04"), r.Seconds, r.Commit)
	fmt.Fprintf(&b, "Command (from the module root, with the servers of `scripts/services.sh` in the environment; `lcpush` is `go run .`):\n\n```\n%s\n```\n\n", strings.Join(r.Args, " "))
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %d GiB, linux %s, %s; the 9 processes, Redis, MariaDB, ZooKeeper and the tool share it.\n",
		m.CPUs, m.Model, m.MemGiB, m.Kernel, m.Go)
	fmt.Fprintf(&b, "Load: %d devices, %.0f QoS 1 pushes/s through both centers, settle %.0f s after each fault; store %s.\n\n",
		r.Devices, r.Rate, r.SettleS, r.Store)
	Table(&b, r)
	b.WriteString("\n")
	if s := r.Stats; s != nil {
		conv := fmt.Sprintf("agreed after %.1f s", s.ConvergedS)
		if s.ConvergedS < 0 {
			conv = fmt.Sprintf("did not agree within %.0f s", s.WaitedS)
		}
		fmt.Fprintf(&b, "After the run, `/v1/stats`: online %d (devices connected: %d), pending %d (accepted and never delivered: %d; pushes a center took but never answered, which the store may hold: %d): %s.\n\n",
			s.Online, s.TrueOnline, s.Pending, s.TruePending, s.Unanswered, conv)
	}
	fmt.Fprintln(&b, "| fault | pushes sent | skipped (256 in flight) | delivered late | unaccepted ids delivered | to a wrong device | ERROR frames to devices (ACKs refused, ...) | API p50 / p99 / max ms | delivery p50 / p99 / max ms | fault over at (s) |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---|---|---:|")
	for _, ph := range r.Phases {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %.1f / %.1f / %.0f | %.1f / %.1f / %.0f | %.1f |\n", ph.Fault, ph.Sent, ph.Skipped, ph.Late, ph.Unaccepted, ph.Wrong, ph.DeviceErrors,
			ph.API.P50ms, ph.API.P99ms, ph.API.Maxms, ph.Latency.P50ms, ph.Latency.P99ms, ph.Latency.Maxms, ph.RestoredAt-ph.FaultAt)
	}
	for _, ph := range r.Phases {
		if len(ph.LostMsgs) > 0 {
			fmt.Fprintf(&b, "\nLost at settle in the %s phase (the first %d of %d; seconds from the phase start):\n\n", ph.Fault, len(ph.LostMsgs), ph.Lost)
			fmt.Fprintln(&b, "| msg_id | uid | center | sent at | answer | device connection at send / answer | delivered at (connection) |")
			fmt.Fprintln(&b, "|---|---|---:|---:|---|---|---|")
			for _, m := range ph.LostMsgs {
				dl := "never"
				if m.Delivered > 0 {
					dl = fmt.Sprintf("%.1f s (%d)", m.Delivered, m.ConnDlv)
				}
				up := "down"
				if m.UpSent {
					up = "up"
				}
				fmt.Fprintf(&b, "| %d | %s | %d | %.2f s | %d online %d, %.0f ms | %d (%s) / %d | %s |\n", m.ID, m.UID, m.Center, m.SentS, m.Status, m.Online, m.AnswerMs, m.ConnSent, up, m.ConnDone, dl)
			}
		}
	}
	for _, ph := range r.Phases {
		if ph.Error != "" {
			fmt.Fprintf(&b, "\nThe %s fault failed, which ended the run: %s\n", ph.Fault, ph.Error)
		}
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "\nWarning: %s\n", w)
	}
	return b.String()
}

// Markers around the generated section of docs/reliability.md.
const (
	beginMark = "<!-- chaos:begin (written by lcpush chaos -doc) -->"
	endMark   = "<!-- chaos:end -->"
)

// UpdateDoc replaces the generated section of the document at path with
// the report (appending it when the markers are missing).
func UpdateDoc(path string, r *Result) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := beginMark + "\n" + Markdown(r) + endMark
	s := string(old)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + section + s[j+len(endMark):]
	case s == "":
		s = "# Reliability\n\n" + section + "\n"
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
