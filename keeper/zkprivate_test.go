package keeper

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// privateZK is a ZooKeeper server of one test, started as
// scripts/services.sh starts the shared one (ZooKeeperServerMain with its own
// zoo.cfg), in a temp dir on a free loopback port. A test can kill it and
// start it again on the same port and data dir, which the shared server must
// never be put through. Without java and the zookeeper package (or with
// -short) it skips, unless LCPUSH_INTEGRATION=1: then it fails.
type privateZK struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
	log  *os.File
}

// The Debian zookeeper package's jars, as in scripts/services.sh.
var zkClasspath = []string{"/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"}

func startPrivateZK(t *testing.T) *privateZK {
	t.Helper()
	if testing.Short() && os.Getenv("LCPUSH_INTEGRATION") != "1" {
		t.Skip("-short: private ZooKeeper test skipped")
	}
	var missing []string
	if _, err := exec.LookPath("java"); err != nil {
		missing = append(missing, "java")
	}
	for _, jar := range zkClasspath {
		if _, err := os.Stat(jar); err != nil {
			missing = append(missing, jar)
		}
	}
	if len(missing) > 0 {
		if os.Getenv("LCPUSH_INTEGRATION") == "1" {
			t.Fatalf("LCPUSH_INTEGRATION=1 but a private ZooKeeper cannot run: missing %v (scripts/services.sh install zookeeper)", missing)
		}
		t.Skipf("private ZooKeeper test skipped: missing %v (scripts/services.sh install zookeeper)", missing)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// As scripts/services.sh: no admin server (Jetty on :8080), srvr for
	// readiness, 1 s minimum sessions so tests can ask for 2 s ones.
	cfg := fmt.Sprintf(`tickTime=2000
minSessionTimeout=1000
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf,isro,cons
`, filepath.Join(dir, "data"), port)
	log4j := `log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
`
	for name, data := range map[string]string{"zoo.cfg": cfg, "log4j.properties": log4j} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	z := &privateZK{t: t, dir: dir, port: port}
	t.Cleanup(func() {
		z.kill()
		if z.log != nil {
			z.log.Close()
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "zookeeper.log")); err == nil {
				t.Logf("private zookeeper log (tail):\n%s", tail(string(b), 40))
			}
		}
	})
	z.start()
	return z
}

func (z *privateZK) addr() string { return fmt.Sprintf("127.0.0.1:%d", z.port) }

// start runs the server and waits until it serves (srvr says standalone).
func (z *privateZK) start() {
	z.t.Helper()
	if z.log == nil {
		f, err := os.OpenFile(filepath.Join(z.dir, "zookeeper.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			z.t.Fatal(err)
		}
		z.log = f
	}
	cmd := exec.Command("java", "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-cp", strings.Join(zkClasspath, ":"),
		"-Dlog4j.configuration=file:"+filepath.Join(z.dir, "log4j.properties"), "-Dzookeeper.jmx.log4j.disable=true",
		"org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(z.dir, "zoo.cfg"))
	cmd.Stdout, cmd.Stderr = z.log, z.log
	if err := cmd.Start(); err != nil {
		z.t.Fatalf("start private zookeeper: %v", err)
	}
	z.cmd, z.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(z.done)
	deadline := time.Now().Add(60 * time.Second)
	for !z.serving() {
		select {
		case <-z.done:
			z.t.Fatalf("private zookeeper exited before it served; see %s", filepath.Join(z.dir, "zookeeper.log"))
		default:
		}
		if time.Now().After(deadline) {
			z.t.Fatalf("private zookeeper not serving on %s after 60 s", z.addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serving asks srvr: ruok answers before the data is loaded.
func (z *privateZK) serving() bool {
	c, err := net.DialTimeout("tcp", z.addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "Mode: standalone" {
			return true
		}
	}
	return false
}

// kill stops the server with SIGKILL, as a crash would, and waits for it.
func (z *privateZK) kill() {
	if z.cmd == nil {
		return
	}
	_ = z.cmd.Process.Kill()
	<-z.done
	z.cmd = nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
