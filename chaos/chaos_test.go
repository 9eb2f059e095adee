package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A synthetic record: the accounting of one phase from attempts and
// arrivals, without servers.
func TestEvaluateAndFinal(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	rec := newRecorder()
	fl := &fleet{devs: []*device{
		{idx: 0, uid: "a", spans: []span{{start: at(0), end: at(20)}, {start: at(21)}}, up: true},
		{idx: 1, uid: "b", spans: []span{{start: at(0)}}, up: true},
	}}
	ph := &Phase{Fault: "register", start: at(0), faultAt: at(2), end: at(30), eval: at(35)}
	ok := func(id uint64, dev int, sent float64, online int) *attempt {
		return &attempt{phase: 0, dev: dev, sent: at(sent), done: at(sent + 0.01), genSent: 1, upSent: true,
			sinceSent: at(0), genDone: 1, upDone: true, status: 200, id: id, online: online}
	}
	rec.add(ok(1, 1, 1, 1))                                                                     // delivered
	rec.add(ok(2, 1, 3, 0))                                                                     // online 0 while up: bad
	rec.add(&attempt{phase: 0, dev: 1, sent: at(4), done: at(4.5), errKey: "503", status: 503}) // bad
	rec.add(ok(3, 0, 5, 0))                                                                     // waits for a/2
	rec.add(ok(4, 1, 6, 1))                                                                     // never delivered
	rec.add(ok(5, 1, 7, 1))                                                                     // delivered twice
	rec.delivered(1, 1, 1, at(1.1))
	rec.delivered(2, 1, 1, at(3.1))
	rec.delivered(3, 0, 2, at(40)) // after the phase, on the next connection
	rec.delivered(5, 1, 1, at(7.1))
	rec.delivered(5, 1, 1, at(9))
	rec.delivered(99, 1, 1, at(10)) // never accepted
	res := &Result{Phases: []*Phase{ph}}
	evaluate(rec, fl, res.Phases, 0)
	if ph.Sent != 6 || ph.Accepted != 5 || ph.Delivered != 3 || ph.Lost != 2 || ph.Errors["503"] != 1 {
		t.Fatalf("sent %d accepted %d delivered %d lost %d errors %v", ph.Sent, ph.Accepted, ph.Delivered, ph.Lost, ph.Errors)
	}
	if len(ph.LostMsgs) != 2 || ph.LostMsgs[0].ID != 3 || ph.LostMsgs[1].ID != 4 || !ph.LostMsgs[0].UpSent {
		t.Fatalf("lost messages %+v", ph.LostMsgs)
	}
	if ph.Duplicates != 1 || ph.Unaccepted != 1 || ph.Wrong != 0 {
		t.Fatalf("duplicates %d unaccepted %d wrong %d", ph.Duplicates, ph.Unaccepted, ph.Wrong)
	}
	if got := ph.RecoverS; got < 2.99 || got > 3.03 {
		t.Fatalf("recover %.3f s, want 3.01 (online 0 for a connected device answered at 5.01 s, fault at 2 s)", got)
	}
	if !ph.Recovered {
		t.Fatal("not recovered")
	}
	final(rec, fl, res)
	if ph.LostAtEnd != 1 || ph.Late != 1 || ph.WaitedReconnect != 1 {
		t.Fatalf("lost at end %d late %d waited %d", ph.LostAtEnd, ph.Late, ph.WaitedReconnect)
	}
	if m := ph.LostMsgs[0]; m.Delivered < 39.9 || m.ConnDlv != 2 || ph.LostMsgs[1].Delivered != 0 {
		t.Fatalf("lost messages after the run %+v", ph.LostMsgs)
	}
	if res.Total.Accepted != 5 || res.Total.LostAtEnd != 1 {
		t.Fatalf("total %+v", res.Total)
	}
}

func TestUpdateDoc(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.md")
	if err := os.WriteFile(p, []byte("# R\n\nintro\n\n"+beginMark+"\nold\n"+endMark+"\n\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Result{Started: time.Now(), Devices: 2, Rate: 1, Phases: []*Phase{{Fault: "none", Errors: map[string]int{}}},
		Total: Phase{Errors: map[string]int{}}, Args: []string{"lcpush", "chaos"}, Commit: "abc"}
	if err := UpdateDoc(p, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	s := string(b)
	if strings.Contains(s, "old") || !strings.Contains(s, "intro") || !strings.Contains(s, "tail") ||
		!strings.Contains(s, "| baseline (no fault) |") || !strings.Contains(s, "lcpush chaos") {
		t.Fatalf("document:\n%s", s)
	}
}

func TestMySQLAddr(t *testing.T) {
	if a := mysqlAddr("u:p@tcp(127.0.0.1:3306)/db?parseTime=true"); a != "127.0.0.1:3306" {
		t.Fatal(a)
	}
	if err := CheckFaults([]string{"room", "kill:room-b", "zookeeper"}); err != nil {
		t.Fatal(err)
	}
	if err := CheckFaults([]string{"meteor"}); err == nil {
		t.Fatal("unknown fault accepted")
	}
}
