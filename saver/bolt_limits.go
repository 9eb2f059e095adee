package saver

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/push"
)

// The per-user defences of Bolt (Limits), in two buckets added by layout 2:
//
//	loads  uid 0x00 BE64(id) -> 1 byte: loads so far, or loadParked
//	ucount uid               -> BE32: the uid's inbox entries
//
// Layout 2 also kept a uid's state of a broadcast in backs (BE64(id) uid ->
// empty when ACKed, else one byte: loads so far, or loadParked); layout 3
// replaces it with cursors (below, bolt_migrate.go).

// loadParked marks a parked entry in loads (and a parked broadcast in a
// layout 2 backs record).
const loadParked = 0xff

func isParked(v []byte) bool { return len(v) == 1 && v[0] == loadParked }

// dropResult is what the inbox cap dropped in one Save.
type dropResult struct {
	n      int
	parked int
	apps   []uint32 // apps of the dropped entries that decoded
}

// countNew counts a new inbox entry of uid and, past the cap, drops the
// uid's oldest entries.
func (b *Bolt) countNew(tx *bolt.Tx, uid string, d *dropResult) error {
	uc := tx.Bucket(bucketCount)
	n := getCount(uc, uid) + 1
	if cap := b.lim.InboxCap; cap > 0 && n > cap {
		dropped, err := dropOldest(tx, uid, n-cap, d)
		if err != nil {
			return err
		}
		n -= dropped
	}
	return putCount(uc, uid, n)
}

// dropOldest deletes up to n of uid's oldest entries with their expiry and
// load records, and reports how many it deleted (the count record is the
// caller's).
func dropOldest(tx *bolt.Tx, uid string, n int, d *dropResult) (int, error) {
	inbox, exp, loads := tx.Bucket(bucketInbox), tx.Bucket(bucketExpiry), tx.Bucket(bucketLoads)
	prefix := inboxPrefix(nil, uid)
	var keys [][]byte
	c := inbox.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(keys) < n; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if app, expire, err := decodeHeader(inbox.Get(k)); err == nil {
			d.apps = append(d.apps, app)
			if expire != 0 {
				if err := exp.Delete(expiryKey(nil, expire, kindInbox, k)); err != nil {
					return 0, err
				}
			}
		}
		if err := inbox.Delete(k); err != nil {
			return 0, err
		}
		if isParked(loads.Get(k)) {
			d.parked++
		}
		if err := loads.Delete(k); err != nil {
			return 0, err
		}
	}
	d.n += len(keys)
	return len(keys), nil
}

// forgetEntry drops the load record and one count of an inbox entry that
// was just deleted, and reports 1 if the entry was parked.
func forgetEntry(tx *bolt.Tx, inboxKey []byte) (int, error) {
	if len(inboxKey) < 9 {
		return 0, nil
	}
	loads := tx.Bucket(bucketLoads)
	parked := 0
	if isParked(loads.Get(inboxKey)) {
		parked = 1
	}
	if err := loads.Delete(inboxKey); err != nil {
		return 0, err
	}
	uc := tx.Bucket(bucketCount)
	uid := string(inboxKey[:len(inboxKey)-9])
	return parked, putCount(uc, uid, getCount(uc, uid)-1)
}

func getCount(uc *bolt.Bucket, uid string) int {
	if v := uc.Get([]byte(uid)); len(v) == 4 {
		return int(binary.BigEndian.Uint32(v))
	}
	return 0
}

func putCount(uc *bolt.Bucket, uid string, n int) error {
	if n <= 0 {
		return uc.Delete([]byte(uid))
	}
	return uc.Put([]byte(uid), binary.BigEndian.AppendUint32(nil, uint32(n)))
}

// countLoads records one more load of every message in msgs for uid,
// parking those that reach MaxLoads. Messages ACKed or expired meanwhile
// are skipped.
func (b *Bolt) countLoads(ctx context.Context, uid string, msgs []push.Message) error {
	max := b.lim.MaxLoads
	if max == 0 || len(msgs) == 0 {
		return nil
	}
	now := time.Now().Unix()
	var parkedU, parkedB int
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		parkedU, parkedB = 0, 0
		inbox, loads := tx.Bucket(bucketInbox), tx.Bucket(bucketLoads)
		tc := newTxCursors(tx, b.bx, uid, now)
		sx := newStatusTx(tx)
		for _, msg := range msgs {
			if msg.Broadcast {
				r, ok := b.bx.get(msg.ID)
				if !ok || r.expired(now) {
					continue
				}
				c := tc.get(r.app)
				if !c.wants(r.seq) {
					continue // ACKed or parked meanwhile
				}
				if c.load(r.seq, max) {
					parkedB++
					sx.count(msg.ID, func(st *push.MessageStatus) { st.Parked++ })
				}
				tc.dirty[r.app] = true
				continue
			}
			key := inboxKey(nil, uid, msg.ID)
			if inbox.Get(key) == nil {
				continue
			}
			v := loads.Get(key)
			if isParked(v) {
				continue
			}
			c := 1
			if len(v) == 1 {
				c = int(v[0]) + 1
			}
			if c >= max {
				c = loadParked
				parkedU++
				if err := sx.step(msg.ID, uid, onPark, fParked); err != nil {
					return err
				}
			}
			if err := loads.Put(key, []byte{byte(c)}); err != nil {
				return err
			}
		}
		if err := tc.flush(); err != nil {
			return err
		}
		return sx.flush()
	})
	if err != nil {
		return err
	}
	b.parked.Add(int64(parkedU))
	metricParkedUnicast.Add(float64(parkedU))
	metricParkedBroadcast.Add(float64(parkedB))
	return nil
}

