package saver

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Load implements Store. Unicast entries come from one cursor range over the
// uid's inbox (already in ID order); broadcasts come from the cache, minus
// the ones this uid has ACKed or parked, which its broadcast cursors (one
// record per app) say in the same read transaction. When it returns
// messages, a second (batched) write transaction counts their loads.
func (b *Bolt) Load(ctx context.Context, uid string, apps []uint32, limit int) ([]push.Message, error) {
	if err := checkUID(uid); err != nil {
		return nil, fmt.Errorf("saver load: %w", err)
	}
	if b.closed.Load() {
		return nil, fmt.Errorf("saver load %s: %w", uid, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saver load %s: %w", uid, err)
	}
	if len(apps) == 0 {
		return nil, nil
	}
	limit = loadLimit(limit)
	now := time.Now().Unix()

	bc := b.bc.live(apps, now)

	var uni []push.Message
	err := b.db.View(func(tx *bolt.Tx) error {
		uni = uni[:0]
		prefix := inboxPrefix(nil, uid)
		loads := tx.Bucket(bucketLoads)
		c := tx.Bucket(bucketInbox).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(uni) < limit; k, v = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			app, expire, err := decodeHeader(v)
			if err != nil || !hasApp(apps, app) || (expire != 0 && now >= expire) || isParked(loads.Get(k)) {
				continue
			}
			msg, err := decodeValue(inboxID(k), v)
			if err != nil {
				continue
			}
			uni = append(uni, msg)
		}
		if len(bc) == 0 {
			return nil
		}
		tc := newTxCursors(tx, b.bx, uid, now)
		kept := bc[:0]
		for _, msg := range bc {
			// Not in bx yet (a SaveBroadcast between the two reads): not
			// visible yet either.
			if r, ok := b.bx.get(msg.ID); ok && tc.get(r.app).wants(r.seq) {
				kept = append(kept, msg)
			}
		}
		bc = kept
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saver load %s: %w", uid, closedErr(err))
	}
	out := mergeByID(uni, bc, limit)
	if err := b.countLoads(ctx, uid, out); err != nil {
		return nil, fmt.Errorf("saver load %s: %w", uid, err)
	}
	return out, nil
}

// dedupApps drops repeated apps so a broadcast is not listed twice.
func dedupApps(apps []uint32) []uint32 {
	for i := 1; i < len(apps); i++ {
		if hasApp(apps[:i], apps[i]) {
			out := make([]uint32, 0, len(apps))
			for _, a := range apps {
				if !hasApp(out, a) {
					out = append(out, a)
				}
			}
			return out
		}
	}
	return apps
}

// expireChunk bounds the records one Expire transaction deletes, so a large
// sweep neither holds the writer lock long nor builds a huge transaction.
const expireChunk = 5000

// Expire implements Store. It walks the expiry index from the oldest
// deadline, in transactions of at most expireChunk deletions, until the
// next deadline is after now.
func (b *Bolt) Expire(ctx context.Context, now time.Time) (int, error) {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	b.expireJobs(ctx, now) // logs its errors: the next sweep retries; jobs are no messages, not counted
	t := now.Unix()
	total := 0
	for {
		if b.closed.Load() {
			return total, fmt.Errorf("saver expire: %w", ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("saver expire: %w", err)
		}
		r, err := b.expireChunk(t, b.chunk)
		if err != nil {
			return total, fmt.Errorf("saver expire: %w", closedErr(err))
		}
		b.mu.Lock()
		for _, app := range r.apps {
			b.uncount(app)
		}
		b.mu.Unlock()
		b.bx.drop(r.bcasts...) // before bc: what bx lists has its message cached
		b.bc.drop(r.bcasts...)
		b.expired.Add(uint64(r.n))
		b.parked.Add(-int64(r.parked))
		total += r.n
		if !r.more {
			return total, nil
		}
	}
}

type expireResult struct {
	n      int      // unicast entries and broadcasts dropped
	parked int      // of the unicast entries, how many were parked
	apps   []uint32 // apps of the unicast entries dropped
	bcasts []uint64 // broadcasts dropped
	more   bool     // the budget ran out before the index did
}

// expireChunk runs one expiry transaction with a budget of deletions.
func (b *Bolt) expireChunk(t int64, budget int) (expireResult, error) {
	var r expireResult
	err := b.db.Update(func(tx *bolt.Tx) error {
		r = expireResult{}
		inbox, bc := tx.Bucket(bucketInbox), tx.Bucket(bucketBcast)
		seqs, exp := tx.Bucket(bucketBseq), tx.Bucket(bucketExpiry)
		sx := newStatusTx(tx)
		var done [][]byte // index records handled, deleted after the walk
		c := exp.Cursor()
	walk:
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < 9 {
				done = append(done, bytes.Clone(k))
				continue
			}
			if int64(beUint64(k)) > t {
				break
			}
			if budget <= 0 {
				r.more = true
				break
			}
			k = bytes.Clone(k)
			rest := k[9:]
			switch k[8] {
			case kindInbox:
				if v := inbox.Get(rest); v != nil {
					app, _, herr := decodeHeader(v)
					if err := inbox.Delete(rest); err != nil {
						return err
					}
					p, err := forgetEntry(tx, rest)
					if err != nil {
						return err
					}
					r.parked += p
					r.n++
					if len(rest) >= 9 {
						if err := sx.step(inboxID(rest), string(rest[:len(rest)-9]), onExpire, fExpired); err != nil {
							return err
						}
					}
					if herr == nil {
						r.apps = append(r.apps, app)
					}
				}
				budget--
			case kindBcast:
				// The uids' states of it are in their cursors, which drop
				// it when next normalized: nothing per uid to delete here.
				if len(rest) == 8 && bc.Get(rest) != nil {
					if err := bc.Delete(rest); err != nil {
						return err
					}
					if err := seqs.Delete(rest); err != nil {
						return err
					}
					r.n++
					r.bcasts = append(r.bcasts, beUint64(rest))
					sx.count(beUint64(rest), func(st *push.MessageStatus) { st.Expired = 1 })
				}
				budget--
			case kindStatus:
				// The record and its per-uid states; like a broadcast's ACK
				// records, the states may take several chunks.
				if len(rest) == 8 {
					if sx.recs != nil {
						delete(sx.recs, beUint64(rest)) // not written back
					}
					if err := tx.Bucket(bucketStatus).Delete(rest); err != nil {
						return err
					}
					budget--
					n, finished, err := deletePrefix(tx.Bucket(bucketSState), rest, budget)
					if err != nil {
						return err
					}
					budget -= n
					if !finished {
						r.more = true
						break walk
					}
				}
			}
			done = append(done, k)
		}
		for _, k := range done {
			if err := exp.Delete(k); err != nil {
				return err
			}
		}
		return sx.flush()
	})
	return r, err
}

// deletePrefix deletes up to budget keys starting with prefix and reports
// whether none is left.
func deletePrefix(bk *bolt.Bucket, prefix []byte, budget int) (int, bool, error) {
	var keys [][]byte
	c := bk.Cursor()
	k, _ := c.Seek(prefix)
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(keys) < budget; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	finished := k == nil || !bytes.HasPrefix(k, prefix)
	for _, k := range keys {
		if err := bk.Delete(k); err != nil {
			return 0, false, err
		}
	}
	return len(keys), finished, nil
}
