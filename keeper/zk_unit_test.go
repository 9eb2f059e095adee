package keeper

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// These tests need no ZooKeeper.

func TestCheckNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"room", true},
		{"room-1.idc_a", true},
		{"房间", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{strings.Repeat("x", 256), false},
	} {
		if err := checkName(tc.name); (err == nil) != tc.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		} else if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("checkName(%q) = %v, not ErrBadName", tc.name, err)
		}
	}
	for _, tc := range []struct {
		root string
		ok   bool
	}{
		{"/lcpush", true},
		{"/a/b/c", true},
		{"lcpush", false},
		{"/", false},
		{"/a//b", false},
		{"/zookeeper", false},
		{"/zookeeper/x", false},
		{"/a/../b", false},
	} {
		if err := checkRoot(tc.root); (err == nil) != tc.ok {
			t.Errorf("checkRoot(%q) = %v, want ok=%v", tc.root, err, tc.ok)
		}
	}
}

func TestHeader(t *testing.T) {
	body := []byte("admin_key: x\n")
	hdr := FormatHeader(Current{Version: 7, Revision: 42})
	for _, tc := range []struct {
		name    string
		in      []byte
		body    []byte
		version int32
		ok      bool
	}{
		{"formatted", append([]byte(hdr), body...), body, 7, true},
		{"none", body, body, 0, false},
		{"hand written", []byte("# lcpush-keeper: version=3\n" + string(body)), body, 3, true},
		{"no version", []byte("# lcpush-keeper: revision=3\n" + string(body)), body, 0, false},
		{"negative", []byte("# lcpush-keeper: version=-1\n" + string(body)), body, 0, false},
		{"other comment", []byte("# version=3\n" + string(body)), []byte("# version=3\n" + string(body)), 0, false},
		{"empty", nil, nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, v, ok := SplitHeader(tc.in)
			if !bytes.Equal(b, tc.body) || v != tc.version || ok != tc.ok {
				t.Fatalf("SplitHeader = %q, %d, %v; want %q, %d, %v", b, v, ok, tc.body, tc.version, tc.ok)
			}
		})
	}
	// The header is a YAML comment: a file from get parses as it is.
	if _, err := config.Parse(append([]byte(hdr), testYAML("k")...)); err != nil {
		t.Fatalf("config with header: %v", err)
	}
}

func TestParseSeq(t *testing.T) {
	for _, tc := range []struct {
		in  string
		seq int64
		ok  bool
	}{
		{"v-0000000042", 42, true},
		{"v-0000000000", 0, true},
		{"v-", 0, false},
		{"x-0000000001", 0, false},
		{"v-12a", 0, false},
	} {
		if seq, ok := parseSeq(tc.in); seq != tc.seq || ok != tc.ok {
			t.Errorf("parseSeq(%q) = %d, %v", tc.in, seq, ok)
		}
	}
}

func TestMemberCodec(t *testing.T) {
	m := push.Member{Role: "room", ID: "r1", RPCAddr: "10.0.0.1:9100", Addrs: []string{"1.2.3.4:7000", "1.2.3.4:7001"}, IDC: "bj", Load: 17}
	data, err := encodeMember(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"rpc_addr":"10.0.0.1:9100"`)) {
		t.Fatalf("json = %s", data)
	}
	got, err := decodeMember("room", "r1", data)
	if err != nil || got.ID != m.ID || got.Load != 17 || len(got.Addrs) != 2 || got.IDC != "bj" || got.RPCAddr != m.RPCAddr {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	// The path names the member even if the data says otherwise.
	got, _ = decodeMember("room", "r9", data)
	if got.ID != "r9" {
		t.Fatalf("id = %q, want the path's r9", got.ID)
	}
	if _, err := decodeMember("room", "r1", []byte("{bad")); err == nil {
		t.Fatal("bad json decoded")
	}
}

// TestMemberCodecTransports: a room's addresses of every transport survive
// the znode, the TCP ones under the key every version reads.
func TestMemberCodecTransports(t *testing.T) {
	m := push.Member{Role: "room", ID: "r1", Addrs: []string{"1.2.3.4:7000"},
		TLSAddrs: []string{"1.2.3.4:7443"}, WSAddrs: []string{"ws://1.2.3.4:7001/v1/ws"},
		WSSAddrs: []string{"wss://push.example.com:443/v1/ws"}, Load: 1, Epoch: 9}
	data, err := encodeMember(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"addrs":["1.2.3.4:7000"]`, `"tls_addrs":["1.2.3.4:7443"]`,
		`"ws_addrs":["ws://1.2.3.4:7001/v1/ws"]`, `"wss_addrs":["wss://push.example.com:443/v1/ws"]`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Fatalf("json %s lacks %s", data, want)
		}
	}
	got, err := decodeMember("room", "r1", data)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, m)
	}
	// A TCP-only room writes no key of the newer transports.
	data, _ = encodeMember(push.Member{Role: "room", ID: "r2", Addrs: []string{"1.2.3.4:7000"}})
	if bytes.Contains(data, []byte("tls_addrs")) || bytes.Contains(data, []byte("ws")) {
		t.Fatalf("tcp-only json = %s", data)
	}
}

