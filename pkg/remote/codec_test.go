package remote

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

type codec interface {
	rpc.Message
	rpc.Unmarshaler
}

var (
	tSess  = push.Session{UID: "u1", Room: "room-a", ConnID: 1<<63 | 7, Apps: []uint32{1, 2, 1 << 31}, Since: 1700000000, IP: "10.0.0.1"}
	tSess2 = push.Session{UID: "用户", Room: "r", ConnID: 1, Since: -5}
	tMsg   = push.Message{ID: 1<<62 + 3, App: 7, QoS: push.QoS1, Expire: 1700003600, Payload: []byte("hello")}
	tBcast = push.Message{ID: 9, App: 1<<32 - 1, Broadcast: true}
	tJob   = push.Job{ID: 1<<62 + 3, App: 7, Msg: tMsg, Rate: 1e5, Stored: true, Owner: "center-1", Started: 1700000000123,
		Deadline: 1700000600123, State: push.JobDone, Finished: 1700000100000, Error: "some rooms failed", Keep: 1700086500000}
	tTask = push.JobTask{Room: "room-a", State: push.TaskRunning, Owner: "center-2", Lease: 1700000015000, Targets: 1 << 40, Pushed: 12345, Error: "x"}
	tNow  = time.Unix(1700000000, 123456789)
)

