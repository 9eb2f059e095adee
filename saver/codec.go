package saver

import (
	"encoding/binary"
	"fmt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Record value layout, shared by inbox entries and broadcasts (big-endian):
//
//	off 0  version  u8   (valueVersion)
//	off 1  app      u32
//	off 5  expire   i64  unix seconds, 0 = never
//	off 13 qos      u8
//	off 14 payload  rest of the value
//
// The version byte lets a later layout coexist with files written by this one.
const (
	valueVersion = 1

	offVersion = 0
	offApp     = 1
	offExpire  = 5
	offQoS     = 13
	offPayload = 14
	headerLen  = offPayload
)

// appendValue appends the encoding of msg (ID and Broadcast live in the key
// and the bucket, not in the value).
func appendValue(dst []byte, msg *push.Message) []byte {
	dst = append(dst, valueVersion)
	dst = binary.BigEndian.AppendUint32(dst, msg.App)
	dst = binary.BigEndian.AppendUint64(dst, uint64(msg.Expire))
	dst = append(dst, msg.QoS)
	return append(dst, msg.Payload...)
}

// decodeHeader returns the app and expiry of an encoded value.
func decodeHeader(v []byte) (app uint32, expire int64, err error) {
	if len(v) < headerLen {
		return 0, 0, fmt.Errorf("value of %d bytes: %w", len(v), ErrCorrupt)
	}
	if v[offVersion] != valueVersion {
		return 0, 0, fmt.Errorf("value version %d: %w", v[offVersion], ErrCorrupt)
	}
	app = binary.BigEndian.Uint32(v[offApp:])
	expire = int64(binary.BigEndian.Uint64(v[offExpire:]))
	if expire < 0 {
		return 0, 0, fmt.Errorf("value expire %d: %w", expire, ErrCorrupt)
	}
	return app, expire, nil
}

// decodeValue decodes v into a message with the given id. The payload is
// copied: bolt's bytes are only valid inside their transaction.
func decodeValue(id uint64, v []byte) (push.Message, error) {
	app, expire, err := decodeHeader(v)
	if err != nil {
		return push.Message{}, err
	}
	msg := push.Message{ID: id, App: app, Expire: expire, QoS: v[offQoS]}
	if len(v) > headerLen {
		msg.Payload = append([]byte(nil), v[offPayload:]...)
	}
	return msg, nil
}

// Keys.
//
//	inbox  uid 0x00 BE64(id)                 -> value
//	bcast  BE64(id)                          -> value
//	bseq   BE64(id)                          -> BE64 seq (broadcast cursors, bolt_limits.go)
//	bcur   uid 0x00 BE32(app)                -> the uid's broadcast cursor of app
//	expiry BE64(expire) kind key-in-bucket   -> empty, kind 'i' (inbox) or 'b' (bcast)
//
// (Layout 2's backs, BE64(broadcast id) uid -> the uid's state of it, is
// folded into bcur at open: bolt_migrate.go.) uids hold no NUL byte
// (checkUID), so "uid 0x00" is an unambiguous inbox prefix.
const (
	kindInbox = 'i'
	kindBcast = 'b'
)

func inboxPrefix(dst []byte, uid string) []byte {
	dst = append(dst, uid...)
	return append(dst, 0)
}

func inboxKey(dst []byte, uid string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(inboxPrefix(dst, uid), id)
}

// inboxID returns the message id at the end of an inbox key.
func inboxID(k []byte) uint64 {
	if len(k) < 9 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

func idKey(dst []byte, id uint64) []byte { return binary.BigEndian.AppendUint64(dst, id) }

func backsKey(dst []byte, id uint64, uid string) []byte {
	return append(idKey(dst, id), uid...)
}

func expiryKey(dst []byte, expire int64, kind byte, key []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(expire))
	dst = append(dst, kind)
	return append(dst, key...)
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
