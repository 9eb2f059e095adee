package saver

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Delivery status (Store.OpenStatus, AddSent, Status, UserState): one record
// per message (its counts) and, for unicast and multicast, one state per
// uid given to OpenStatus. Every store keeps the same state machine, one
// byte per uid (the same byte in Bolt, in Redis and in Memory):
//
//	u  unknown: a recipient nothing happened to yet
//	s  stored (Save), not yet sent
//	t  sent after it was stored
//	T  sent, never stored (QoS 0)
//	a  acked       (from s, t, p: an entry that was stored)
//	x  expired     (the entry was dropped at its TTL unACKed)
//	p  parked      (loaded MaxLoads times without an ACK)
//
// Each counter moves on a transition only, so that repeating an operation
// (a retried Save, a repeated ACK) never counts twice: Stored on u->s and
// T->t, Acked on ->a, Parked on ->p, Expired on ->x. Sent counts writes,
// not uids: every delta adds its n.

// StatusGrace is how long a status record outlives its message's Expires,
// so that the final counts (expired above all: entries are dropped at
// Expires) can still be read. Status finds a record until Expires +
// StatusGrace; Expire drops it then.
const StatusGrace = 10 * time.Minute

const (
	suUnknown    = 'u'
	suStored     = 's'
	suSentStored = 't'
	suSent       = 'T'
	suAcked      = 'a'
	suExpired    = 'x'
	suParked     = 'p'
)

// stateName is the push.State constant of a per-uid state byte.
func stateName(c byte) string {
	switch c {
	case suStored:
		return push.StateStored
	case suSentStored, suSent:
		return push.StateSent
	case suAcked:
		return push.StateAcked
	case suExpired:
		return push.StateExpired
	case suParked:
		return push.StateParked
	}
	return push.StateUnknown
}

// Transitions: the new state and whether the event counts.
func onStore(c byte) (byte, bool) {
	switch c {
	case suUnknown:
		return suStored, true
	case suSent:
		return suSentStored, true
	}
	return c, false
}

func onSent(c byte) byte {
	switch c {
	case suUnknown:
		return suSent
	case suStored:
		return suSentStored
	}
	return c
}

func onAck(c byte) (byte, bool) {
	switch c {
	case suStored, suSentStored, suParked:
		return suAcked, true
	}
	return c, false
}

func onPark(c byte) (byte, bool) {
	switch c {
	case suAcked, suExpired, suParked:
		return c, false
	}
	return suParked, true
}

func onExpire(c byte) (byte, bool) {
	switch c {
	case suAcked, suExpired:
		return c, false
	}
	return suExpired, true
}

// ownApp reports whether a caller acting for app may read a record of
// recApp: its own, or any for app 0 (operators only, as in UserStats; app
// id 0 is reserved, so no app's caller has it).
func ownApp(app, recApp uint32) bool { return app == 0 || app == recApp }

// statusDrop is when a record with this Expires is dropped (unix seconds).
func statusDrop(expires int64) int64 { return expires + int64(StatusGrace/time.Second) }

// statusLive reports whether a record is still visible at unix time now.
func statusLive(st *push.MessageStatus, now int64) bool { return now < statusDrop(st.Expires) }

// checkStatus validates OpenStatus's arguments and returns the record to
// create (counts zeroed, Targets defaulted) and the distinct uids (none
// for a broadcast).
func checkStatus(st push.MessageStatus, uids []string) (push.MessageStatus, []string, error) {
	switch {
	case st.MsgID == 0:
		return st, nil, fmt.Errorf("message id 0: %w", ErrInvalid)
	case st.Expires <= 0:
		return st, nil, fmt.Errorf("message %d: status needs an expiry: %w", st.MsgID, ErrInvalid)
	case kindCode(st.Kind) < 0:
		return st, nil, fmt.Errorf("message %d kind %q: %w", st.MsgID, st.Kind, ErrInvalid)
	case st.Targets < 0:
		return st, nil, fmt.Errorf("message %d targets %d: %w", st.MsgID, st.Targets, ErrInvalid)
	}
	if st.Kind == push.KindBroadcast {
		uids = nil
	}
	for _, uid := range uids {
		if err := checkUID(uid); err != nil {
			return st, nil, fmt.Errorf("message %d: %w", st.MsgID, err)
		}
	}
	if len(uids) > 1 {
		uids = slices.Clone(uids)
		slices.Sort(uids)
		uids = slices.Compact(uids)
	}
	out := push.MessageStatus{MsgID: st.MsgID, App: st.App, Kind: st.Kind, Created: st.Created, Expires: st.Expires, Targets: st.Targets}
	if out.Targets == 0 {
		out.Targets = int64(len(uids))
	}
	return out, uids, nil
}