// codecCases lists every request and reply body with a sample value and a
// constructor of the empty value to decode into.
var codecCases = []struct {
	name string
	in   codec
	out  func() codec
}{
	{"session", &sessionMsg{S: tSess}, func() codec { return new(sessionMsg) }},
	{"session/zero", &sessionMsg{}, func() codec { return new(sessionMsg) }},
	{"setAppsResp", &setAppsResp{OK: true, Displaced: []push.Session{tSess2}}, func() codec { return new(setAppsResp) }},
	{"setAppsResp/none", &setAppsResp{}, func() codec { return new(setAppsResp) }},
	{"getReq", &getReq{UID: "u", App: 7}, func() codec { return new(getReq) }},
	{"conn", &connReq{UID: "u", Room: "r", ConnID: 42}, func() codec { return new(connReq) }},
	{"setApps", &setAppsReq{UID: "u", ConnID: 3, Apps: []uint32{5, 6}}, func() codec { return new(setAppsReq) }},
	{"setApps/none", &setAppsReq{UID: "u", ConnID: 3}, func() codec { return new(setAppsReq) }},
	{"bool", &boolMsg{V: true}, func() codec { return new(boolMsg) }},
	{"int", &intMsg{N: -12345}, func() codec { return new(intMsg) }},
	{"get", &getResp{S: tSess, OK: true}, func() codec { return new(getResp) }},
	{"get/miss", &getResp{}, func() codec { return new(getResp) }},
	{"strings", &stringsMsg{S: []string{"a", "", "ccc"}}, func() codec { return new(stringsMsg) }},
	{"sessions", &sessionsMsg{S: []push.Session{tSess, tSess2, tSess}}, func() codec { return new(sessionsMsg) }},
	{"sessions/none", &sessionsMsg{}, func() codec { return new(sessionsMsg) }},
	{"scanReq", &scanReq{App: 9, Cursor: 1<<56 | 77, Limit: 500}, func() codec { return new(scanReq) }},
	{"scanResp", &scanResp{S: []push.Session{tSess}, Next: 99}, func() codec { return new(scanResp) }},
	{"counts", &countsMsg{C: push.Counts{Total: 3, PerApp: map[uint32]int{1: 2, 7: 1}, PerRoom: map[string]int{"a": 1, "b": 2}}}, func() codec { return new(countsMsg) }},
	{"counts/empty", &countsMsg{C: push.Counts{PerApp: map[uint32]int{}, PerRoom: map[string]int{}}}, func() codec { return new(countsMsg) }},
	{"string", &stringMsg{S: "room-7"}, func() codec { return new(stringMsg) }},
	{"save", &saveReq{Msg: tMsg, UIDs: []string{"u1", "u2"}}, func() codec { return new(saveReq) }},
	{"message", &messageMsg{M: tBcast}, func() codec { return new(messageMsg) }},
	{"load", &loadReq{UID: "u", Apps: []uint32{1}}, func() codec { return new(loadReq) }},
	{"messages", &messagesMsg{M: []push.Message{tMsg, tBcast}}, func() codec { return new(messagesMsg) }},
	{"ack", &ackReq{UID: "u", IDs: []uint64{1, 1 << 63}, Apps: []uint32{1, 1<<32 - 1}}, func() codec { return new(ackReq) }},
	{"ack/no apps", &ackReq{UID: "u", IDs: []uint64{1}}, func() codec { return new(ackReq) }},
	{"userStats", &userStatsReq{UID: "用户", App: 7}, func() codec { return new(userStatsReq) }},
	{"userStats/every app", &userStatsReq{UID: "u"}, func() codec { return new(userStatsReq) }},
	{"stats", &statsMsg{S: push.StoreStats{Pending: 5, PendingPerApp: map[uint32]int64{1: 5}, Broadcasts: 2, Saved: 10, Acked: 4, Expired: 1, Parked: 1}}, func() codec { return new(statsMsg) }},
	{"openStatus", &openStatusReq{St: push.MessageStatus{MsgID: 1 << 62, App: 3, Kind: push.KindMulticast, Created: 1700000000, Expires: 1700086400,
		Targets: 3, Stored: 2, Sent: 7, Acked: 1, Expired: 1, Parked: -1}, UIDs: []string{"a", "用户"}}, func() codec { return new(openStatusReq) }},
	{"openStatus/none", &openStatusReq{}, func() codec { return new(openStatusReq) }},
	{"addSent", &addSentReq{D: []push.StatusDelta{{MsgID: 1, App: 2, UID: "u", Sent: 3}, {MsgID: 1 << 63, App: 1<<32 - 1, Sent: 1 << 40}}}, func() codec { return new(addSentReq) }},
	{"statusReq", &statusReq{App: 4, ID: 99, UID: "u"}, func() codec { return new(statusReq) }},
	{"statusResp", &statusResp{St: push.MessageStatus{MsgID: 5, App: 1, Kind: push.KindBroadcast, Expires: 9, Stored: 1}, OK: true}, func() codec { return new(statusResp) }},
	{"statusResp/miss", &statusResp{}, func() codec { return new(statusResp) }},
	{"enqueue", &queuedPushMsg{Q: push.QueuedPush{Msg: push.Message{ID: 1 << 62, App: 3, QoS: push.QoS1, Expire: 1700086400, Payload: []byte{0, 1}},
		UIDs: []string{"a", "用户"}, Owner: "center-1", At: 1700000000123}}, func() codec { return new(queuedPushMsg) }},
	{"enqueue/none", &queuedPushMsg{}, func() codec { return new(queuedPushMsg) }},
	{"dequeue", &idsMsg{IDs: []uint64{1, 1 << 63}}, func() codec { return new(idsMsg) }},
	{"queuedReq", &queuedReq{Owner: "center-1", Limit: 100000}, func() codec { return new(queuedReq) }},
	{"queuedResp", &queuedResp{Q: []push.QueuedPush{{Msg: tMsg, UIDs: []string{"u"}, Owner: "c", At: -1}, {Msg: push.Message{ID: 2}, Owner: "d"}}}, func() codec { return new(queuedResp) }},
	{"queuedResp/none", &queuedResp{}, func() codec { return new(queuedResp) }},
	{"claim", &claimReq{From: "center-1", To: "center-2"}, func() codec { return new(claimReq) }},
	{"createJob", &createJobReq{J: tJob, Rooms: []string{"room-a", "房间"}}, func() codec { return new(createJobReq) }},
	{"createJob/none", &createJobReq{}, func() codec { return new(createJobReq) }},
	{"id", &idMsg{ID: 1<<63 | 9}, func() codec { return new(idMsg) }},
	{"jobResp", &jobResp{J: tJob, Tasks: []push.JobTask{tTask, {Room: "r", State: push.TaskPending}}, OK: true}, func() codec { return new(jobResp) }},
	{"jobResp/no tasks", &jobResp{J: tJob, OK: true}, func() codec { return new(jobResp) }},
	{"jobResp/miss", &jobResp{}, func() codec { return new(jobResp) }},
	{"claimTask", &claimTaskReq{ID: 5, Room: "room-a", Owner: "center-2", Now: tNow, Lease: 15 * time.Second}, func() codec { return new(claimTaskReq) }},
	{"updateTask", &updateTaskReq{ID: 5, T: tTask, Now: tNow, Lease: -1}, func() codec { return new(updateTaskReq) }},
	{"finishJob", &finishJobReq{ID: 5, State: push.JobFailed, Error: "deadline passed", Now: tNow, Keep: 24 * time.Hour}, func() codec { return new(finishJobReq) }},
	{"coordKick", &coordKickReq{Old: tSess, Code: push.KickLoginElsewhere, Reason: "elsewhere"}, func() codec { return new(coordKickReq) }},
	{"upstream", &upstreamMsg{U: push.Upstream{App: 3, UID: "u", Type: 65535, Data: []byte{0, 1, 2}, TS: 1700000000123}}, func() codec { return new(upstreamMsg) }},
	{"status", &statusMsg{E: push.StatusEvent{App: 3, UID: "u", Event: push.EventOnline, Room: "r", TS: 1}}, func() codec { return new(statusMsg) }},
	{"push", &pushReq{Msg: tMsg, Targets: []push.Target{{UID: "u1", ConnID: 1}, {UID: "u2"}}}, func() codec { return new(pushReq) }},
	{"broadcast", &broadcastReq{Msg: tMsg, PerSec: 1234.5}, func() codec { return new(broadcastReq) }},
	{"roomKick", &roomKickReq{UID: "u", ConnID: 8, Code: push.KickAdmin, Reason: ""}, func() codec { return new(roomKickReq) }},
	{"roomKick/apps", &roomKickReq{UID: "u", ConnID: 8, Apps: []uint32{1, 2}, Code: push.KickLoginElsewhere, Reason: "x"}, func() codec { return new(roomKickReq) }},
	{"empty", &empty{}, func() codec { return new(empty) }},
	{"checkpoint", &checkpointReq{E: []push.SessionEnd{{UID: "u", Apps: []uint32{1, 1<<32 - 1}}, {UID: "用户"}}}, func() codec { return new(checkpointReq) }},
	{"checkpoint/none", &checkpointReq{}, func() codec { return new(checkpointReq) }},
	{"ackMany", &ackManyReq{A: tAcks}, func() codec { return new(ackManyReq) }},
	{"ackMany/none", &ackManyReq{}, func() codec { return new(ackManyReq) }},
}

