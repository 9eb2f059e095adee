package saver

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lcpush/lcpush/pkg/push"
)

// Delivery status in Bolt, two buckets (no layout change: they are created
// at open when missing):
//
//	status  BE64(id)     -> status record (status.go, appendStatus)
//	sustate BE64(id) uid -> 1 byte: the uid's state (status.go)
//
// and an expiry index record of kind 's' (BE64(Expires+StatusGrace) 's'
// BE64(id)), which makes Expire drop the record and its per-uid states.
// The other operations update the record inside their own transactions
// through statusTx, which costs one Get per message when there is none.
var (
	bucketStatus = []byte("status")
	bucketSState = []byte("sustate")
)

const kindStatus = 's'

// statusTx reads and updates the status records touched by one write
// transaction; flush writes the changed ones back.
type statusTx struct {
	tx   *bolt.Tx
	recs map[uint64]*boltStatus
}

type boltStatus struct {
	st    push.MessageStatus
	dirty bool
}

func newStatusTx(tx *bolt.Tx) *statusTx { return &statusTx{tx: tx} }

// get returns the record of id, nil when there is none (or it is corrupt).
func (s *statusTx) get(id uint64) *boltStatus {
	if r, ok := s.recs[id]; ok {
		return r
	}
	if s.recs == nil {
		s.recs = map[uint64]*boltStatus{}
	}
	var r *boltStatus
	if v := s.tx.Bucket(bucketStatus).Get(idKey(nil, id)); v != nil {
		if st, err := decodeStatus(id, v); err == nil {
			r = &boltStatus{st: st}
		}
	}
	s.recs[id] = r
	return r
}

// step applies a transition to uid's state of id, counting it in the
// field counter selects when it counts.
func (s *statusTx) step(id uint64, uid string, f func(byte) (byte, bool), counter func(*push.MessageStatus) *int64) error {
	r := s.get(id)
	if r == nil || r.st.Kind == push.KindBroadcast {
		return nil
	}
	users := s.tx.Bucket(bucketSState)
	key := backsKey(nil, id, uid)
	v := users.Get(key)
	if len(v) != 1 {
		return nil // not a recipient given to OpenStatus
	}
	n, counts := f(v[0])
	if !counts {
		return nil
	}
	*counter(&r.st)++
	r.dirty = true
	return users.Put(key, []byte{n})
}

// count changes a counter of id's record (any kind) by set or by delta.
func (s *statusTx) count(id uint64, f func(*push.MessageStatus)) {
	if r := s.get(id); r != nil {
		f(&r.st)
		r.dirty = true
	}
}

func (s *statusTx) flush() error {
	bk := s.tx.Bucket(bucketStatus)
	for id, r := range s.recs {
		if r != nil && r.dirty {
			if err := bk.Put(idKey(nil, id), appendStatus(nil, &r.st)); err != nil {
				return err
			}
		}
	}
	return nil
}

func fStored(st *push.MessageStatus) *int64  { return &st.Stored }
func fAcked(st *push.MessageStatus) *int64   { return &st.Acked }
func fParked(st *push.MessageStatus) *int64  { return &st.Parked }
func fExpired(st *push.MessageStatus) *int64 { return &st.Expired }

// OpenStatus implements Store.
func (b *Bolt) OpenStatus(ctx context.Context, st push.MessageStatus, uids []string) error {
	st, uids, err := checkStatus(st, uids)
	if err != nil {
		return fmt.Errorf("saver open status: %w", err)
	}
	op := prepareOpen(st, uids)
	if err := b.batch(ctx, op.apply); err != nil {
		return fmt.Errorf("saver open status %d: %w", st.MsgID, err)
	}
	return nil
}

// openOp creates a status record unless it exists; its keys are built
// before the write transaction (they must stay valid until the commit).
type openOp struct {
	key, val, expKey []byte
	ukeys            [][]byte
}

func prepareOpen(st push.MessageStatus, uids []string) *openOp {
	op := &openOp{key: idKey(nil, st.MsgID), val: appendStatus(nil, &st), ukeys: make([][]byte, len(uids))}
	op.expKey = expiryKey(nil, statusDrop(st.Expires), kindStatus, op.key)
	for i, uid := range uids {
		op.ukeys[i] = backsKey(nil, st.MsgID, uid)
	}
	return op
}

var suUnknownVal = []byte{suUnknown}

func (op *openOp) apply(tx *bolt.Tx) error {
	bk := tx.Bucket(bucketStatus)
	if bk.Get(op.key) != nil {
		return nil
	}
	if err := bk.Put(op.key, op.val); err != nil {
		return err
	}
	users := tx.Bucket(bucketSState)
	for _, k := range op.ukeys {
		if err := users.Put(k, suUnknownVal); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketExpiry).Put(op.expKey, empty)
}