func checkDeltas(deltas []push.StatusDelta) error {
	for _, d := range deltas {
		if d.UID != "" {
			if err := checkUID(d.UID); err != nil {
				return fmt.Errorf("message %d: %w", d.MsgID, err)
			}
		}
		if d.Sent < 0 {
			return fmt.Errorf("message %d sent %d: %w", d.MsgID, d.Sent, ErrInvalid)
		}
	}
	return nil
}

func kindCode(kind string) int {
	switch kind {
	case push.KindUnicast:
		return 0
	case push.KindMulticast:
		return 1
	case push.KindBroadcast:
		return 2
	}
	return -1
}

var kindNames = []string{push.KindUnicast, push.KindMulticast, push.KindBroadcast}

// broadcastState is a uid's state of a broadcast from the record and the
// uid's ACK record (rec: suAcked, suParked or 0 for none).
func broadcastState(st *push.MessageStatus, rec byte, now int64) string {
	switch {
	case rec == suAcked:
		return push.StateAcked
	case rec == suParked:
		return push.StateParked
	case st.Stored == 0:
		return push.StateUnknown // never stored (QoS 0)
	case st.Expired > 0 || now >= st.Expires:
		return push.StateExpired
	}
	return push.StateStored
}

// Bolt layout of a status record (big-endian):
//
//	version u8 (1) | app u32 | kind u8 | created i64 | expires i64 |
//	targets, stored, sent, acked, expired, parked i64
const statusLen = 1 + 4 + 1 + 8*8

func appendStatus(dst []byte, st *push.MessageStatus) []byte {
	dst = append(dst, 1)
	dst = binary.BigEndian.AppendUint32(dst, st.App)
	dst = append(dst, byte(max(kindCode(st.Kind), 0)))
	for _, v := range []int64{st.Created, st.Expires, st.Targets, st.Stored, st.Sent, st.Acked, st.Expired, st.Parked} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v))
	}
	return dst
}

func decodeStatus(id uint64, v []byte) (push.MessageStatus, error) {
	if len(v) < statusLen || v[0] != 1 || int(v[5]) >= len(kindNames) {
		return push.MessageStatus{}, fmt.Errorf("status of %d bytes: %w", len(v), ErrCorrupt)
	}
	st := push.MessageStatus{MsgID: id, App: binary.BigEndian.Uint32(v[1:]), Kind: kindNames[v[5]]}
	f := []*int64{&st.Created, &st.Expires, &st.Targets, &st.Stored, &st.Sent, &st.Acked, &st.Expired, &st.Parked}
	for i, p := range f {
		*p = int64(binary.BigEndian.Uint64(v[6+8*i:]))
	}
	return st, nil
}

// impliedStatus is the record Save opens for a message that has none (the
// center does not call OpenStatus for what it saves: one write, not two):
// one uid is a unicast, more a multicast, the uids its targets. A message
// without an expiry gets no record (none may live for ever).
func impliedStatus(msg *push.Message, uids []string) (push.MessageStatus, []string, bool) {
	if msg.Expire <= 0 || len(uids) == 0 {
		return push.MessageStatus{}, nil, false
	}
	kind := push.KindMulticast
	if len(uids) == 1 {
		kind = push.KindUnicast
	}
	st, u, err := checkStatus(push.MessageStatus{MsgID: msg.ID, App: msg.App, Kind: kind, Created: time.Now().Unix(), Expires: msg.Expire}, uids)
	return st, u, err == nil
}