func encode(t testing.TB, m rpc.Message) []byte {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			b := encode(t, tc.in)
			out := tc.out()
			if err := out.UnmarshalBinary(b); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(tc.in, out) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", out, tc.in)
			}
			// Trailing bytes are a later version's fields: ignored.
			out = tc.out()
			if err := out.UnmarshalBinary(append(b, 0xff, 0x01)); err != nil {
				t.Fatalf("decode with trailing bytes: %v", err)
			}
			// Every strict prefix is refused (a message with no field
			// decodes from nothing and has no prefix to test).
			for n := 0; n < len(b); n++ {
				if err := tc.out().UnmarshalBinary(b[:n]); !errors.Is(err, wire.ErrMalformed) {
					t.Fatalf("prefix %d/%d: err %v, want ErrMalformed", n, len(b), err)
				}
			}
		})
	}
}

func TestCodecCopiesInput(t *testing.T) {
	b := encode(t, &pushReq{Msg: tMsg, Targets: []push.Target{{UID: "u1", ConnID: 1}}})
	var out pushReq
	if err := out.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	clear(b) // rpc reuses its buffers once the handler returns
	if !bytes.Equal(out.Msg.Payload, tMsg.Payload) || out.Targets[0].UID != "u1" {
		t.Fatalf("decoded values alias the input: %+v", out)
	}
}

func TestCodecRefusesForgedCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		out  codec
	}{
		{"sessions", wire.AppendUvarint(nil, 1<<40), new(sessionsMsg)},
		{"strings", wire.AppendUvarint(nil, 1<<40), new(stringsMsg)},
		{"apps", wire.AppendUvarint(wire.AppendUint64(wire.AppendString(nil, "u"), 1), 3), new(setAppsReq)},
		{"counts", wire.AppendUvarint(wire.AppendVarint(nil, 1), 1<<30), new(countsMsg)},
		{"bool", []byte{2}, new(boolMsg)},
	} {
		if err := tc.out.UnmarshalBinary(tc.body); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", tc.name, err)
		}
	}
}

