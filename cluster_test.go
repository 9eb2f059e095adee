package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/token"
)

// zkForTest returns the ZooKeeper address for integration tests. Without
// ZK_ADDR the test is skipped, unless LCPUSH_INTEGRATION=1 (the test command
// and CI) demands the real server: then a missing one is a failure.
func zkForTest(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("ZK_ADDR")
	if addr == "" {
		if os.Getenv("LCPUSH_INTEGRATION") == "1" {
			t.Fatal("LCPUSH_INTEGRATION=1 but ZK_ADDR is not set: start servers with scripts/services.sh")
		}
		t.Skip("ZK_ADDR not set (scripts/test.sh starts a real ZooKeeper)")
	}
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("ZooKeeper at %s unreachable: %v", addr, err)
	}
	c.Close()
	return addr
}

// proc is one lcpush process of the test cluster.
type proc struct {
	name  string
	args  []string
	admin string
	cmd   *exec.Cmd
	log   *bytes.Buffer
}

type cluster struct {
	t       *testing.T
	bin     string
	zk      string
	root    string
	cfgPath string
	dir     string
	procs   map[string]*proc
}

// buildBinary builds the server for tests that start it as a process, with
// the race detector when the test binary has it.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lcpush")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func (c *cluster) start(name string, args ...string) *proc {
	c.t.Helper()
	p := c.procs[name]
	if p == nil {
		p = &proc{name: name, admin: testkit.FreePort(c.t), args: args}
		c.procs[name] = p
	}
	all := append([]string{
		"-zk", c.zk, "-zk-root", c.root, "-zk-auth", "cluster-test:cluster-test-secret", "-config", c.cfgPath,
		"-admin-addr", p.admin, "-log-level", "debug",
	}, p.args...)
	p.cmd = exec.Command(c.bin, all...)
	p.log = &bytes.Buffer{}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	c.waitReady(p)
	return p
}

func (c *cluster) waitReady(p *proc) {
	c.t.Helper()
	up := false
	testkit.Poll(30*time.Second, func() bool {
		up = ready(p.admin)
		return up || p.cmd.ProcessState != nil
	})
	if up {
		return
	}
	c.t.Fatalf("%s not ready; log:\n%s", p.name, p.log.String())
}

