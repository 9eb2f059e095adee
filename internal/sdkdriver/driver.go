// Package sdkdriver runs SDK drivers for the live cross-tests: programs
// that speak conformance/driver.md (JSON lines: commands in, events out)
// and run one SDK's clients. It owns the harness side of that protocol
// (Driver: start a child process or an in-process server, send commands,
// wait for events) and the Go SDK's own driver (ServeGo).
package sdkdriver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Event is one line a driver writes (conformance/driver.md "Events").
type Event struct {
	Ev      string          `json:"ev"`
	ID      string          `json:"id,omitempty"`
	OK      bool            `json:"ok,omitempty"`
	Error   string          `json:"error,omitempty"`
	SDK     string          `json:"sdk,omitempty"`
	Client  string          `json:"client,omitempty"`
	State   string          `json:"state,omitempty"`
	Addr    string          `json:"addr,omitempty"`
	Room    string          `json:"room,omitempty"`
	Code    json.RawMessage `json:"code,omitempty"` // int for state and kicked, string for error
	Reason  string          `json:"reason,omitempty"`
	App     uint32          `json:"app,omitempty"`
	MsgID   string          `json:"-"` // the id of a message event
	QoS     int             `json:"qos,omitempty"`
	Payload string          `json:"payload,omitempty"`
	Addrs   []string        `json:"addrs,omitempty"`
	AfterMS int             `json:"after_ms,omitempty"`
	Message string          `json:"message,omitempty"`
	Raw     string          `json:"-"` // the line as read
}

// CodeInt is Code as an int (0 when absent or not a number).
func (e Event) CodeInt() int {
	n, _ := strconv.Atoi(string(e.Code))
	return n
}

// CodeStr is Code as a string (a quoted one unquoted).
func (e Event) CodeStr() string {
	var s string
	if json.Unmarshal(e.Code, &s) == nil {
		return s
	}
	return string(e.Code)
}

func parseEvent(line string) (Event, error) {
	var e Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return e, err
	}
	// "id" is a command id on done and a message id on message.
	if e.Ev == "message" {
		e.MsgID, e.ID = e.ID, ""
	}
	e.Raw = line
	return e, nil
}

// Cmd is one command (conformance/driver.md "Commands"); Do sets "id".
type Cmd map[string]any

// Driver is the harness's end of one running driver.
type Driver struct {
	Name string
	SDK  string // from the ready event

	w    io.WriteCloser
	stop func() error

	mu       sync.Mutex
	cond     *sync.Cond
	events   []Event
	closed   bool
	readDone chan struct{} // read returned
	err      error
	next     int
	wmu      sync.Mutex
}

// Start runs cmd as a driver child process; its stderr goes to stderr.
func Start(t testing.TB, name string, cmd *exec.Cmd, stderr io.Writer) *Driver {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s driver: %v", name, err)
	}
	var d *Driver
	d = newDriver(name, in, out, func() error {
		// Wait closes stdout: read it to its end first (os/exec).
		select {
		case <-d.readDone:
			return cmd.Wait()
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("%s driver did not exit 10 s after stdin closed", name)
		}
	})
	d.ready(t)
	t.Cleanup(func() { d.Close(t) })
	return d
}

// Pipe runs serve (e.g. ServeGo) in this process as a driver.
func Pipe(t testing.TB, name string, serve func(r io.Reader, w io.Writer)) *Driver {
	t.Helper()
	cmdR, cmdW := io.Pipe()
	evR, evW := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(cmdR, evW)
		evW.Close()
	}()
	d := newDriver(name, cmdW, evR, func() error {
		select {
		case <-done:
			return nil
		case <-time.After(10 * time.Second):
			return fmt.Errorf("%s driver did not stop 10 s after its input closed", name)
		}
	})
	d.ready(t)
	t.Cleanup(func() { d.Close(t) })
	return d
}

