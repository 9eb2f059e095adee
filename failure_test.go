package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

// redisForTest returns REDIS_ADDR and MYSQL_DSN, skipping without them
// unless LCPUSH_INTEGRATION=1 demands the real servers.
func redisForTest(t *testing.T) (string, string) {
	t.Helper()
	addr, dsn := os.Getenv("REDIS_ADDR"), os.Getenv("MYSQL_DSN")
	if addr == "" || dsn == "" {
		if os.Getenv("LCPUSH_INTEGRATION") == "1" {
			t.Fatal("LCPUSH_INTEGRATION=1 but REDIS_ADDR or MYSQL_DSN is not set: start servers with scripts/services.sh")
		}
		t.Skip("REDIS_ADDR/MYSQL_DSN not set (scripts/test.sh starts real Redis and MariaDB)")
	}
	return addr, dsn
}

// allInOne runs the whole system as one child process.
type allInOne struct {
	t      *testing.T
	bin    string
	args   []string
	center string
	room   string
	admin  string
	cmd    *exec.Cmd
	log    strings.Builder
	mu     sync.Mutex
}

func (p *allInOne) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *allInOne) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, append([]string{
		"-room-addr", p.room, "-center-addr", p.center, "-dispatch-addr", "127.0.0.1:0",
		"-admin-addr", p.admin,
	}, p.args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	if testkit.Poll(30*time.Second, func() bool { return ready(p.admin) }) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t.Fatalf("not ready:\n%s", p.log.String())
}

// ready reports whether the admin port at addr answers /readyz with 200.
func ready(addr string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func (p *allInOne) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (p *allInOne) stop() {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.kill9()
		p.t.Error("ignored SIGTERM for 20 s")
	}
}

// Issue 4: the all-in-one process killed with -9 in the middle of a burst of
// QoS 1 pushes: every message the API answered 200 for is delivered after
// the restart. Run against the Redis+MySQL store and the embedded one.
func TestKill9MidBurstLosesNothingAccepted(t *testing.T) {
	redisAddr, dsn := redisForTest(t)
	bin := buildBinary(t)
	stores := map[string][]string{
		"redis": {"-store", "redis", "-redis", redisAddr, "-mysql", dsn},
		"bolt":  {"-store", "bolt", "-data", t.TempDir()},
	}
	for name, storeArgs := range stores {
		t.Run(name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(cfg, []byte(testkit.ConfigYAML("")), 0o600); err != nil {
				t.Fatal(err)
			}
			p := &allInOne{t: t, bin: bin, args: append([]string{"-config", cfg}, storeArgs...),
				center: testkit.FreePort(t), room: testkit.FreePort(t), admin: testkit.FreePort(t)}
			p.start()
			t.Cleanup(p.stop)

			run := time.Now().UnixNano()
			uids := make([]string, 10)
			for i := range uids {
				uids[i] = fmt.Sprintf("burst-%d-%d", run, i)
			}
			var (
				mu       sync.Mutex
				accepted = map[string]string{} // msg_id -> uid
				wg       sync.WaitGroup
				stop     = make(chan struct{})
			)
			client := &http.Client{Timeout: 5 * time.Second}
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						uid := uids[(w+n)%len(uids)]
						body := fmt.Sprintf(`{"uids":[%q],"text":"w%d-%d"}`, uid, w, n)
						req, _ := http.NewRequest("POST", "http://"+p.center+"/v1/apps/1/push", strings.NewReader(body))
						req.Header.Set("Authorization", "Bearer "+testkit.Key1)
						resp, err := client.Do(req)
						if err != nil {
							continue // the process is gone: not accepted
						}
						var out struct {
							MsgID string `json:"msg_id"`
						}
						// 202: queued in the send queue, stored first (QoS 1).
						ok := (resp.StatusCode == 200 || resp.StatusCode == 202) && json.NewDecoder(resp.Body).Decode(&out) == nil
						resp.Body.Close()
						if ok {
							mu.Lock()
							accepted[out.MsgID] = uid
							mu.Unlock()
						}
					}
				}(w)
			}
			testkit.WaitFor(t, "a burst under way", 10*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(accepted) >= 200
			})
			p.kill9()
			close(stop)
			wg.Wait()
			mu.Lock()
			total := len(accepted)
			mu.Unlock()
			t.Logf("%d pushes answered 200 or 202 before kill -9", total)

			p.start()
			got := map[string]bool{}
			for _, uid := range uids {
				r := testkit.Dial(t, p.room)
				r.Auth(1, uid, testkit.Token(1, uid), 30)
				r.Expect(proto.OpAuthOK)
				r.Send(proto.OpPing, 0, 0, nil)
				for {
					f := r.ExpectNext(proto.OpPush, proto.OpPong)
					if f.Op == proto.OpPong {
						break // stored messages come before the reply to a later PING
					}
					id, _, _ := proto.ParsePush(f.Body)
					got[fmt.Sprint(id)] = true
				}
				r.Close()
			}
			var lost []string
			for id, uid := range accepted {
				if !got[id] {
					lost = append(lost, id+"->"+uid)
				}
			}
			if len(lost) > 0 {
				t.Fatalf("%d of %d accepted messages not delivered after restart, e.g. %v", len(lost), total, lost[:min(5, len(lost))])
			}
		})
	}
}
