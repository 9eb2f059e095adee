// Package saver owns the storage of QoS 1 messages: store-then-send (center
// saves a message before it pushes it), delete on the client's ACK, drop at
// the message's TTL, and load a user's pending messages when it logs in or
// binds an app. Broadcast messages are stored once per app and delivered once
// to every user who logs in within their TTL.
//
// Store is the storage contract, with three implementations: Memory (tests
// and demos), Bolt (durable, embedded, one process) and RedisStore (Redis as
// the shared hot store, MySQL as the durable copy, for a cluster). Service
// wraps a Store with metrics, logging and the expiry sweeper.
//
// Every Store enforces the same per-user defences (Limits): a message that
// Load returned MaxLoads times without an ACK is parked (kept and counted,
// never delivered again), and an inbox holds at most InboxCap entries, the
// oldest being dropped first when a new one arrives.
//
// RedisStore recovers from a Redis that lost data (restart without
// persistence, FLUSHALL, failover to a lagging replica) lazily, per user: each
// user's Redis hash carries the epoch it was last filled from MySQL in; a
// global epoch changes when the saver sees Redis wiped or replaced, and a
// user whose hash does not carry the current epoch is reloaded from MySQL on
// its next Load (or Ack, UserStats). Logins spread the reload over time and
// nobody waits for a bulk copy of every inbox; broadcasts, which are few, are
// restored in bulk. docs/storage.md has the details and the reasons.
package saver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Errors of the saver; callers test them with errors.Is.
var (
	// ErrInvalid means an argument is malformed (empty or oversized uid, id 0, ...).
	ErrInvalid = errors.New("saver: invalid argument")
	// ErrCorrupt means stored bytes cannot be decoded.
	ErrCorrupt = errors.New("saver: corrupt record")
	// ErrClosed is push.ErrClosed: the store or service was closed.
	ErrClosed = push.ErrClosed
	// ErrLocked means the bolt file is locked by another process (another
	// lcpush on the same data directory) past BoltOptions.LockTimeout.
	ErrLocked = errors.New("saver: data dir in use")
)

const (
	// DefaultLoadLimit is the most messages one Load returns when limit is 0.
	DefaultLoadLimit = 1000
	// DefaultMaxLoads is Limits.MaxLoads when it is 0.
	DefaultMaxLoads = 5
	// DefaultInboxCap is Limits.InboxCap when it is 0.
	DefaultInboxCap = 1000
	// maxMaxLoads bounds Limits.MaxLoads: stores keep the count in a byte.
	maxMaxLoads = 250
)

// Limits are the per-user defences every Store enforces.
type Limits struct {
	// MaxLoads parks a message once Load has returned it this many times
	// to the same uid without an ACK: a parked unicast entry stays stored
	// (counted in StoreStats.Parked and UserStats) until it is ACKed,
	// expires or is pushed out by InboxCap, but Load never returns it
	// again; a parked broadcast is recorded as done for that uid, as if
	// ACKed. This is what stops a client that never ACKs from reloading
	// the same messages forever. 0 means DefaultMaxLoads, negative never
	// parks; at most 250.
	MaxLoads int
	// InboxCap bounds the unicast entries of one uid (all apps, parked and
	// expired-but-unswept included). A Save that takes an inbox past it
	// drops the inbox's oldest entries (lowest ids: possibly the new one
	// itself) and counts them in lcpush_saver_inbox_dropped_total: the
	// newest messages are the ones worth having, and refusing instead
	// would let one user who never reads fail every multicast that names
	// it. 0 means DefaultInboxCap, negative is unbounded.
	InboxCap int
}

// withDefaults resolves zero values; maxLoads 0 and inboxCap 0 then mean
// "never park" and "unbounded".
func (l Limits) withDefaults() Limits {
	switch {
	case l.MaxLoads == 0:
		l.MaxLoads = DefaultMaxLoads
	case l.MaxLoads < 0:
		l.MaxLoads = 0
	case l.MaxLoads > maxMaxLoads:
		l.MaxLoads = maxMaxLoads
	}
	switch {
	case l.InboxCap == 0:
		l.InboxCap = DefaultInboxCap
	case l.InboxCap < 0:
		l.InboxCap = 0
	}
	return l
}

