package saver

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/lcpush/lcpush/pkg/push"
)

// statShards spreads the pending counters over several keys (and so, in
// Redis Cluster, over several slots): each user's counts live in the shard
// of its uid hash.
const statShards = 8

// keyspace names the Redis keys of one store (layout in redis_scripts.go).
type keyspace struct{ prefix string }

func (k keyspace) user(uid string) string { return k.prefix + "u{" + uid + "}" }
func (k keyspace) broadcasts() string     { return k.prefix + "{bc}" }
func (k keyspace) broadcastSeqs() string  { return k.prefix + "{bc}:q" }
func (k keyspace) meta() string           { return k.prefix + "{meta}" }
func (k keyspace) sweepLock() string      { return k.prefix + "{meta}:sweep" }
func (k keyspace) stats(shard int) string { return k.prefix + "{stats:" + strconv.Itoa(shard) + "}" }

// Delivery status (redis_status.go): a message's record and its per-uid
// states share the id's hash tag; the index of records by drop time is
// one key.
func (k keyspace) status(id uint64) string {
	return k.prefix + "s{" + strconv.FormatUint(id, 10) + "}"
}
func (k keyspace) statusUsers(id uint64) string { return k.status(id) + ":u" }
func (k keyspace) statusIndex() string          { return k.prefix + "{status}" }

func uidHash(uid string) uint64 { return xxhash.Sum64String(uid) }

// id8 is an id as a field suffix: 8 big-endian bytes, in a string.
func id8(id uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return string(b[:])
}

func parseID8(s string) (uint64, bool) {
	if len(s) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64([]byte(s)), true
}

// bstate is a user's state of one broadcast.
type bstate struct {
	loads  int // loads so far when neither acked nor parked
	acked  bool
	parked bool
	expire int64
}

func (b bstate) done() bool { return b.acked || b.parked }

func parseBState(v string) (bstate, bool) {
	state, exp, ok := strings.Cut(v, ":")
	if !ok {
		return bstate{}, false
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return bstate{}, false
	}
	b := bstate{expire: e}
	switch state {
	case "a":
		b.acked = true
	case "p":
		b.parked = true
	default:
		n, err := strconv.Atoi(state)
		if err != nil || n < 0 {
			return bstate{}, false
		}
		b.loads = n
	}
	return b, true
}

// userHash is one user's Redis hash, decoded.
type userHash struct {
	epoch   string
	entries []push.Message // ascending ID
	parked  map[uint64]bool
	curs    map[uint32]rcursor   // c<app>: broadcast cursors (redis_cursor.go)
	legacy  map[uint64]legacyRec // b<id8>: the previous version's broadcast records
}

// parseUserHash decodes HGETALL of a user hash; malformed fields are
// skipped (and counted in corrupt) rather than failing the user's Load.
func parseUserHash(m map[string]string) (h userHash, corrupt int) {
	for f, v := range m {
		if len(f) == 1 {
			if f == "e" {
				h.epoch = v
			}
			continue
		}
		if len(f) == 5 && f[0] == 'c' {
			if h.curs == nil {
				h.curs = map[uint32]rcursor{}
			}
			corrupt += addCursorField(h.curs, nil, f, v)
			continue
		}
		id, ok := parseID8(f[1:])
		if !ok {
			corrupt++
			continue
		}
		switch f[0] {
		case 'm':
			msg, err := decodeValueOwned(id, []byte(v))
			if err != nil {
				corrupt++
				continue
			}
			h.entries = append(h.entries, msg)
		case 'p':
			if h.parked == nil {
				h.parked = map[uint64]bool{}
			}
			h.parked[id] = true
		case 'b':
			if h.legacy == nil {
				h.legacy = map[uint64]legacyRec{}
			}
			corrupt += addCursorField(nil, h.legacy, f, v)
		}
	}
	sortByID(h.entries)
	return h, corrupt
}

// decodeValueOwned is decodeValue for bytes the caller gives away: the
// payload aliases v.
func decodeValueOwned(id uint64, v []byte) (push.Message, error) {
	app, expire, err := decodeHeader(v)
	if err != nil {
		return push.Message{}, err
	}
	msg := push.Message{ID: id, App: app, Expire: expire, QoS: v[offQoS]}
	if len(v) > headerLen {
		msg.Payload = v[offPayload:len(v):len(v)]
	}
	return msg, nil
}

// replyList reads a script reply: a flat array of integers and strings.
func replyList(res any) ([]any, error) {
	l, ok := res.([]any)
	if !ok {
		return nil, fmt.Errorf("script reply %T: %w", res, ErrCorrupt)
	}
	return l, nil
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

// appField is the counter field of an app's pending entries.
func appField(app uint32) string { return "a" + strconv.FormatUint(uint64(app), 10) }

const fieldParked = "parked"

func parseApp(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}