// UserStats implements Store. Every app (app 0) reads the uid's count
// record and its load records; one app walks the uid's inbox range, reading
// each entry's header (no payload decoded), with its load record.
func (b *Bolt) UserStats(ctx context.Context, uid string, app uint32) (pending, parked int, err error) {
	if err := checkUID(uid); err != nil {
		return 0, 0, fmt.Errorf("saver user stats: %w", err)
	}
	if b.closed.Load() {
		return 0, 0, fmt.Errorf("saver user stats %s: %w", uid, ErrClosed)
	}
	err = b.db.View(func(tx *bolt.Tx) error {
		pending, parked = 0, 0
		prefix := inboxPrefix(nil, uid)
		if app != 0 {
			loads := tx.Bucket(bucketLoads)
			c := tx.Bucket(bucketInbox).Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				if len(k) != len(prefix)+8 {
					continue
				}
				if a, _, err := decodeHeader(v); err != nil || a != app {
					continue
				}
				pending++
				if isParked(loads.Get(k)) {
					parked++
				}
			}
			return nil
		}
		pending = getCount(tx.Bucket(bucketCount), uid)
		c := tx.Bucket(bucketLoads).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) == len(prefix)+8 && isParked(v) {
				parked++
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("saver user stats %s: %w", uid, closedErr(err))
	}
	return pending, parked, nil
}

// countParked counts the parked entries of a file, at open.
func countParked(tx *bolt.Tx) int64 {
	var n int64
	_ = tx.Bucket(bucketLoads).ForEach(func(k, v []byte) error {
		if isParked(v) {
			n++
		}
		return nil
	})
	return n
}

// migrateBolt1 turns a layout 1 file into layout 2: the buckets exist
// already; it fills the per-uid counts from the inbox. A layout 1 backs
// record (always empty) already means "ACKed" in layout 2.
func migrateBolt1(tx *bolt.Tx) error {
	counts := map[string]int{}
	err := tx.Bucket(bucketInbox).ForEach(func(k, _ []byte) error {
		if len(k) >= 9 {
			counts[string(k[:len(k)-9])]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	uc := tx.Bucket(bucketCount)
	for uid, n := range counts {
		if err := putCount(uc, uid, n); err != nil {
			return err
		}
	}
	return nil
}

// Broadcast cursors (bcursor.go) in Bolt, layout 3:
//
//	bseq  BE64(id)             -> BE64: the broadcast's seq, from the bucket's NextSequence
//	bcur  uid 0x00 BE32(app)   -> the uid's cursor of app (bcursor.appendTo)
//
// A cursor is normalized against the live broadcasts whenever it is read and
// written back only when an operation changed it; an idle uid keeps a few
// bytes until it next loads or ACKs. There is no sweep of cursors.
var (
	bucketBseq = []byte("bseq")
	bucketBcur = []byte("bcur")
)

func bcurKey(dst []byte, uid string, app uint32) []byte {
	return binary.BigEndian.AppendUint32(inboxPrefix(dst, uid), app)
}

// getCursor reads a cursor; a corrupt record reads as the zero cursor (the
// uid gets the live broadcasts again: clients dedup by id) and is
// overwritten by the next write.
func getCursor(bk *bolt.Bucket, key []byte) bcursor {
	c, err := decodeCursor(bk.Get(key))
	if err != nil {
		return bcursor{}
	}
	return c
}

// putCursor writes c, or deletes the record when c holds nothing.
func putCursor(bk *bolt.Bucket, key []byte, c *bcursor) error {
	if c.empty() {
		return bk.Delete(key)
	}
	return bk.Put(key, c.appendTo(nil))
}

// txCursors are the cursors one transaction touches, one uid, by app.
type txCursors struct {
	bk    *bolt.Bucket
	uid   string
	now   int64
	x     *bseqs
	curs  map[uint32]*bcursor
	live  map[uint32][]uint64
	dirty map[uint32]bool
}

func newTxCursors(tx *bolt.Tx, x *bseqs, uid string, now int64) *txCursors {
	return &txCursors{bk: tx.Bucket(bucketBcur), uid: uid, now: now, x: x,
		curs: map[uint32]*bcursor{}, live: map[uint32][]uint64{}, dirty: map[uint32]bool{}}
}

// get returns uid's normalized cursor of app.
func (t *txCursors) get(app uint32) *bcursor {
	if c := t.curs[app]; c != nil {
		return c
	}
	live := t.x.live(app, t.now)
	c := getCursor(t.bk, bcurKey(nil, t.uid, app))
	c.normalize(live)
	t.curs[app], t.live[app] = &c, live
	return &c
}

// flush writes back the cursors marked dirty, normalized.
func (t *txCursors) flush() error {
	for app := range t.dirty {
		c := t.curs[app]
		c.normalize(t.live[app])
		if err := putCursor(t.bk, bcurKey(nil, t.uid, app), c); err != nil {
			return err
		}
	}
	return nil
}