func newDriver(name string, w io.WriteCloser, r io.Reader, stop func() error) *Driver {
	d := &Driver{Name: name, w: w, stop: stop, readDone: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	go d.read(r)
	return d
}

func (d *Driver) read(r io.Reader) {
	defer close(d.readDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		e, err := parseEvent(line)
		d.mu.Lock()
		if err != nil && d.err == nil {
			d.err = fmt.Errorf("%s driver wrote a line that is not an event: %q: %v", d.Name, line, err)
		} else if err == nil {
			d.events = append(d.events, e)
		}
		d.cond.Broadcast()
		d.mu.Unlock()
	}
	d.mu.Lock()
	d.closed = true
	if err := sc.Err(); err != nil && d.err == nil {
		d.err = err
	}
	d.cond.Broadcast()
	d.mu.Unlock()
}

func (d *Driver) ready(t testing.TB) {
	t.Helper()
	e := d.Wait(t, 0, 30*time.Second, "ready", func(e Event) bool { return e.Ev == "ready" })
	d.SDK = e.SDK
}

// Close closes the driver's input and waits for it to exit.
func (d *Driver) Close(t testing.TB) {
	t.Helper()
	d.wmu.Lock()
	err := d.w.Close()
	d.wmu.Unlock()
	if err != nil {
		return // closed before
	}
	if err := d.stop(); err != nil {
		t.Errorf("%s driver: %v", d.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		t.Errorf("%v", d.err)
	}
}

// Mark is the index of the next event: Wait and Count from it see only
// what comes after.
func (d *Driver) Mark() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.events)
}

// Wait returns the first event at or after index from that match accepts,
// waiting up to timeout; it fails the test (with the events seen) when none
// comes.
func (d *Driver) Wait(t testing.TB, from int, timeout time.Duration, what string, match func(Event) bool) Event {
	t.Helper()
	if e, ok := d.wait(from, timeout, match); ok {
		return e
	}
	t.Fatalf("%s: no %s within %v; events since #%d:\n%s", d.Name, what, timeout, from, d.dump(from))
	return Event{}
}

func (d *Driver) wait(from int, timeout time.Duration, match func(Event) bool) (Event, bool) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer timer.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := from; ; {
		for ; i < len(d.events); i++ {
			if match(d.events[i]) {
				return d.events[i], true
			}
		}
		if d.closed || d.err != nil || !time.Now().Before(deadline) {
			return Event{}, false
		}
		d.cond.Wait()
	}
}

// Events returns the events at or after index from that match accepts.
func (d *Driver) Events(from int, match func(Event) bool) []Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Event
	for i := from; i < len(d.events); i++ {
		if match(d.events[i]) {
			out = append(out, d.events[i])
		}
	}
	return out
}

func (d *Driver) dump(from int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for i := from; i < len(d.events); i++ {
		fmt.Fprintf(&b, "  #%d %s\n", i, d.events[i].Raw)
	}
	if d.err != nil {
		fmt.Fprintf(&b, "  (driver error: %v)\n", d.err)
	}
	if d.closed {
		b.WriteString("  (driver output closed)\n")
	}
	return b.String()
}

// Send writes cmd with a fresh id and returns the id without waiting.
func (d *Driver) Send(t testing.TB, cmd Cmd) string {
	t.Helper()
	d.wmu.Lock()
	d.next++
	id := "r" + strconv.Itoa(d.next)
	cmd["id"] = id
	b, err := json.Marshal(cmd)
	if err == nil {
		_, err = d.w.Write(append(b, '\n'))
	}
	d.wmu.Unlock()
	if err != nil {
		t.Fatalf("%s driver: send %v: %v", d.Name, cmd, err)
	}
	return id
}

// Done waits for the done event of command id.
func (d *Driver) Done(t testing.TB, id string, timeout time.Duration) Event {
	t.Helper()
	return d.Wait(t, 0, timeout, "done of "+id, func(e Event) bool { return e.Ev == "done" && e.ID == id })
}

// Do sends cmd and waits (20 s) for its done event.
func (d *Driver) Do(t testing.TB, cmd Cmd) Event {
	t.Helper()
	return d.Done(t, d.Send(t, cmd), 20*time.Second)
}

// MustDo is Do that fails the test unless the command succeeded.
func (d *Driver) MustDo(t testing.TB, cmd Cmd) Event {
	t.Helper()
	e := d.Do(t, cmd)
	if !e.OK {
		t.Fatalf("%s driver: %v failed: %s", d.Name, cmd, e.Error)
	}
	return e
}
