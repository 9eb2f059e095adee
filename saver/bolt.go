package saver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lcpush/lcpush/pkg/push"
)

// Bolt is the durable embedded Store, one bbolt file (layout in codec.go).
// Load counts and parking (Limits) are durable too: a Load that returns
// messages commits their new counts through the same batching as Save.
// Save and Ack go through db.Batch, so concurrent callers share one commit
// and one fsync; nothing returns before its commit is on disk. Live
// broadcasts (few) are also cached in memory, and the pending counters are
// recomputed from the file at open, so Stats never touches the disk.
// A context is checked before a write joins a batch; a commit already under
// way is not abandoned, so a write that returns an error after its context
// ended may still have been stored (retrying is safe: writes are idempotent).
type Bolt struct {
	db  *bolt.DB
	log *slog.Logger
	lim Limits

	closed atomic.Bool

	// bmu serializes the operations that change broadcasts (SaveBroadcast,
	// Expire) across their commit and cache update, so the cache always
	// matches the file. They are rare; Save, Ack and Load never take it.
	bmu sync.Mutex

	bc *bcache // live broadcasts

	mu      sync.RWMutex // guards pending
	pending map[uint32]int64

	saved, acked, expired atomic.Uint64
	parked                atomic.Int64

	chunk int // deletions per Expire transaction (expireChunk; tests lower it)
}

var _ Store = (*Bolt)(nil)

// BoltOptions tune OpenBoltWith; zero values take the defaults.
type BoltOptions struct {
	// BatchDelay is how long a write waits for others to share its commit
	// (bbolt MaxBatchDelay). Default 2ms: about one fsync here.
	BatchDelay time.Duration
	// BatchSize commits a batch early once it holds this many writes. Default 1000.
	BatchSize int
	// LockTimeout bounds the wait for the file lock held by another process. Default 1s.
	LockTimeout time.Duration
	// Logger receives open-time reports (records skipped as corrupt); nil discards.
	Logger *slog.Logger
	// Limits are the per-user defences (parking, inbox cap).
	Limits Limits
}

var (
	bucketInbox  = []byte("inbox")
	bucketBcast  = []byte("bcast")
	bucketBacks  = []byte("backs")
	bucketExpiry = []byte("expiry")
	bucketMeta   = []byte("meta")
	bucketLoads  = []byte("loads")
	bucketCount  = []byte("ucount")
	keyVersion   = []byte("version")
	fileVersion  = []byte{2}
	empty        = []byte{}
)

// OpenBolt opens (creating if needed) the store at path with default options.
func OpenBolt(path string) (*Bolt, error) { return OpenBoltWith(path, BoltOptions{}) }

// OpenBoltWith opens (creating if needed) the store at path.
func OpenBoltWith(path string, o BoltOptions) (*Bolt, error) {
	if o.BatchDelay <= 0 {
		o.BatchDelay = 2 * time.Millisecond
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: o.LockTimeout,
		// The hashmap freelist and an unsynced freelist (rebuilt at open)
		// keep commits cheap on a large file; data pages are still fsynced.
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &lockedError{path: path, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("saver open %s: %w", path, err)
	}
	db.MaxBatchDelay = o.BatchDelay
	db.MaxBatchSize = o.BatchSize
	b := &Bolt{
		db:      db,
		log:     o.Logger,
		lim:     o.Limits.withDefaults(),
		bc:      newBcache(),
		pending: make(map[uint32]int64),
		chunk:   expireChunk,
	}
	if err := b.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("saver open %s: %w", path, err)
	}
	return b, nil
}

// lockedError is OpenBoltWith's error when another process holds the file
// lock: it names the data directory and what to do, and matches ErrLocked
// and bolt's ErrTimeout.
type lockedError struct {
	path string
	err  error
}

func (e *lockedError) Error() string {
	return fmt.Sprintf("saver: data dir %s is in use by another lcpush process (bolt lock on %s): stop it or use another -data directory",
		filepath.Dir(e.path), filepath.Base(e.path))
}

func (e *lockedError) Unwrap() []error { return []error{ErrLocked, e.err} }

