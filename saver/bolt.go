package saver

import (
	"bytes"
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
	bx *bseqs  // their seqs, for the broadcast cursors (bcursor.go, bolt_limits.go)

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
	bucketBacks  = []byte("backs") // layout 2 only: gone after migrateBolt2
	bucketExpiry = []byte("expiry")
	bucketMeta   = []byte("meta")
	bucketLoads  = []byte("loads")
	bucketCount  = []byte("ucount")
	keyVersion   = []byte("version")
	fileVersion  = []byte{3}
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
		bx:      newBseqs(),
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
// and 2 files) and rebuilds the in-memory broadcast cache and counters from
// the file.
func (b *Bolt) init() error {
	var layout2 bool
	err := b.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketInbox, bucketBcast, bucketExpiry, bucketMeta, bucketLoads, bucketCount, bucketStatus, bucketSState, bucketQueue, bucketQueueID, bucketBseq, bucketBcur} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, fileVersion); err != nil {
				return err
			}
		case string(v) == "\x01":
			b.log.Info("saver: migrating file layout 1 to 2 (per-user counts)")
			if err := migrateBolt1(tx); err != nil {
				return err
			}
			if err := meta.Put(keyVersion, []byte{2}); err != nil {
				return err
			}
			layout2 = true
		case string(v) == "\x02":
			layout2 = true
		case string(v) != string(fileVersion):
			return fmt.Errorf("file layout version %v, want %v: %w", v, fileVersion, ErrCorrupt)
		}
		// Every broadcast has a seq; a layout 2 file gets them here, in id order.
		return assignSeqs(tx)
	})
	if err != nil {
		return err
	}
	if layout2 {
		if err := migrateBolt2(b.db, b.log, migrateChunk); err != nil {
			return fmt.Errorf("migrate layout 2 to 3: %w", err)
		}
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
		seqs := tx.Bucket(bucketBseq)
		return tx.Bucket(bucketBcast).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				corrupt++
				return nil
			}
			msg, err := decodeValue(binary.BigEndian.Uint64(k), v)
			seq := seqs.Get(k)
			if err != nil || len(seq) != 8 {
				corrupt++
				return nil
			}
			msg.Broadcast = true
			b.bc.put(msg)
			b.bx.put(bref{id: msg.ID, seq: beUint64(seq), app: msg.App, expire: msg.Expire})
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
	var seq uint64
	now := time.Now().Unix()
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		bc, exp := tx.Bucket(bucketBcast), tx.Bucket(bucketExpiry)
		// A re-save keeps its seq, and so every uid's state of it; one that
		// had expired takes a new seq: cursors may have stepped over the old.
		old := bc.Get(key)
		if _, oldExp, err := decodeHeader(old); old != nil && err == nil && oldExp != 0 && now >= oldExp {
			if err := tx.Bucket(bucketBseq).Delete(key); err != nil {
				return err
			}
		}
		var err error
		if seq, err = broadcastSeq(tx, key); err != nil {
			return err
		}
		if old != nil {
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
	b.bc.put(msg) // before bx: what bx lists has its message cached
	b.bx.put(bref{id: msg.ID, seq: seq, app: msg.App, expire: msg.Expire})
	return nil
}

// broadcastSeq returns the seq of the broadcast at key, giving it the next
// one when it has none.
func broadcastSeq(tx *bolt.Tx, key []byte) (uint64, error) {
	bk := tx.Bucket(bucketBseq)
	if v := bk.Get(key); len(v) == 8 {
		return beUint64(v), nil
	}
	seq, err := bk.NextSequence()
	if err != nil {
		return 0, err
	}
	return seq, bk.Put(key, binary.BigEndian.AppendUint64(nil, seq))
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
	n, err := b.ack(ctx, []push.AckReq{{UID: uid, Apps: apps, IDs: ids}})
	if err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	return n, nil
}

// AckMany implements Store: Ack's read pass and write transaction, once
// for the whole slice. The write joins a db.Batch rather than running its
// own db.Update: the loops of a room drain their ACK queues concurrently
// and centers Save meanwhile, and Batch lets all of them share one commit
// and one fsync (an Update would cost one fsync per call); the function
// is idempotent, as Batch requires (it may run twice).
func (b *Bolt) AckMany(ctx context.Context, acks []push.AckReq) (int, error) {
	if err := checkAcks(acks); err != nil {
		return 0, fmt.Errorf("saver ack many: %w", err)
	}
	n, err := b.ack(ctx, acks)
	if err != nil {
		return 0, fmt.Errorf("saver ack many (%d entries): %w", len(acks), err)
	}
	return n, nil
}