func (c *cluster) kill9(name string) {
	c.t.Helper()
	p := c.procs[name]
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (c *cluster) stopAll() {
	for _, p := range c.procs {
		if p.cmd != nil && p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for name, p := range c.procs {
		if p.cmd == nil || p.cmd.ProcessState != nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
			c.t.Errorf("%s ignored SIGTERM for 15 s", name)
		}
		if c.t.Failed() || os.Getenv("LCPUSH_TEST_LOG") != "" {
			c.t.Logf("---- %s log:\n%s", name, p.log.String())
		}
	}
}

// keeperCLI runs the operator CLI against the cluster's tree.
func (c *cluster) keeperCLI(args ...string) (string, error) {
	all := append([]string{"keeper", "-zk", c.zk, "-root", c.root, "-zk-auth", "cluster-test:cluster-test-secret"}, args...)
	out, err := exec.Command(c.bin, all...).CombinedOutput()
	return string(out), err
}

// TestClusterOfProcesses is issue 3's acceptance test: separate processes
// (2 room, 2 register, 2 center, saver, coordinator, dispatcher) find each
// other through a real ZooKeeper and talk over the RPC library.
func TestClusterOfProcesses(t *testing.T) {
	zkAddr := zkForTest(t)
	dir := t.TempDir()
	c := &cluster{t: t, bin: buildBinary(t), zk: zkAddr, dir: dir, procs: map[string]*proc{},
		root: fmt.Sprintf("/lcpush-cluster-%d", time.Now().UnixNano())}
	c.cfgPath = filepath.Join(dir, "seed.yaml")
	// App 4 pushes slowly (2 recipients/s for the cluster): its send queue
	// holds a burst long enough for the takeover subtest.
	seed := strings.Replace(testkit.ConfigYAML(""), "room:\n", "  - {id: 4, name: slow, secret: "+slowSecret+", api_key: slow-key, push_rate: 2, push_burst: 1, push_queue: 20}\nroom:\n", 1)
	if err := os.WriteFile(c.cfgPath, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)

	reg1RPC, reg2RPC := testkit.FreePort(t), testkit.FreePort(t)
	c.start("register-1", "-target", "register", "-id", "register-1", "-rpc-addr", reg1RPC)
	c.start("register-2", "-target", "register", "-id", "register-2", "-rpc-addr", reg2RPC)
	c.start("saver", "-target", "saver", "-id", "saver-1", "-rpc-addr", testkit.FreePort(t), "-data", filepath.Join(dir, "saver"))
	c.start("coordinator", "-target", "coordinator", "-id", "coordinator-1", "-rpc-addr", testkit.FreePort(t))
	roomA, roomB := testkit.FreePort(t), testkit.FreePort(t)
	c.start("room-a", "-target", "room", "-room-id", "room-a", "-room-addr", roomA, "-rpc-addr", testkit.FreePort(t))
	c.start("room-b", "-target", "room", "-room-id", "room-b", "-room-addr", roomB, "-rpc-addr", testkit.FreePort(t))
	center1, center2 := testkit.FreePort(t), testkit.FreePort(t)
	c.start("center-1", "-target", "center", "-id", "center-1", "-center-addr", center1, "-node", "1")
	c.start("center-2", "-target", "center", "-id", "center-2", "-center-addr", center2, "-node", "2")
	dispatch := testkit.FreePort(t)
	c.start("dispatcher", "-target", "dispatcher", "-id", "dispatcher-1", "-dispatch-addr", dispatch)

	online := func(center, uid string) bool {
		_, out, _ := testkit.API(t, center, "GET", "/v1/apps/1/users/"+uid, testkit.Key1, "")
		return out["online"] == true
	}
	pushVia := func(center, uid, text string) map[string]any {
		body, _ := json.Marshal(map[string]any{"uids": []string{uid}, "text": text})
		code, out, _ := testkit.API(t, center, "POST", "/v1/apps/1/push", testkit.Key1, string(body))
		if code != 200 {
			t.Fatalf("push via %s: %d %v", center, code, out)
		}
		return out
	}

	t.Run("push through either center reaches room A", func(t *testing.T) {
		a := testkit.Dial(t, roomA)
		a.Auth(1, "walker", testkit.Token(1, "walker"), 30)
		a.Expect(proto.OpAuthOK)
		testkit.WaitFor(t, "walker online", 5*time.Second, func() bool { return online(center2, "walker") })
		for i, center := range []string{center1, center2} {
			pushVia(center, "walker", fmt.Sprintf("via center %d", i+1))
			if _, p, _ := a.ExpectPush(); string(p) != fmt.Sprintf("via center %d", i+1) {
				t.Fatalf("got %q", p)
			}
		}

		// Second login on room B kicks the session on room A.
		b := testkit.Dial(t, roomB)
		b.Auth(1, "walker", testkit.Token(1, "walker"), 30)
		b.Expect(proto.OpAuthOK)
		f := a.Expect(proto.OpKick)
		var k proto.Kick
		if err := json.Unmarshal(f.Body, &k); err != nil || k.Code != 1 {
			t.Fatalf("KICK %q", f.Body)
		}
		a.ExpectClosed(5 * time.Second)
		pushVia(center1, "walker", "on room b")
		// The two pushes above were not ACKed, so room B delivers them again
		// first (stored QoS 1), then the new one.
		for _, want := range []string{"via center 1", "via center 2", "on room b"} {
			if _, p, _ := b.ExpectPush(); string(p) != want {
				t.Fatalf("room b got %q, want %q", p, want)
			}
		}
	})

	// Issue 14: the rooms report their writes to the saver over RPC and the
	// saver counts stored and acked; any center reads the same record.
	t.Run("delivery status through either center", func(t *testing.T) {
		a := testkit.Dial(t, roomA)
		a.Auth(1, "tracked", testkit.Token(1, "tracked"), 30)
		a.Expect(proto.OpAuthOK)
		testkit.WaitFor(t, "tracked online", 5*time.Second, func() bool { return online(center1, "tracked") })
		id := pushVia(center1, "tracked", "tracked message")["msg_id"].(string)
		mid, _, _ := a.ExpectPush()
		a.Ack(mid)
		var last map[string]any
		testkit.WaitFor(t, "stored, sent and acked through center 2", 10*time.Second, func() bool {
			_, last, _ = testkit.API(t, center2, "GET", "/v1/messages/"+id+"?uid=tracked", testkit.Key1, "")
			u, _ := last["user"].(map[string]any)
			return last["stored"] == float64(1) && last["sent"] == float64(1) && last["acked"] == float64(1) && u["state"] == "acked"
		})
		a.Close()
	})

	t.Run("dispatcher lists both rooms", func(t *testing.T) {
		testkit.WaitFor(t, "both rooms in dispatch", 10*time.Second, func() bool {
			resp, err := http.Get("http://" + dispatch + "/v1/dispatch?uid=someone&app=1")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var out struct{ Addrs []string }
			_ = json.NewDecoder(resp.Body).Decode(&out)
			s := strings.Join(out.Addrs, ",")
			return strings.Contains(s, roomA) && strings.Contains(s, roomB)
		})
	})

	t.Run("register killed and restarted is refilled", func(t *testing.T) {
		var conns []*testkit.Conn
		var uids []string
		for i := 0; i < 16; i++ {
			uid := fmt.Sprintf("refill-%d", i)
			addr := roomA
			if i%2 == 1 {
				addr = roomB
			}
			r := testkit.Dial(t, addr)
			r.Auth(1, uid, testkit.Token(1, uid), 60)
			r.Expect(proto.OpAuthOK)
			conns, uids = append(conns, r), append(uids, uid)
		}
		testkit.WaitFor(t, "all online", 5*time.Second, func() bool {
			for _, u := range uids {
				if !online(center1, u) {
					return false
				}
			}
			return true
		})
		c.kill9("register-1")
		c.start("register-1") // same id and RPC port, empty
		start := time.Now()
		testkit.WaitFor(t, "sessions re-filled", 15*time.Second, func() bool {
			for _, u := range uids {
				if !online(center1, u) {
					return false
				}
			}
			return true
		})
		t.Logf("re-filled in %s", time.Since(start))
		for i, u := range uids {
			pushVia(center2, u, "after refill")
			if _, p, _ := conns[i].ExpectPush(); string(p) != "after refill" {
				t.Fatalf("%s got %q", u, p)
			}
		}

		// A broadcast through a center is delivered by each room to its
		// own connections (room Broadcast over RPC): both rooms' clients get it.
		code, out, _ := testkit.API(t, center2, "POST", "/v1/apps/1/broadcast", testkit.Key1, `{"text":"to both rooms","qos":0}`)
		if code != 202 {
			t.Fatalf("broadcast: %d %v", code, out)
		}
		for i, u := range uids {
			if _, p, _ := conns[i].ExpectPush(); string(p) != "to both rooms" {
				t.Fatalf("%s got %q", u, p)
			}
		}
		job, _ := out["job_id"].(string)
		var st map[string]any
		testkit.WaitFor(t, "broadcast job done", 10*time.Second, func() bool {
			_, st, _ = testkit.API(t, center2, "GET", "/v1/jobs/"+job, testkit.Key1, "")
			return st["state"] != "running"
		})
		// The 16 here (the earlier subtest's connections were closed with it).
		if st["state"] != "done" || st["pushed"] != 16.0 {
			t.Fatalf("job %v, want done with 16 pushed", st)
		}
	})

	t.Run("config change through the CLI reaches a running room", func(t *testing.T) {
		cur, err := c.keeperCLI("get")
		if err != nil {
			t.Fatalf("keeper get: %v\n%s", err, cur)
		}
		changed := strings.Replace(cur, "heartbeat_max: 300", "heartbeat_max: 45", 1)
		if changed == cur {
			t.Fatalf("heartbeat_max: 300 not in the stored config:\n%s", cur)
		}
		f := filepath.Join(dir, "changed.yaml")
		if err := os.WriteFile(f, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := c.keeperCLI("put", f); err != nil {
			t.Fatalf("keeper put: %v\n%s", err, out)
		}
		hbOnRoomA := func() int {
			r := testkit.Dial(t, roomA)
			defer r.Close()
			r.Auth(1, "hb-probe", testkit.Token(1, "hb-probe"), 100)
			var ok proto.AuthOK
			_ = json.Unmarshal(r.Expect(proto.OpAuthOK).Body, &ok)
			return ok.HB
		}
		testkit.WaitFor(t, "room A to clamp hb to 45", 10*time.Second, func() bool { return hbOnRoomA() == 45 })

		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte(strings.Replace(changed, "heartbeat_max: 45", "heartbeat_max: -1", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := c.keeperCLI("put", bad); err == nil {
			t.Fatalf("a malformed config was accepted:\n%s", out)
		}
		if hb := hbOnRoomA(); hb != 45 {
			t.Fatalf("hb %d after a refused config, want 45", hb)
		}
	})

	t.Run("a room stopping redirects its clients to the other room", func(t *testing.T) {
		r := testkit.Dial(t, roomA)
		r.Auth(1, "mover", testkit.Token(1, "mover"), 60)
		r.Expect(proto.OpAuthOK)
		p := c.procs["room-a"]
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var red proto.Redirect
		if err := json.Unmarshal(r.Expect(proto.OpRedirect).Body, &red); err != nil {
			t.Fatal(err)
		}
		if len(red.Addrs) != 1 || red.Addrs[0] != roomB || red.AfterMS <= 0 {
			t.Fatalf("REDIRECT %+v, want room B %s with a spread", red, roomB)
		}
		r.Close() // the client moves: the room can finish its shutdown
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("room A exited with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("room A still running 10 s after SIGTERM and its last client left")
		}
		m := testkit.Dial(t, roomB)
		m.Auth(1, "mover", testkit.Token(1, "mover"), 60)
		m.Expect(proto.OpAuthOK)
	})

	// API.md "Send queues": a queued message never waits for its
	// recipient's next login. QoS 0 pushes (never stored) queued on center
	// 1, which is then killed: center 2 claims its journal and releases them
	// to the client, which stays connected on room B all along.
	t.Run("a killed center's send queue is taken over", func(t *testing.T) {
		u := testkit.Dial(t, roomB)
		u.Auth(4, "queued-user", token.Sign([]byte(slowSecret), 4, "queued-user", time.Now().Add(time.Hour).Unix()), 60)
		u.Expect(proto.OpAuthOK)
		testkit.WaitFor(t, "queued-user online", 5*time.Second, func() bool {
			_, out, _ := testkit.API(t, center1, "GET", "/v1/apps/4/users/queued-user", "slow-key", "")
			return out["online"] == true
		})
		queued := 0
		for i := range 5 {
			body := fmt.Sprintf(`{"uids":["queued-user"],"text":"q%d","qos":0}`, i)
			code, out, _ := testkit.API(t, center1, "POST", "/v1/apps/4/push", "slow-key", body)
			switch code {
			case 200:
			case 202:
				queued++
			default:
				t.Fatalf("push %d: %d %v", i, code, out)
			}
		}
		if queued < 3 {
			t.Fatalf("only %d of 5 pushes queued; the test needs a backlog", queued)
		}
		c.kill9("center-1")
		got := map[string]bool{}
		for len(got) < 5 {
			f, err := u.Next(30 * time.Second)
			if err != nil {
				t.Fatalf("after center 1 was killed: got %v, then %v", got, err)
			}
			if f.Op == proto.OpPush {
				_, p, _ := proto.ParsePush(f.Body)
				got[string(p)] = true
			}
		}
	})
	_ = context.Background
}

const slowSecret = "e2e-secret-app-4-slow-xxxxxx"

// pushCounter reads one client's frames in its own goroutine, ACKs every
// PUSH (so the room never redelivers) and counts those of one message id.
type pushCounter struct {
	conn *testkit.Conn
	mu   sync.Mutex
	got  map[uint64]int // message id -> PUSH frames of it
	err  error          // the read error that ended it, unless stopped
}

func (p *pushCounter) run(stop <-chan struct{}) {
	seq := uint32(1000)
	for {
		select {
		case <-stop:
			return
		default:
		}
		f, err := p.conn.Next(200 * time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
		if f.Op != proto.OpPush {
			continue
		}
		id, _, err := proto.ParsePush(f.Body)
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.got[id]++
		p.mu.Unlock()
		seq++
		if _, err := p.conn.NetConn().Write(proto.AppendAck(nil, seq, []uint64{id})); err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
	}
}

func (p *pushCounter) count(id uint64) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[id], p.err
}

// TestClusterBroadcastJobResume is issue 15's acceptance test (Done when,
// item 1): a QoS 1 broadcast accepted by center 1, on real ZooKeeper and
// Redis+MySQL, shows the same progress through center 2; center 1 is killed
// with -9 while it runs its sub-task; center 2 resumes it and the job ends
// done; every online client got the message exactly once, and a uid that
// was offline gets it at its login.
func TestClusterBroadcastJobResume(t *testing.T) {
	zkAddr := zkForTest(t)
	redisAddr, dsn := redisForTest(t)
	dir := t.TempDir()
	run := time.Now().UnixNano()
	c := &cluster{t: t, bin: buildBinary(t), zk: zkAddr, dir: dir, procs: map[string]*proc{},
		root: fmt.Sprintf("/lcpush-bcast-%d", run)}
	c.cfgPath = filepath.Join(dir, "seed.yaml")
	// An app of this run only: the shared Redis and MySQL may hold other
	// runs' broadcasts, which its users never see.
	app := uint32(100000 + run/1e6%1000000)
	const secret, key = "bcast-test-secret-xxxxxxxx", "bcast-test-key"
	seed := strings.Replace(testkit.ConfigYAML(""), "room:\n",
		fmt.Sprintf("  - {id: %d, name: bcast, secret: %s, api_key: %s}\nroom:\n", app, secret, key), 1)
	if err := os.WriteFile(c.cfgPath, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)

	c.start("register", "-target", "register", "-id", "register-1", "-rpc-addr", testkit.FreePort(t))
	c.start("saver", "-target", "saver", "-id", "saver-1", "-rpc-addr", testkit.FreePort(t),
		"-store", "redis", "-redis", redisAddr, "-mysql", dsn)
	c.start("coordinator", "-target", "coordinator", "-id", "coordinator-1", "-rpc-addr", testkit.FreePort(t))
	rooms := []string{testkit.FreePort(t), testkit.FreePort(t)}
	for i, addr := range rooms {
		id := fmt.Sprintf("bc-room-%c", 'a'+i)
		c.start(id, "-target", "room", "-room-id", id, "-room-addr", addr, "-rpc-addr", testkit.FreePort(t))
	}
	// The member ids sort as the centers' numbers: the first room's task
	// prefers center 1, the second's center 2.
	center1, center2 := testkit.FreePort(t), testkit.FreePort(t)
	c.start("bc-center-1", "-target", "center", "-id", "bc-center-1", "-center-addr", center1, "-node", "1")
	c.start("bc-center-2", "-target", "center", "-id", "bc-center-2", "-center-addr", center2, "-node", "2")

	// 20 clients per room at 10 deliveries/s for the job (5/s per room):
	// the job lasts about 4 s, plus the lease of the killed center.
	const perRoom = 20
	tok := func(uid string) string { return token.Sign([]byte(secret), app, uid, time.Now().Add(time.Hour).Unix()) }
	var counters []*pushCounter
	var uids []string
	for i := range 2 * perRoom {
		uid := fmt.Sprintf("bc-%d", i)
		conn := testkit.Dial(t, rooms[i%2])
		conn.Login(app, uid, tok(uid), 60)
		counters, uids = append(counters, &pushCounter{conn: conn, got: map[uint64]int{}}), append(uids, uid)
	}
	testkit.WaitFor(t, "every client online", 15*time.Second, func() bool {
		for _, u := range uids {
			if _, out, _ := testkit.API(t, center2, "GET", fmt.Sprintf("/v1/apps/%d/users/%s", app, u), key, ""); out["online"] != true {
				return false
			}
		}
		return true
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range counters {
		wg.Go(func() { p.run(stop) })
	}
	defer func() { close(stop); wg.Wait() }()

	code, out, _ := testkit.API(t, center1, "POST", fmt.Sprintf("/v1/apps/%d/broadcast", app), key, `{"text":"to everyone","qos":1,"ttl":600,"rate":10}`)
	if code != 202 {
		t.Fatalf("broadcast: %d %v", code, out)
	}
	job, _ := out["job_id"].(string)
	msgID, err := strconv.ParseUint(fmt.Sprint(out["msg_id"]), 10, 64)
	if err != nil {
		t.Fatalf("broadcast answer %v", out)
	}
	jobAt := func(center string) map[string]any {
		code, st, _ := testkit.API(t, center, "GET", "/v1/jobs/"+job, key, "")
		if code != 200 {
			t.Fatalf("job through %s: %d %v", center, code, st)
		}
		return st
	}
	// The same job through both centers while it runs: state, targets,
	// stored and who holds which task agree; pushed only grows.
	taskView := func(st map[string]any) string {
		var b strings.Builder
		for _, tk := range st["tasks"].([]any) {
			tk := tk.(map[string]any)
			fmt.Fprintf(&b, "%v/%v/%v ", tk["room"], tk["state"], tk["owner"])
		}
		return b.String()
	}
	var s1, s2 map[string]any
	testkit.WaitFor(t, "the job running on both rooms, its progress moving, alike through both centers", 20*time.Second, func() bool {
		s1 = jobAt(center1)
		s2 = jobAt(center2)
		p1, _ := s1["pushed"].(float64)
		p2, _ := s2["pushed"].(float64)
		if s1["state"] != "running" || s2["state"] != "running" {
			t.Fatalf("job ended before center 1 was killed (make it slower):\n center 1 %v\n center 2 %v", s1, s2)
		}
		return s1["targets"] == float64(2*perRoom) && s2["targets"] == s1["targets"] && s2["stored"] == s1["stored"] &&
			taskView(s1) == taskView(s2) && strings.Count(taskView(s1), "/running/") == 2 &&
			p1 > 0 && p2 >= p1 && p2 < float64(2*perRoom)
	})
	t.Logf("before the kill: center 1 %v\ncenter 2 %v", s1, s2)
	if !strings.Contains(taskView(s1), "/bc-center-1 ") {
		t.Fatalf("center 1 holds no task: %s", taskView(s1))
	}
	c.kill9("bc-center-1")

	var final map[string]any
	testkit.WaitFor(t, "the job to end through center 2", 60*time.Second, func() bool {
		final = jobAt(center2)
		return final["state"] != "running"
	})
	t.Logf("after the kill: %v", final)
	if final["state"] != "done" || final["pushed"] != float64(2*perRoom) || final["stored"] != 1.0 {
		t.Fatalf("job %v, want done with %d pushed", final, 2*perRoom)
	}
	if v := taskView(final); strings.Count(v, "/done/bc-center-2 ") != 2 {
		t.Fatalf("tasks %s: want both done, the killed center's resumed by center 2", v)
	}
	testkit.WaitFor(t, "every online client to get the broadcast", 10*time.Second, func() bool {
		for i, p := range counters {
			n, err := p.count(msgID)
			if err != nil {
				t.Fatalf("client %s: %v", uids[i], err)
			}
			if n == 0 {
				return false
			}
		}
		return true
	})
	// Exactly once: no client sees it a second time (from the resumed task
	// or a redelivery) within the next 2 s.
	if testkit.Poll(2*time.Second, func() bool {
		for _, p := range counters {
			if n, _ := p.count(msgID); n != 1 {
				return true
			}
		}
		return false
	}) {
		for i, p := range counters {
			if n, _ := p.count(msgID); n != 1 {
				t.Errorf("client %s got the broadcast %d times", uids[i], n)
			}
		}
		t.FailNow()
	}

	// The uid that was offline gets it at its login.
	late := testkit.Dial(t, rooms[1])
	late.Login(app, "bc-offline", tok("bc-offline"), 60)
	for {
		id, p, _ := late.ExpectPush()
		if id == msgID {
			if string(p) != "to everyone" {
				t.Fatalf("the offline uid got %q", p)
			}
			break
		}
	}
}