// AddSent's targets ride after the deltas, an optional section: a request
// without it (the first version's encoding) reads as no targets, and the
// deltas before it read the same either way.
func TestCodecAddSentTargets(t *testing.T) {
	with := &addSentReq{D: []push.StatusDelta{{MsgID: 1, App: 2, UID: "u", Sent: 3}, {MsgID: 9, App: 2, Sent: 10, Targets: 4000}}}
	without := &addSentReq{D: []push.StatusDelta{{MsgID: 1, App: 2, UID: "u", Sent: 3}, {MsgID: 9, App: 2, Sent: 10}}}
	b, old := encode(t, with), encode(t, without)
	if !bytes.HasPrefix(b, old) || len(b) == len(old) {
		t.Fatalf("the targets are not a section after the deltas: %x, %x", b, old)
	}
	for _, tc := range []struct {
		name string
		body []byte
		want *addSentReq
	}{
		{"with targets", b, with},
		{"with targets and trailing bytes", append(slices.Clone(b), 0xff, 0x01), with},
		{"first version", old, without},
		{"first version and another section", append(slices.Clone(old), 0x05, 0x01), without},
	} {
		var out addSentReq
		if err := out.UnmarshalBinary(tc.body); err != nil || !reflect.DeepEqual(&out, tc.want) {
			t.Errorf("%s: %+v %v, want %+v", tc.name, out, err, tc.want)
		}
	}
	// A section cut short is refused.
	if err := new(addSentReq).UnmarshalBinary(b[:len(b)-1]); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("cut targets: %v, want ErrMalformed", err)
	}
}

// FuzzDecodeMessages decodes arbitrary bytes as every body type (the first
// byte picks it): no panic, and what decodes re-encodes to an equal value.
func FuzzDecodeMessages(f *testing.F) {
	for i, tc := range codecCases {
		f.Add(append([]byte{byte(i)}, encode(f, tc.in)...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		tc := codecCases[int(data[0])%len(codecCases)]
		checkRedecode(t, tc.out, data[1:])
	})
}

// FuzzDecodeSessions targets the session list, the largest reply.
func FuzzDecodeSessions(f *testing.F) {
	f.Add(encode(f, &sessionsMsg{S: []push.Session{tSess, tSess2}}))
	f.Add([]byte{0x05, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRedecode(t, func() codec { return new(sessionsMsg) }, data)
	})
}

// FuzzDecodeMessage targets the push and broadcast requests (a message
// and targets or a rate).
func FuzzDecodeMessage(f *testing.F) {
	f.Add(encode(f, &pushReq{Msg: tMsg, Targets: []push.Target{{UID: "u", ConnID: 2}}}))
	f.Add(encode(f, &broadcastReq{Msg: tMsg, PerSec: 50000}))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRedecode(t, func() codec { return new(pushReq) }, data)
		checkRedecode(t, func() codec { return new(broadcastReq) }, data)
	})
}

func checkRedecode(t *testing.T, mk func() codec, data []byte) {
	m := mk()
	if err := m.UnmarshalBinary(data); err != nil {
		if !errors.Is(err, wire.ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
		return
	}
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	m2 := mk()
	if err := m2.UnmarshalBinary(b); err != nil {
		t.Fatalf("re-decode: %v", err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("re-decode differs:\n%+v\n%+v", m, m2)
	}
}

func BenchmarkCodec(b *testing.B) {
	sessions := make([]push.Session, 100)
	for i := range sessions {
		sessions[i] = tSess
		sessions[i].UID = fmt.Sprintf("user-%06d", i)
	}
	for _, size := range []int{64, 1024, 16384} {
		m := tMsg
		m.Payload = make([]byte, size)
		req := &pushReq{Msg: m, Targets: []push.Target{{UID: "u1", ConnID: 1}}}
		b.Run(fmt.Sprintf("push/encode/%d", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			buf := make([]byte, 0, size+256)
			for b.Loop() {
				buf, _ = req.AppendBinary(buf[:0])
			}
		})
		enc := encode(b, req)
		b.Run(fmt.Sprintf("push/decode/%d", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			var out pushReq
			for b.Loop() {
				_ = out.UnmarshalBinary(enc)
			}
		})
	}
	b.Run("sessions100/encode", func(b *testing.B) {
		b.ReportAllocs()
		m := &sessionsMsg{S: sessions}
		buf := make([]byte, 0, 8192)
		for b.Loop() {
			buf, _ = m.AppendBinary(buf[:0])
		}
	})
	enc := encode(b, &sessionsMsg{S: sessions})
	b.Run("sessions100/decode", func(b *testing.B) {
		b.ReportAllocs()
		var out sessionsMsg
		for b.Loop() {
			_ = out.UnmarshalBinary(enc)
		}
	})
}