// TestMemberDecodeOldFormat: a znode written before the transports (only
// "addrs") is a TCP-only room; one with keys this version does not know
// still decodes.
func TestMemberDecodeOldFormat(t *testing.T) {
	old := []byte(`{"role":"room","id":"room-a","rpc_addr":"10.0.0.5:7105","addrs":["203.0.113.7:7000","203.0.113.7:7002"],"idc":"bj","load":12,"epoch":1700000000000000000}`)
	got, err := decodeMember("room", "room-a", old)
	if err != nil {
		t.Fatal(err)
	}
	want := push.Member{Role: "room", ID: "room-a", RPCAddr: "10.0.0.5:7105",
		Addrs: []string{"203.0.113.7:7000", "203.0.113.7:7002"}, IDC: "bj", Load: 12, Epoch: 1700000000000000000}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decode = %+v, want %+v", got, want)
	}
	for _, tr := range []string{push.TransportTLS, push.TransportWS, push.TransportWSS} {
		if a := got.TransportAddrs(tr); len(a) != 0 {
			t.Fatalf("old member serves %s: %v", tr, a)
		}
	}
	future := []byte(`{"role":"room","id":"room-a","addrs":["h:1"],"quic_addrs":["h:2"],"load":0}`)
	if got, err := decodeMember("room", "room-a", future); err != nil || !slices.Equal(got.Addrs, []string{"h:1"}) {
		t.Fatalf("decode with an unknown key = %+v, %v", got, err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"nothing", Config{}, ErrNoSource},
		{"both", Config{Source: &BytesSource{}, ZK: ZKConfig{Servers: []string{"x:1"}}}, ErrTwoSources},
		{"bad root", Config{ZK: ZKConfig{Servers: []string{"x:1"}, Root: "relative"}}, ErrBadName},
		{"zk", Config{ZK: ZKConfig{Servers: []string{"x:1"}}}, nil},
		{"source", Config{Source: &BytesSource{}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if !errors.Is(err, tc.want) || (err == nil) != (s != nil) {
				t.Fatalf("New = %v, %v; want %v", s, err, tc.want)
			}
		})
	}
}

// A dead address: a listener closed at once.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestDialZKUnreachable(t *testing.T) {
	start := time.Now()
	_, err := DialZK(context.Background(), ZKConfig{Servers: []string{deadAddr(t)}, ConnectTimeout: 300 * time.Millisecond})
	if !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	s, err := New(Config{ZK: ZKConfig{Servers: []string{deadAddr(t)}, ConnectTimeout: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("Start = %v, want ErrUnavailable", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCLIUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("admin_key: ''\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := deadAddr(t)
	for _, tc := range []struct {
		name   string
		args   []string
		want   error
		stdout string
		stderr string
	}{
		{"no command", nil, ErrUsage, "", "usage: lcpush keeper"},
		{"unknown", []string{"frobnicate"}, ErrUsage, "", "usage: lcpush keeper"},
		{"help", []string{"help"}, nil, "rollback", ""},
		{"-h", []string{"-h"}, flag.ErrHelp, "", "usage: lcpush keeper"},
		{"bad flag", []string{"get", "-nope"}, nil, "", "flag provided but not defined"},
		{"put no file", []string{"put"}, ErrUsage, "", ""},
		{"put invalid", []string{"-zk", dead, "put", bad}, config.ErrInvalid, "", ""},
		{"put missing", []string{"put", filepath.Join(dir, "none.yaml")}, os.ErrNotExist, "", ""},
		{"rollback not a number", []string{"-zk", dead, "rollback", "x"}, ErrUsage, "", ""},
		{"unreachable", []string{"-zk", dead, "-timeout", "200ms", "get"}, push.ErrUnavailable, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := RunCLI(context.Background(), tc.args, &out, &errOut)
			if tc.want != nil && !errors.Is(err, tc.want) || tc.want == nil && tc.name != "bad flag" && err != nil {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.name == "bad flag" && err == nil {
				t.Fatal("bad flag accepted")
			}
			if !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errOut.String(), tc.stderr) {
				t.Fatalf("stdout %q, stderr %q; want %q, %q", out.String(), errOut.String(), tc.stdout, tc.stderr)
			}
		})
	}
}

func TestPublicAddrsListsEveryTransport(t *testing.T) {
	m := push.Member{Addrs: []string{"h:7000"}, TLSAddrs: []string{"h:7443"},
		WSAddrs: []string{"ws://h:7001/v1/ws"}, WSSAddrs: []string{"wss://h:443/v1/ws"}}
	want := []string{"h:7000", "tls://h:7443", "ws://h:7001/v1/ws", "wss://h:443/v1/ws"}
	if got := publicAddrs(m); !slices.Equal(got, want) {
		t.Fatalf("publicAddrs = %v, want %v", got, want)
	}
	if got := publicAddrs(push.Member{}); len(got) != 0 {
		t.Fatalf("publicAddrs(empty) = %v", got)
	}
}