// init creates the buckets, checks the layout version (migrating version 1
// files) and rebuilds the in-memory broadcast cache and counters from the file.
func (b *Bolt) init() error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketInbox, bucketBcast, bucketBacks, bucketExpiry, bucketMeta, bucketLoads, bucketCount, bucketStatus, bucketSState, bucketQueue, bucketQueueID} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			return meta.Put(keyVersion, fileVersion)
		case string(v) == "\x01":
			b.log.Info("saver: migrating file layout 1 to 2 (per-user counts)")
			if err := migrateBolt1(tx); err != nil {
				return err
			}
			return meta.Put(keyVersion, fileVersion)
		case string(v) != string(fileVersion):
			return fmt.Errorf("file layout version %v, want %v: %w", v, fileVersion, ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var corrupt int
	err = b.db.View(func(tx *bolt.Tx) error {
		b.parked.Store(countParked(tx))
		err := tx.Bucket(bucketInbox).ForEach(func(k, v []byte) error {
			app, _, err := decodeHeader(v)
			if err != nil {
				corrupt++
				return nil
			}
			b.pending[app]++
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketBcast).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				corrupt++
				return nil
			}
			msg, err := decodeValue(binary.BigEndian.Uint64(k), v)
			if err != nil {
				corrupt++
				return nil
			}
			msg.Broadcast = true
			b.bc.put(msg)
			return nil
		})
	})
	if corrupt > 0 {
		b.log.Warn("saver: corrupt records skipped", "count", corrupt)
	}
	return err
}

// batch runs fn in a shared write transaction (db.Batch): fn may run more
// than once and must reset whatever it reports on each run.
func (b *Bolt) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return closedErr(b.db.Batch(fn))
}

func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Save implements Store.
func (b *Bolt) Save(ctx context.Context, msg push.Message, uids []string) error {
	if err := checkMessage(&msg, false); err != nil {
		return fmt.Errorf("saver save: %w", err)
	}
	size := 0
	for _, uid := range uids {
		if err := checkUID(uid); err != nil {
			return fmt.Errorf("saver save %d: %w", msg.ID, err)
		}
		size += len(uid) + 9
	}
	if len(uids) == 0 {
		return nil
	}
	val := appendValue(nil, &msg)
	// Keys and values handed to Put must stay valid until the commit: build
	// them all in one buffer up front.
	keys := make([][]byte, len(uids))
	expKeys := make([][]byte, len(uids))
	buf := make([]byte, 0, size+cond(msg.Expire != 0, size+9*len(uids), 0))
	for i, uid := range uids {
		buf = inboxKey(buf, uid, msg.ID)
		keys[i] = buf[len(buf)-len(uid)-9:]
	}
	if msg.Expire != 0 {
		for i, k := range keys {
			start := len(buf)
			buf = expiryKey(buf, msg.Expire, kindInbox, k)
			expKeys[i] = buf[start:]
		}
	}
	var added int
	var replaced []uint32 // apps of overwritten entries
	var dropped dropResult
	var open *openOp // the delivery status record, in the same commit
	if st, su, ok := impliedStatus(&msg, uids); ok {
		open = prepareOpen(st, su)
	}
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		added, replaced, dropped = 0, replaced[:0], dropResult{apps: dropped.apps[:0]}
		if open != nil {
			if err := open.apply(tx); err != nil {
				return err
			}
		}
		inbox, exp := tx.Bucket(bucketInbox), tx.Bucket(bucketExpiry)
		sx := newStatusTx(tx)
		for i, k := range keys {
			if err := sx.step(msg.ID, uids[i], onStore, fStored); err != nil {
				return err
			}
			isNew := false
			if old := inbox.Get(k); old == nil {
				added++
				isNew = true
			} else if app, oldExp, err := decodeHeader(old); err != nil {
				added++ // a corrupt entry was not counted as pending
			} else {
				replaced = append(replaced, app)
				if oldExp != 0 && oldExp != msg.Expire {
					if err := exp.Delete(expiryKey(nil, oldExp, kindInbox, k)); err != nil {
						return err
					}
				}
			}
			if err := inbox.Put(k, val); err != nil {
				return err
			}
			if msg.Expire != 0 {
				if err := exp.Put(expKeys[i], empty); err != nil {
					return err
				}
			}
			if isNew { // after the Put: the new entry may be the oldest
				if err := b.countNew(tx, uids[i], &dropped); err != nil {
					return err
				}
			}
		}
		return sx.flush()
	})
	if err != nil {
		return fmt.Errorf("saver save %d: %w", msg.ID, err)
	}
	b.mu.Lock()
	b.pending[msg.App] += int64(len(uids))
	for _, app := range replaced {
		b.uncount(app)
	}
	for _, app := range dropped.apps {
		b.uncount(app)
	}
	b.mu.Unlock()
	b.saved.Add(uint64(added))
	b.parked.Add(-int64(dropped.parked))
	metricInboxDropped.Add(float64(dropped.n))
	return nil
}

