package saver

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Send queue journal (Store.Enqueue, Dequeue, Queued, QueueOwners, Claim;
// docs/storage.md "Send queue journal"): the pushes waiting in a center's
// in-memory send queue, one entry per push id, each owned by the member id
// of the center whose queue holds it, so that another center (or the same
// one after a restart) can claim and re-queue them.

const (
	// DefaultQueuedLimit is the most entries one Queued returns when limit is 0.
	DefaultQueuedLimit = 100_000
	// maxQueuedUIDs bounds the recipients of one journaled push.
	maxQueuedUIDs = 100_000
	// maxOwnerLen bounds an owner (a member id) in bytes.
	maxOwnerLen = 128
	// queueVersion is the first byte of an encoded journal entry.
	queueVersion = 1
)

func checkOwner(owner string) error {
	if owner == "" || len(owner) > maxOwnerLen {
		return fmt.Errorf("queue owner %q: %w", truncate(owner), ErrInvalid)
	}
	return nil
}

// checkQueued validates an Enqueue.
func checkQueued(q *push.QueuedPush) error {
	if err := checkMessage(&q.Msg, false); err != nil {
		return err
	}
	if err := checkOwner(q.Owner); err != nil {
		return fmt.Errorf("message %d: %w", q.Msg.ID, err)
	}
	if len(q.UIDs) > maxQueuedUIDs {
		return fmt.Errorf("message %d: %d uids: %w", q.Msg.ID, len(q.UIDs), ErrInvalid)
	}
	for _, uid := range q.UIDs {
		if err := checkUID(uid); err != nil {
			return fmt.Errorf("message %d: %w", q.Msg.ID, err)
		}
	}
	return nil
}

func queuedLimit(limit int) int {
	if limit <= 0 || limit > DefaultQueuedLimit {
		return DefaultQueuedLimit
	}
	return limit
}

// Encoded journal entry (big-endian; the id and the owner live in the key):
//
//	version u8 (1) | at i64 | count u32 | count x (len u8 | uid) | value (codec.go)
func appendQueued(dst []byte, q *push.QueuedPush) []byte {
	dst = append(dst, queueVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(q.At))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(q.UIDs)))
	for _, uid := range q.UIDs {
		dst = append(dst, byte(len(uid)))
		dst = append(dst, uid...)
	}
	return appendValue(dst, &q.Msg)
}

// decodeQueued decodes an entry; the payload and uids are copied.
func decodeQueued(id uint64, owner string, v []byte) (push.QueuedPush, error) {
	bad := func() (push.QueuedPush, error) {
		return push.QueuedPush{}, fmt.Errorf("queued push %d of %d bytes: %w", id, len(v), ErrCorrupt)
	}
	if len(v) < 13 || v[0] != queueVersion {
		return bad()
	}
	q := push.QueuedPush{Owner: owner, At: int64(binary.BigEndian.Uint64(v[1:]))}
	n := int(binary.BigEndian.Uint32(v[9:]))
	if n > maxQueuedUIDs {
		return bad()
	}
	v = v[13:]
	q.UIDs = make([]string, 0, n)
	for range n {
		if len(v) < 1 || len(v) < 1+int(v[0]) {
			return bad()
		}
		l := int(v[0])
		q.UIDs = append(q.UIDs, string(v[1:1+l]))
		v = v[1+l:]
	}
	msg, err := decodeValue(id, v)
	if err != nil {
		return push.QueuedPush{}, err
	}
	q.Msg = msg
	return q, nil
}

// cloneQueued copies what a caller could change (the uids, the payload).
func cloneQueued(q push.QueuedPush) push.QueuedPush {
	q.UIDs = slices.Clone(q.UIDs)
	q.Msg.Payload = slices.Clone(q.Msg.Payload)
	return q
}

// Enqueue implements Store.
func (m *Memory) Enqueue(ctx context.Context, q push.QueuedPush) error {
	if err := checkQueued(&q); err != nil {
		return fmt.Errorf("saver enqueue: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver enqueue %d: %w", q.Msg.ID, err)
	}
	q = cloneQueued(q)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("saver enqueue %d: %w", q.Msg.ID, ErrClosed)
	}
	m.squeue[q.Msg.ID] = q
	return nil
}

// Dequeue implements Store.
func (m *Memory) Dequeue(ctx context.Context, ids []uint64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver dequeue: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("saver dequeue: %w", ErrClosed)
	}
	for _, id := range ids {
		delete(m.squeue, id)
	}
	return nil
}

// Queued implements Store.
func (m *Memory) Queued(ctx context.Context, owner string, limit int) ([]push.QueuedPush, error) {
	if err := checkOwner(owner); err != nil {
		return nil, fmt.Errorf("saver queued: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saver queued: %w", err)
	}
	limit = queuedLimit(limit)
	now := time.Now().Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("saver queued: %w", ErrClosed)
	}
	var out []push.QueuedPush
	for id, q := range m.squeue {
		switch {
		case q.Owner != owner:
		case q.Msg.Expired(now):
			delete(m.squeue, id)
		default:
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b push.QueuedPush) int { return cmpID(a.Msg, b.Msg.ID) })
	out = out[:min(len(out), limit)]
	for i := range out {
		out[i] = cloneQueued(out[i])
	}
	return out, nil
}

// QueueOwners implements Store.
func (m *Memory) QueueOwners(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("saver queue owners: %w", ErrClosed)
	}
	var out []string
	for _, q := range m.squeue {
		if !slices.Contains(out, q.Owner) {
			out = append(out, q.Owner)
		}
	}
	slices.SortFunc(out, strings.Compare)
	return out, nil
}

// Claim implements Store.
func (m *Memory) Claim(ctx context.Context, from, to string) (int, error) {
	if err := checkClaim(from, to); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver claim %q: %w", truncate(from), err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("saver claim %q: %w", truncate(from), ErrClosed)
	}
	if from == to {
		return 0, nil
	}
	n := 0
	for id, q := range m.squeue {
		if q.Owner == from {
			q.Owner = to
			m.squeue[id] = q
			n++
		}
	}
	return n, nil
}

func checkClaim(from, to string) error {
	if err := checkOwner(from); err != nil {
		return fmt.Errorf("saver claim: %w", err)
	}
	if err := checkOwner(to); err != nil {
		return fmt.Errorf("saver claim: %w", err)
	}
	return nil
}
