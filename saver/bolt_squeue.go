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

// Send queue journal in Bolt, two buckets (no layout change: they are
// created at open when missing):
//
//	squeue   len(owner) u8 | owner | BE64(id) -> entry (squeue.go, appendQueued)
//	squeueid BE64(id)                         -> owner
//
// squeue keeps one owner's entries in one contiguous, id-ordered range
// (Queued and Claim walk it); squeueid finds an id's owner (Dequeue, and an
// Enqueue that moves an entry to another owner). Enqueue, Dequeue and Claim
// share commits through b.batch.
var (
	bucketQueue   = []byte("squeue")
	bucketQueueID = []byte("squeueid")
)

func queuePrefix(dst []byte, owner string) []byte {
	dst = append(dst, byte(len(owner)))
	return append(dst, owner...)
}

func queueKey(dst []byte, owner string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(queuePrefix(dst, owner), id)
}

// parseQueueKey splits a squeue key; false when malformed.
func parseQueueKey(k []byte) (owner string, id uint64, ok bool) {
	if len(k) < 1 || len(k) != 1+int(k[0])+8 {
		return "", 0, false
	}
	l := int(k[0])
	return string(k[1 : 1+l]), binary.BigEndian.Uint64(k[1+l:]), true
}

// boltDequeue forgets id in tx.
func boltDequeue(tx *bolt.Tx, id uint64) error {
	ids := tx.Bucket(bucketQueueID)
	ik := idKey(nil, id)
	owner := ids.Get(ik)
	if owner == nil {
		return nil
	}
	if err := tx.Bucket(bucketQueue).Delete(queueKey(nil, string(owner), id)); err != nil {
		return err
	}
	return ids.Delete(ik)
}

// Enqueue implements Store.
func (b *Bolt) Enqueue(ctx context.Context, q push.QueuedPush) error {
	if err := checkQueued(&q); err != nil {
		return fmt.Errorf("saver enqueue: %w", err)
	}
	key, val, ik := queueKey(nil, q.Owner, q.Msg.ID), appendQueued(nil, &q), idKey(nil, q.Msg.ID)
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		if err := boltDequeue(tx, q.Msg.ID); err != nil {
			return err
		}
		if err := tx.Bucket(bucketQueue).Put(key, val); err != nil {
			return err
		}
		return tx.Bucket(bucketQueueID).Put(ik, []byte(q.Owner))
	})
	if err != nil {
		return fmt.Errorf("saver enqueue %d: %w", q.Msg.ID, err)
	}
	return nil
}

// Dequeue implements Store. A read transaction first checks that some id
// is journaled: unknown ids cost no write transaction.
func (b *Bolt) Dequeue(ctx context.Context, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	if b.closed.Load() {
		return fmt.Errorf("saver dequeue: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver dequeue: %w", err)
	}
	var known []uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketQueueID)
		for _, id := range ids {
			if bk.Get(idKey(nil, id)) != nil {
				known = append(known, id)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saver dequeue: %w", closedErr(err))
	}
	if len(known) == 0 {
		return nil
	}
	err = b.batch(ctx, func(tx *bolt.Tx) error {
		for _, id := range known {
			if err := boltDequeue(tx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saver dequeue: %w", err)
	}
	return nil
}

// Queued implements Store: one read transaction over owner's range; the
// expired entries it meets are then forgotten in a write batch.
func (b *Bolt) Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	if err := checkOwner(owner); err != nil {
		return nil, fmt.Errorf("saver queued: %w", err)
	}
	if b.closed.Load() {
		return nil, fmt.Errorf("saver queued: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saver queued: %w", err)
	}
	limit = queuedLimit(limit)
	now := time.Now().Unix()
	var out []push.QueuedPush
	var expired []uint64
	prefix := queuePrefix(nil, owner)
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQueue).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			_, id, ok := parseQueueKey(k)
			if !ok {
				continue
			}
			q, err := decodeQueued(id, owner, v)
			if err != nil {
				b.log.Warn("saver: corrupt queued push skipped", "id", id, "err", err)
				continue
			}
			if q.Msg.Expired(now) {
				expired = append(expired, id)
				continue
			}
			out = append(out, q)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saver queued: %w", closedErr(err))
	}
	if len(expired) > 0 {
		if err := b.Dequeue(ctx, expired); err != nil {
			b.log.Debug("saver: forgetting expired queued pushes", "err", err)
		}
	}
	return out, nil
}

// QueueOwners implements Store: one seek per owner.
func (b *Bolt) QueueOwners(ctx context.Context) ([]string, error) {
	if b.closed.Load() {
		return nil, fmt.Errorf("saver queue owners: %w", ErrClosed)
	}
	var out []string
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQueue).Cursor()
		k, _ := c.First()
		for k != nil {
			owner, _, ok := parseQueueKey(k)
			if !ok {
				k, _ = c.Next()
				continue
			}
			out = append(out, owner)
			last := queueKey(nil, owner, ^uint64(0))
			k, _ = c.Seek(last)
			if k != nil && bytes.Equal(k, last) {
				k, _ = c.Next()
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saver queue owners: %w", closedErr(err))
	}
	return out, nil
}

// Claim implements Store: one write transaction moves the whole range
// (bolt serializes write transactions, so two Claims never share a push).
func (b *Bolt) Claim(ctx context.Context, from, to string) (int, error) {
	if err := checkClaim(from, to); err != nil {
		return 0, err
	}
	if from == to {
		if b.closed.Load() {
			return 0, fmt.Errorf("saver claim %q: %w", truncate(from), ErrClosed)
		}
		return 0, nil
	}
	var n int
	prefix := queuePrefix(nil, from)
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		n = 0
		bk, ids := tx.Bucket(bucketQueue), tx.Bucket(bucketQueueID)
		type entry struct {
			key, val []byte
			id       uint64
		}
		var moved []entry
		c := bk.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if _, id, ok := parseQueueKey(k); ok {
				moved = append(moved, entry{bytes.Clone(k), bytes.Clone(v), id})
			}
		}
		for _, e := range moved {
			if err := bk.Delete(e.key); err != nil {
				return err
			}
			if err := bk.Put(queueKey(nil, to, e.id), e.val); err != nil {
				return err
			}
			if err := ids.Put(idKey(nil, e.id), []byte(to)); err != nil {
				return err
			}
		}
		n = len(moved)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("saver claim %q: %w", truncate(from), err)
	}
	return n, nil
}