// uncount drops one pending entry of app; b.mu is held.
func (b *Bolt) uncount(app uint32) {
	if b.pending[app]--; b.pending[app] <= 0 {
		delete(b.pending, app)
	}
}

func cond[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// SaveBroadcast implements Store.
func (b *Bolt) SaveBroadcast(ctx context.Context, msg push.Message) error {
	if err := checkMessage(&msg, true); err != nil {
		return fmt.Errorf("saver save broadcast: %w", err)
	}
	msg.Broadcast = true
	msg.Payload = slices.Clone(msg.Payload) // the cache keeps it
	key := idKey(nil, msg.ID)
	val := appendValue(nil, &msg)
	expKey := expiryKey(nil, msg.Expire, kindBcast, key)
	b.bmu.Lock()
	defer b.bmu.Unlock()
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		bc, exp := tx.Bucket(bucketBcast), tx.Bucket(bucketExpiry)
		if old := bc.Get(key); old != nil {
			if _, oldExp, err := decodeHeader(old); err == nil && oldExp != 0 && oldExp != msg.Expire {
				if err := exp.Delete(expiryKey(nil, oldExp, kindBcast, key)); err != nil {
					return err
				}
			}
		}
		if err := bc.Put(key, val); err != nil {
			return err
		}
		sx := newStatusTx(tx)
		if r := sx.get(msg.ID); r != nil && r.st.Kind == push.KindBroadcast && r.st.Stored != 1 {
			sx.count(msg.ID, func(st *push.MessageStatus) { st.Stored = 1 })
			if err := sx.flush(); err != nil {
				return err
			}
		}
		if msg.Expire != 0 {
			return exp.Put(expKey, empty)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saver save broadcast %d: %w", msg.ID, err)
	}
	b.bc.put(msg)
	return nil
}

// Ack implements Store. A read transaction first finds the ids that will
// take effect (an entry of one of apps, a broadcast of one of apps not yet
// ACKed by uid); only when there is one does the ACK join a write batch,
// which checks those ids again. An ACK of unknown or other apps' ids thus
// costs no write transaction and no fsync. A corrupt entry (its app
// unreadable, never delivered) is deleted by any ACK naming it.
func (b *Bolt) Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	if err := checkUID(uid); err != nil {
		return 0, fmt.Errorf("saver ack: %w", err)
	}
	if len(apps) == 0 || len(ids) == 0 {
		return 0, nil
	}
	if b.closed.Load() {
		return 0, fmt.Errorf("saver ack %s: %w", uid, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	// inbox key, broadcast key and ACK-record key of every id, in one buffer.
	per := 2*len(uid) + 17
	buf := make([]byte, 0, per*len(ids))
	ks := make([]ackKeys, len(ids))
	for i, id := range ids {
		start := len(buf)
		buf = inboxKey(buf, uid, id)
		mid := len(buf)
		buf = backsKey(buf, id, uid)
		ks[i] = ackKeys{inbox: buf[start:mid], bcast: buf[mid : mid+8], back: buf[mid:]}
	}
	live := 0
	err := b.db.View(func(tx *bolt.Tx) error {
		live = 0
		bk := ackBuckets{tx: tx}
		for i := range ks {
			k := &ks[i]
			what, _ := bk.takes(k, apps)
			k.live = what != ackNone
			if k.live {
				live++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, closedErr(err))
	}
	if live == 0 {
		return 0, nil // nothing to change: no write transaction
	}
	var n, unparked int
	var deleted []uint32 // apps of deleted unicast entries
	err = b.batch(ctx, func(tx *bolt.Tx) error {
		n, unparked, deleted = 0, 0, deleted[:0]
		bk := ackBuckets{tx: tx}
		inbox, exp := bk.bucket(&bk.inbox, bucketInbox), tx.Bucket(bucketExpiry)
		sx := newStatusTx(tx)
		for i := range ks {
			k := &ks[i]
			if !k.live {
				continue
			}
			switch what, v := bk.takes(k, apps); what {
			case ackEntry:
				app, expire, herr := decodeHeader(v)
				if err := inbox.Delete(k.inbox); err != nil {
					return err
				}
				p, err := forgetEntry(tx, k.inbox)
				if err != nil {
					return err
				}
				unparked += p
				n++
				if err := sx.step(inboxID(k.inbox), uid, onAck, fAcked); err != nil {
					return err
				}
				if herr != nil {
					continue // corrupt: never counted as pending, no expiry record known
				}
				deleted = append(deleted, app)
				if expire != 0 {
					if err := exp.Delete(expiryKey(nil, expire, kindInbox, k.inbox)); err != nil {
						return err
					}
				}
			case ackBroadcast:
				if err := bk.backs.Put(k.back, empty); err != nil {
					return err
				}
				n++
				sx.count(beUint64(k.bcast), func(st *push.MessageStatus) { st.Acked++ })
			}
		}
		return sx.flush()
	})
	if err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	if len(deleted) > 0 {
		b.mu.Lock()
		for _, app := range deleted {
			b.uncount(app)
		}
		b.mu.Unlock()
		b.acked.Add(uint64(len(deleted)))
	}
	b.parked.Add(-int64(unparked))
	return n, nil
}

// ackKeys are the keys one ACKed id may touch; live: the read pass found
// that the ACK takes effect on it.
type ackKeys struct {
	inbox, bcast, back []byte
	live               bool
}

// What an ACK does to one id.
const (
	ackNone      = iota // unknown, another app's, or a broadcast ACKed already
	ackEntry            // deletes the uid's entry
	ackBroadcast        // records the broadcast as ACKed by the uid
)

// ackBuckets opens the buckets an ACK reads as it needs them: most ACKs
// find their entries in the inbox and never read the broadcasts.
type ackBuckets struct {
	tx               *bolt.Tx
	inbox, bc, backs *bolt.Bucket
}

func (a *ackBuckets) bucket(b **bolt.Bucket, name []byte) *bolt.Bucket {
	if *b == nil {
		*b = a.tx.Bucket(name)
	}
	return *b
}

// takes reports what ACKing k for apps does, in either transaction, and
// the inbox entry's value for ackEntry.
func (a *ackBuckets) takes(k *ackKeys, apps []uint32) (int, []byte) {
	if v := a.bucket(&a.inbox, bucketInbox).Get(k.inbox); v != nil {
		if app, _, err := decodeHeader(v); err != nil || hasApp(apps, app) {
			return ackEntry, v
		}
		return ackNone, nil // another app's entry: as if unknown
	}
	v := a.bucket(&a.bc, bucketBcast).Get(k.bcast)
	if v == nil {
		return ackNone, nil
	}
	if app, _, err := decodeHeader(v); err != nil || !hasApp(apps, app) {
		return ackNone, nil
	}
	// No record, a load count or parked: not ACKed yet.
	if r := a.bucket(&a.backs, bucketBacks).Get(k.back); r == nil || len(r) > 0 {
		return ackBroadcast, nil
	}
	return ackNone, nil
}

// Stats implements Store.
func (b *Bolt) Stats(ctx context.Context) (push.StoreStats, error) {
	if b.closed.Load() {
		return push.StoreStats{}, fmt.Errorf("saver stats: %w", ErrClosed)
	}
	b.mu.RLock()
	st := push.StoreStats{PendingPerApp: maps.Clone(b.pending), Broadcasts: int64(b.bc.len())}
	b.mu.RUnlock()
	for _, n := range st.PendingPerApp {
		st.Pending += n
	}
	st.Saved, st.Acked, st.Expired = b.saved.Load(), b.acked.Load(), b.expired.Load()
	st.Parked = b.parked.Load()
	return st, nil
}

// Close implements Store. It waits for running transactions.
func (b *Bolt) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("saver close: %w", err)
	}
	return nil
}