// ack applies acks (uids checked): entries in order, the cursors of a uid
// named twice shared between its entries, as sequential Acks would see
// them. It returns the total count.
func (b *Bolt) ack(ctx context.Context, acks []push.AckReq) (int, error) {
	if b.closed.Load() {
		return 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// The inbox key of every id, in one buffer; ends[i] is where entry
	// i's keys end in ks.
	size, count := 0, 0
	for i := range acks {
		if len(acks[i].Apps) == 0 {
			continue // Ack with no app does nothing
		}
		size += (len(acks[i].UID) + 9) * len(acks[i].IDs)
		count += len(acks[i].IDs)
	}
	if count == 0 {
		return 0, nil
	}
	buf := make([]byte, 0, size)
	ks := make([]ackKeys, 0, count)
	ends := make([]int, len(acks))
	for i := range acks {
		a := &acks[i]
		if len(a.Apps) > 0 {
			for _, id := range a.IDs {
				start := len(buf)
				buf = inboxKey(buf, a.UID, id)
				ks = append(ks, ackKeys{inbox: buf[start:], id: id})
			}
		}
		ends[i] = len(ks)
	}
	now := time.Now().Unix()
	// each runs f over every live entry's keys with the uid's cursors of
	// this transaction.
	each := func(tx *bolt.Tx, f func(bk *ackBuckets, a *push.AckReq, k *ackKeys) error) (*ackBuckets, error) {
		bk := &ackBuckets{tx: tx, x: b.bx, now: now, slab: make([]ackCursors, 0, len(acks))}
		lo := 0
		for i := range acks {
			hi := ends[i]
			if lo < hi {
				bk.use(acks[i].UID)
			}
			for j := lo; j < hi; j++ {
				if err := f(bk, &acks[i], &ks[j]); err != nil {
					return bk, err
				}
			}
			lo = hi
		}
		return bk, nil
	}
	live := 0
	err := b.db.View(func(tx *bolt.Tx) error {
		live = 0
		_, err := each(tx, func(bk *ackBuckets, a *push.AckReq, k *ackKeys) error {
			what, _ := bk.takes(k, a.Apps) // ACKs the cursor copies read here
			k.live = what != ackNone
			if k.live {
				live++
			}
			return nil
		})
		return err
	})
	if err != nil {
		return 0, closedErr(err)
	}
	if live == 0 {
		return 0, nil // nothing to change: no write transaction
	}
	var n, unparked int
	var deleted []uint32 // apps of deleted unicast entries
	err = b.batch(ctx, func(tx *bolt.Tx) error {
		n, unparked, deleted = 0, 0, deleted[:0]
		exp := tx.Bucket(bucketExpiry)
		sx := newStatusTx(tx)
		bk, err := each(tx, func(bk *ackBuckets, a *push.AckReq, k *ackKeys) error {
			if !k.live {
				return nil
			}
			switch what, v := bk.takes(k, a.Apps); what {
			case ackEntry:
				app, expire, herr := decodeHeader(v)
				if err := bk.inbox.Delete(k.inbox); err != nil {
					return err
				}
				p, err := forgetEntry(tx, k.inbox)
				if err != nil {
					return err
				}
				unparked += p
				n++
				if err := sx.step(inboxID(k.inbox), a.UID, onAck, fAcked); err != nil {
					return err
				}
				if herr != nil {
					return nil // corrupt: never counted as pending, no expiry record known
				}
				deleted = append(deleted, app)
				if expire != 0 {
					if err := exp.Delete(expiryKey(nil, expire, kindInbox, k.inbox)); err != nil {
						return err
					}
				}
			case ackBroadcast:
				n++
				sx.count(k.id, func(st *push.MessageStatus) { st.Acked++ })
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := bk.flush(); err != nil {
			return err
		}
		return sx.flush()
	})
	if err != nil {
		return 0, err
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

// ackKeys is one ACKed id and its inbox key; live: the read pass found that
// the ACK takes effect on it.
type ackKeys struct {
	inbox []byte
	id    uint64
	live  bool
}

// What an ACK does to one id.
const (
	ackNone      = iota // unknown, another app's, or a broadcast ACKed already or expired
	ackEntry            // deletes the uid's entry
	ackBroadcast        // records the broadcast as ACKed in the uid's cursor
)

// ackBuckets opens the buckets an ACK reads as it needs them: most ACKs
// find their entries in the inbox and never read a cursor. cur is the
// cursors of the uid of the entry at hand (use), first and curs those of
// every uid the transaction touched, ACKed in place.
type ackBuckets struct {
	tx    *bolt.Tx
	inbox *bolt.Bucket
	bcur  *bolt.Bucket // opened once per transaction, shared by every uid's cursors
	x     *bseqs
	now   int64
	cur   *ackCursors
	first *ackCursors            // the first uid's (most calls name one uid)
	curs  map[string]*ackCursors // the others', by uid
	slab  []ackCursors           // their storage, capacity for every entry: never grown
	// One bbolt cursor per bucket, reused for every lookup (a Get makes
	// a cursor, and grows its stack, each time).
	inboxC, bcurC *bolt.Cursor
}

// get returns the value of key in the bucket of *c (opened on first use
// from b), or nil.
func (a *ackBuckets) get(c **bolt.Cursor, b *bolt.Bucket, key []byte) []byte {
	if *c == nil {
		*c = b.Cursor()
	}
	k, v := (*c).Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

func (a *ackBuckets) bucket(b **bolt.Bucket, name []byte) *bolt.Bucket {
	if *b == nil {
		*b = a.tx.Bucket(name)
	}
	return *b
}

// use makes uid's cursors current, creating them on first use.
func (a *ackBuckets) use(uid string) {
	if a.cur != nil && a.cur.uid == uid {
		return
	}
	a.bucket(&a.inbox, bucketInbox)
	var c *ackCursors
	switch {
	case a.first == nil:
	case a.first.uid == uid:
		c = a.first
	default:
		c = a.curs[uid]
	}
	if c == nil {
		if len(a.slab) == cap(a.slab) { // not reached: one per entry at most
			a.slab = make([]ackCursors, 0, 1)
		}
		a.slab = append(a.slab, ackCursors{uid: uid})
		c = &a.slab[len(a.slab)-1]
		if a.first == nil {
			a.first = c
		} else {
			if a.curs == nil {
				a.curs = make(map[string]*ackCursors, cap(a.slab))
			}
			a.curs[uid] = c
		}
	}
	a.cur = c
}

// flush writes back every uid's cursors that an ACK changed. Their keys
// and values, which bbolt keeps until the commit, share one growing
// buffer (a slice taken from it stays valid when it grows).
func (a *ackBuckets) flush() error {
	if a.first == nil {
		return nil
	}
	var arena []byte
	if err := a.first.flush(a.bcur, &arena); err != nil {
		return err
	}
	for _, c := range a.curs {
		if err := c.flush(a.bcur, &arena); err != nil {
			return err
		}
	}
	return nil
}

// ackCursors are the broadcast cursors of one uid one ACK transaction
// reads, by app: a short list (a connection binds a few apps, an ACK
// usually names one app's broadcasts), no map.
type ackCursors struct {
	uid  string
	apps []ackCursor
	one  [1]ackCursor // apps' storage for the first app
}

type ackCursor struct {
	app   uint32
	dirty bool
	live  []uint64 // the app's live seqs, as normalize takes them
	c     bcursor
}

// get returns uid's normalized cursor of app, read on first use.
func (u *ackCursors) get(a *ackBuckets, app uint32) *ackCursor {
	for i := range u.apps {
		if u.apps[i].app == app {
			return &u.apps[i]
		}
	}
	if u.apps == nil {
		u.apps = u.one[:0]
	}
	bk := a.bucket(&a.bcur, bucketBcur)
	var key [push.MaxUIDLen + 5]byte // bcurKey: uid, NUL, app
	c := ackCursor{app: app, live: a.x.live(app, a.now)}
	cur, err := decodeCursor(a.get(&a.bcurC, bk, bcurKey(key[:0], u.uid, app)))
	if err == nil { // a corrupt record reads as the zero cursor, as getCursor has it
		c.c = cur
	}
	c.c.normalize(c.live)
	u.apps = append(u.apps, c)
	return &u.apps[len(u.apps)-1]
}

// flush writes back the cursors an ACK changed, normalized (putCursor's
// write, its bytes appended to *arena).
func (u *ackCursors) flush(bk *bolt.Bucket, arena *[]byte) error {
	for i := range u.apps {
		c := &u.apps[i]
		if !c.dirty {
			continue
		}
		c.c.normalize(c.live)
		start := len(*arena)
		*arena = bcurKey(*arena, u.uid, c.app)
		key := (*arena)[start:len(*arena):len(*arena)]
		if c.c.empty() {
			if err := bk.Delete(key); err != nil {
				return err
			}
			continue
		}
		start = len(*arena)
		*arena = c.c.appendTo(*arena)
		if err := bk.Put(key, (*arena)[start:len(*arena):len(*arena)]); err != nil {
			return err
		}
	}
	return nil
}

// takes reports what ACKing k for apps does, in either transaction, and
// the inbox entry's value for ackEntry.
func (a *ackBuckets) takes(k *ackKeys, apps []uint32) (int, []byte) {
	if v := a.get(&a.inboxC, a.bucket(&a.inbox, bucketInbox), k.inbox); v != nil {
		if app, _, err := decodeHeader(v); err != nil || hasApp(apps, app) {
			return ackEntry, v
		}
		return ackNone, nil // another app's entry: as if unknown
	}
	// An expired broadcast is never delivered again: its ACK is as unknown.
	r, ok := a.x.get(k.id)
	if !ok || !hasApp(apps, r.app) || r.expired(a.now) {
		return ackNone, nil
	}
	c := a.cur.get(a, r.app)
	if !c.c.ack(r.seq) {
		return ackNone, nil // ACKed already (or another id of this Ack did)
	}
	c.dirty = true
	return ackBroadcast, nil
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