// AddSent implements Store. The deltas commit addSentChunk at a time, each
// chunk its own write in the batch: a loop's report holds a second's
// deliveries (5,000 at 5k pushes/s), and one commit of all of them held
// every push that shared its batch for its whole length (unicast p99 at
// 5k/s 22-51 ms, against 12 ms without the report). A failed chunk stops
// the rest: sent counts are best effort and never retried (a retry would
// count twice what an earlier chunk stored).
func (b *Bolt) AddSent(ctx context.Context, deltas []push.StatusDelta) error {
	if err := checkDeltas(deltas); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	if err := checkDeltaTargets(deltas); err != nil {
		return fmt.Errorf("saver add sent: %w", err)
	}
	if len(deltas) == 0 {
		return nil
	}
	if b.closed.Load() {
		return fmt.Errorf("saver add sent: %w", ErrClosed)
	}
	for len(deltas) > 0 {
		n := min(len(deltas), addSentChunk)
		if err := b.addSent(ctx, deltas[:n]); err != nil {
			return fmt.Errorf("saver add sent: %w", err)
		}
		deltas = deltas[n:]
	}
	return nil
}

// addSent commits one chunk of AddSent. A read transaction first checks
// that some delta names a message with a record: deltas of messages
// without one cost no write transaction.
func (b *Bolt) addSent(ctx context.Context, deltas []push.StatusDelta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	any := false
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketStatus)
		for _, d := range deltas {
			if bk.Get(idKey(nil, d.MsgID)) != nil {
				any = true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return closedErr(err)
	}
	if !any {
		return nil
	}
	return b.batch(ctx, func(tx *bolt.Tx) error {
		s := newStatusTx(tx)
		users := tx.Bucket(bucketSState)
		for _, d := range deltas {
			r := s.get(d.MsgID)
			if r == nil || r.st.App != d.App {
				continue
			}
			r.st.Sent += d.Sent
			r.dirty = true
			if r.st.Kind == push.KindBroadcast {
				r.st.Targets += d.Targets
			}
			if d.UID == "" || r.st.Kind == push.KindBroadcast {
				continue
			}
			key := backsKey(nil, d.MsgID, d.UID)
			if v := users.Get(key); len(v) == 1 {
				if n := onSent(v[0]); n != v[0] {
					if err := users.Put(key, []byte{n}); err != nil {
						return err
					}
				}
			}
		}
		return s.flush()
	})
}

// Status implements Store.
func (b *Bolt) Status(ctx context.Context, app uint32, msgID uint64) (push.MessageStatus, bool, error) {
	if b.closed.Load() {
		return push.MessageStatus{}, false, fmt.Errorf("saver status %d: %w", msgID, ErrClosed)
	}
	var st push.MessageStatus
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
		st, ok = boltStatusOf(tx, app, msgID, time.Now().Unix())
		return nil
	})
	if err != nil {
		return push.MessageStatus{}, false, fmt.Errorf("saver status %d: %w", msgID, closedErr(err))
	}
	return st, ok, nil
}

func boltStatusOf(tx *bolt.Tx, app uint32, id uint64, now int64) (push.MessageStatus, bool) {
	v := tx.Bucket(bucketStatus).Get(idKey(nil, id))
	if v == nil {
		return push.MessageStatus{}, false
	}
	st, err := decodeStatus(id, v)
	if err != nil || !ownApp(app, st.App) || !statusLive(&st, now) {
		return push.MessageStatus{}, false
	}
	return st, true
}

// UserState implements Store.
func (b *Bolt) UserState(ctx context.Context, app uint32, msgID uint64, uid string) (string, error) {
	if err := checkUID(uid); err != nil {
		return "", fmt.Errorf("saver user state: %w", err)
	}
	if b.closed.Load() {
		return "", fmt.Errorf("saver user state %d: %w", msgID, ErrClosed)
	}
	state := push.StateUnknown
	err := b.db.View(func(tx *bolt.Tx) error {
		now := time.Now().Unix()
		st, ok := boltStatusOf(tx, app, msgID, now)
		if !ok {
			return nil
		}
		key := backsKey(nil, msgID, uid)
		if st.Kind != push.KindBroadcast {
			if v := tx.Bucket(bucketSState).Get(key); len(v) == 1 {
				state = stateName(v[0])
			}
			return nil
		}
		var rec byte
		if r, ok := b.bx.get(msgID); ok && !r.expired(now) {
			c := getCursor(tx.Bucket(bucketBcur), bcurKey(nil, uid, r.app))
			c.normalize(b.bx.live(r.app, now))
			switch acked, parked := c.state(r.seq); {
			case acked:
				rec = suAcked
			case parked:
				rec = suParked
			}
		}
		state = broadcastState(&st, rec, now)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("saver user state %d: %w", msgID, closedErr(err))
	}
	return state, nil
}