// Store is the storage contract for QoS 1 messages. Every implementation is
// safe for concurrent use and passes the shared contract suite
// (store_contract_test.go). Methods are batch-shaped (many uids per Save, many
// ids per Ack) so a networked backend can pipeline them.
//
// Message ids are unique and time-ordered (pkg/idgen); a message is
// identified by its id alone, so saving the same id again overwrites it.
// Expire is unix seconds, 0 meaning "never"; a message is expired at now when
// now >= Expire (push.Message.Expired). Payloads returned by Load may be
// shared with the store and with other callers: they must not be modified.
type Store interface {
	// Save stores msg (QoS 1, msg.Broadcast false) in the inbox of every
	// uid. When it returns nil the message is as durable as the
	// implementation gets (Bolt: fsynced; RedisStore: in Redis and
	// committed to MySQL, or queued for MySQL while MySQL is down) for
	// every uid. Idempotent per (uid, msg.ID): saving again overwrites
	// (keeping the entry's load count) and is not counted twice. An inbox
	// taken past Limits.InboxCap loses its oldest entries. A failed Save
	// may have stored the message for some uids; the caller retries the
	// whole call. An error wrapping push.ErrUnavailable means the store
	// cannot take writes now (RedisStore: Redis down, or MySQL down long
	// enough to fill the durable queue).
	Save(ctx context.Context, msg push.Message, uids []string) error
	// SaveBroadcast stores a broadcast message once for msg.App; every uid
	// that loads msg.App before the message expires gets it until it ACKs
	// it, including uids never seen before. Same durability and idempotency
	// as Save.
	SaveBroadcast(ctx context.Context, msg push.Message) error
	// Load returns the uid's unexpired, unACKed messages of the given apps
	// (none when apps is empty), unicast and broadcast merged, in ascending
	// ID order, at most limit of them (0 = DefaultLoadLimit): the oldest
	// first, so a user with a backlog gets it in order over several loads.
	// Broadcast messages carry Broadcast true. Loading does not consume:
	// the same messages come back until they are ACKed or expire, or
	// until they were returned Limits.MaxLoads times and are parked. Each
	// message returned counts one load (messages cut by limit do not).
	Load(ctx context.Context, uid string, apps []uint32, limit int) ([]push.Message, error)
	// Ack deletes the uid's unicast messages with these ids whose app is
	// one of apps (parked ones too); for a broadcast id of one of apps it
	// records that this uid has it, so it is never loaded again for this
	// uid. apps are the apps the caller acts for (the room: those the
	// connection authenticated): apps are tenants, so an id of a message
	// of another app, even the same uid's, is treated exactly like an
	// unknown id. Unknown ids are ignored (not counted) and repeating an
	// Ack is harmless; empty apps does nothing. It returns how many ids
	// took effect (deleted or newly recorded as ACKed). An Ack that takes
	// no effect costs no durable write (Bolt: no write transaction, no
	// fsync; RedisStore: no MySQL row, except for a user Redis lost while
	// MySQL is down: see RedisStore.Ack), so a flood of junk ids is cheap.
	// Bolt and Memory are durable on return; RedisStore deletes from Redis
	// at once and from MySQL in the next batch (a crash in between can
	// only bring a message back, never lose one: clients dedup by id);
	// its broadcast ACKs reach MySQL only at Checkpoint.
	Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error)
	// AckMany applies many ACKs in one call, exactly as calling Ack for
	// each entry in order would (same tenancy rule, same effects, a uid
	// may appear in several entries), and returns the total count that
	// took effect. It is the group commit of ACKs: Bolt does one read
	// pass and one write transaction (one fsync, shared with concurrent
	// writers) for the whole slice, RedisStore sends the entries through
	// its shared pipelines and the MySQL deletes through its batched
	// queue, Memory takes its lock once. Durability on return is Ack's;
	// an AckMany that takes no effect costs no durable write either. A
	// call past push.MaxAckEntries entries, push.MaxAckIDs ids or
	// push.MaxAckApps apps in an entry, or with a malformed uid, is
	// refused whole (ErrInvalid; the bounds also push.ErrAckBatch) with
	// nothing applied. A failed call may have applied some entries; the
	// caller retries the whole call (ACKs are idempotent).
	AckMany(ctx context.Context, acks []push.AckReq) (int, error)
	// Checkpoint makes the broadcast cursors of ended sessions durable:
	// for each end, the cursors of (UID, each of Apps). The room calls it,
	// batched, when sessions end. RedisStore keeps a broadcast ACK in
	// Redis only and queues the MySQL rows here, one per (uid, app) that
	// has a cursor, whatever the number of broadcasts ACKed (it does not
	// wait for the commit); Memory and Bolt, durable at Ack, only check
	// the arguments. Unknown uids and apps are harmless; repeating a
	// Checkpoint is too.
	Checkpoint(ctx context.Context, ends []push.SessionEnd) error
	// Expire drops every unicast entry and broadcast expired at now, with
	// the broadcasts' ACK records, and returns how many entries and
	// broadcasts it dropped. Load already hides expired messages; Expire
	// reclaims their space.
	Expire(ctx context.Context, now time.Time) (int, error)
	// Stats describes what the store holds (expired but not yet swept
	// entries included; Parked is part of Pending and counts unicast
	// entries only) and, since it was opened, what it did. It is cheap:
	// no scan.
	Stats(ctx context.Context) (push.StoreStats, error)
	// UserStats describes uid's inbox for one app: pending counts every
	// unicast entry of app stored for uid (parked and expired-but-unswept
	// ones included, as in StoreStats.Pending), parked the part of them
	// Load no longer returns. App 0 counts every app (operators only: an
	// app's caller must never see another app's counts). An unknown uid
	// has none. It reads one inbox, no more.
	UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error)

	// Delivery status (status.go, docs/storage.md "Delivery status").
	// A message has a status record only if OpenStatus was called for it;
	// the other methods count nothing for a message without one, which
	// keeps working exactly as before. Records and their per-uid states
	// live until the message's Expires plus StatusGrace, then Expire drops
	// them (RedisStore: the keys' TTL too).

	// OpenStatus creates the status record of a message the center accepted
	// and does not Save (QoS 0 pushes, broadcasts; Save opens the record of
	// a unicast or multicast it stores by itself, in the same write: kind
	// unicast for one uid, multicast for more, targets the uids, when the
	// message has an expiry): st gives MsgID, App, Kind, Created, Expires (required: > 0)
	// and Targets (0: len(uids)); its counts are ignored. uids, the
	// unicast or multicast recipients (bounded by the caller's multicast
	// limit), start in state unknown; they bound the per-uid states: a uid
	// not given here is never counted. Idempotent: a record that exists is
	// left as it is.
	OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error
	// AddSent records writes to sockets, batched by the caller: Sent += n
	// per delta, and a delta with a UID moves that uid's state to sent
	// unless it is acked, expired or parked already. Deltas of unknown
	// messages, or whose App is not the message's, are ignored.
	AddSent(ctx context.Context, deltas []push.StatusDelta) error
	// Status returns the message's record; false when there is none, when
	// it is past Expires plus StatusGrace, or when it is another app's
	// (apps are tenants: indistinguishable from unknown). App 0 reads any
	// app's record (operators only: an app's caller must never pass 0). The other
	// operations keep its counts in the same transaction (Memory, Bolt)
	// or pipeline (RedisStore): Save counts Stored once per uid newly
	// stored (state stored, or still sent), SaveBroadcast sets Stored 1,
	// Ack counts Acked once per uid (unicast: the uid's entry was deleted
	// and its state was stored, sent or parked; broadcast: once per uid
	// whose ACK was newly recorded), a Load that parks counts Parked once
	// per uid, and Expire counts Expired once per unicast entry it drops
	// unACKed (broadcast: sets Expired 1).
	Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error)
	// UserState returns uid's state of the message (a push.State
	// constant): unicast and multicast, the state recorded for the uid
	// (unknown when not a recipient); broadcast, acked if the uid ACKed
	// it, parked if it was parked for the uid, expired after Expires,
	// else stored. StateUnknown for a message Status does not find (app 0
	// as in Status).
	UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error)

	// Send queue journal (squeue.go, docs/storage.md "Send queue
	// journal"): the pushes waiting in a center's in-memory send queue,
	// so that another center (or the same one after a restart) re-queues
	// them. Owners are member ids: 1..128 bytes.

	// Enqueue journals q (durable as Save is). Idempotent per q.Msg.ID: a
	// second Enqueue overwrites (UIDs, Owner, At).
	Enqueue(ctx context.Context, q push.QueuedPush) error
	// Dequeue forgets the queued pushes with these ids (released, expired or
	// dropped); unknown ids are ignored.
	Dequeue(ctx context.Context, ids []uint64) error
	// Queued lists owner's queued pushes in id order, at most limit (0 means
	// 100,000), without those whose Msg.Expire is past (Expire 0 never
	// expires); expired ones are forgotten.
	Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error)
	// QueueOwners lists the owners that have queued pushes.
	QueueOwners(ctx context.Context) ([]string, error)
	// Claim moves every queued push of from to owner to, atomically per push
	// (two concurrent Claims of the same from never both get a push), and
	// returns how many it moved.
	Claim(ctx context.Context, from, to string) (int, error)

	// Broadcast jobs (jobs.go): Expire also drops the jobs whose Keep is past.
	JobBoard

	// Close releases the store; later calls fail with ErrClosed. Idempotent.
	Close() error
}

