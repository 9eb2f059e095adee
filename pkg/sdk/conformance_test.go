package sdk

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

// conformanceSession is one script of conformance/sessions.json.
type conformanceSession struct {
	Name   string
	Client struct {
		App   uint32
		UID   string
		Token string
		HB    int
	}
	Deliver []struct {
		ID         string
		PayloadHex string `json:"payload_hex"`
		QoS        int
	}
	Steps []struct {
		Do       string
		Op       uint8
		App      *uint32
		JSON     map[string]any
		AckIDs   []string `json:"ack_ids"`
		Skip     []uint8
		Hex      string
		Reply    bool
		WithinMS int `json:"within_ms"`
		QuietMS  int `json:"quiet_ms"`
	}
}

// The shared session scripts (conformance/sessions.json): the SDK, run
// against a server that plays each script, answers what the script says a
// client must, and delivers what it must.
func TestConformanceSessions(t *testing.T) {
	raw, err := os.ReadFile("../../conformance/sessions.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Sessions []conformanceSession }
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Sessions) < 4 {
		t.Fatalf("%d scripts, %v", len(v.Sessions), err)
	}
	for _, sc := range v.Sessions {
		t.Run(sc.Name, func(t *testing.T) { runConformanceSession(t, sc) })
	}
}

func runConformanceSession(t *testing.T, sc conformanceSession) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan Message, 16)
	c, err := New(Config{
		Addrs: []string{ln.Addr().String()}, App: sc.Client.App, UID: sc.Client.UID, Token: sc.Client.Token,
		Heartbeat: time.Duration(sc.Client.HB) * time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		OnMessage: func(m Message) { got <- m },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() { _ = c.Connect(context.Background()) }()

	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(testkit.Timeout))
	nc, err := ln.Accept()
	if err != nil {
		t.Fatalf("the client did not connect: %v", err)
	}
	defer nc.Close()
	dec := proto.NewDecoder(nc, 1<<20)
	var lastSeq uint32
	for i, st := range sc.Steps {
		switch st.Do {
		case "send":
			b, err := hex.DecodeString(st.Hex)
			if err != nil {
				t.Fatal(err)
			}
			if st.Reply {
				binary.BigEndian.PutUint32(b[8:], lastSeq)
			}
			if _, err := nc.Write(b); err != nil {
				t.Fatalf("step %d: write: %v", i, err)
			}
		case "expect":
			within := testkit.Timeout
			if st.WithinMS > 0 {
				within = time.Duration(st.WithinMS) * time.Millisecond
			}
			_ = nc.SetReadDeadline(time.Now().Add(within))
			var f proto.Frame
			for {
				if f, err = dec.Next(); err != nil {
					t.Fatalf("step %d: want op %#x within %v: %v", i, st.Op, within, err)
				}
				if !slices.Contains(st.Skip, f.Op) {
					break
				}
			}
			if f.Op != st.Op || st.App != nil && f.App != *st.App {
				t.Fatalf("step %d: got op %#x app %d, want op %#x app %v", i, f.Op, f.App, st.Op, st.App)
			}
			lastSeq = f.Seq
			for k, want := range st.JSON {
				var body map[string]any
				if err := proto.DecodeJSON(f.Body, &body); err != nil || body[k] != want {
					t.Fatalf("step %d: body %s: %q is %v, want %v (%v)", i, f.Body, k, body[k], want, err)
				}
			}
			if st.AckIDs != nil {
				ids, err := proto.ParseAck(nil, f.Body)
				var s []string
				for _, id := range ids {
					s = append(s, strconv.FormatUint(id, 10))
				}
				if err != nil || !slices.Equal(s, st.AckIDs) {
					t.Fatalf("step %d: ACK %v %v, want %v", i, s, err, st.AckIDs)
				}
			}
		case "expect_close":
			_ = nc.SetReadDeadline(time.Now().Add(testkit.Timeout))
			for {
				f, err := dec.Next()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("step %d: the client kept the connection open", i)
					}
					break
				}
				if !slices.Contains(st.Skip, f.Op) {
					t.Fatalf("step %d: got op %#x, want the client to close", i, f.Op)
				}
			}
			_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Duration(st.QuietMS) * time.Millisecond))
			if again, err := ln.Accept(); err == nil {
				again.Close()
				t.Fatalf("step %d: the client came back", i)
			}
		default:
			t.Fatalf("step %d: unknown step %q", i, st.Do)
		}
	}
	for _, want := range sc.Deliver {
		select {
		case m := <-got:
			if strconv.FormatUint(m.ID, 10) != want.ID || hex.EncodeToString(m.Payload) != want.PayloadHex || m.QoS1 != (want.QoS == 1) {
				t.Fatalf("delivered %+v, want %+v", m, want)
			}
		case <-time.After(testkit.Timeout):
			t.Fatalf("message %s not delivered", want.ID)
		}
	}
}