// checkUID applies the platform's one uid rule (push.CheckUID: 1..push.MaxUIDLen
// bytes of UTF-8 without control characters, so no NUL, the separator of
// inbox keys). The error wraps both ErrInvalid and push.ErrBadUID.
func checkUID(uid string) error {
	if err := push.CheckUID(uid); err != nil {
		return fmt.Errorf("uid %q: %w: %w", truncate(uid), ErrInvalid, err)
	}
	return nil
}

// checkMessage validates a message before it is stored. Save refuses
// broadcast messages (they would be stored per user); SaveBroadcast accepts
// either flag and stores the message as a broadcast.
func checkMessage(msg *push.Message, broadcast bool) error {
	switch {
	case msg.ID == 0:
		return fmt.Errorf("message id 0: %w", ErrInvalid)
	case msg.Expire < 0:
		return fmt.Errorf("message %d expire %d: %w", msg.ID, msg.Expire, ErrInvalid)
	case msg.Broadcast && !broadcast:
		return fmt.Errorf("message %d is a broadcast: %w", msg.ID, ErrInvalid)
	}
	return nil
}

// checkAcks validates an AckMany call: its bounds and every uid.
func checkAcks(acks []push.AckReq) error {
	if err := push.CheckAckBatch(acks); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for i := range acks {
		if err := checkUID(acks[i].UID); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

func loadLimit(limit int) int {
	if limit <= 0 {
		return DefaultLoadLimit
	}
	return limit
}

func hasApp(apps []uint32, app uint32) bool {
	for _, a := range apps {
		if a == app {
			return true
		}
	}
	return false
}

// mergeByID merges two lists sorted by ascending ID into at most limit messages.
func mergeByID(a, b []push.Message, limit int) []push.Message {
	if len(b) == 0 {
		return a[:min(len(a), limit)]
	}
	out := make([]push.Message, 0, min(len(a)+len(b), limit))
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || (len(a) > 0 && a[0].ID < b[0].ID) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

func sortByID(msgs []push.Message) {
	slices.SortFunc(msgs, func(a, b push.Message) int { return cmpID(a, b.ID) })
}
