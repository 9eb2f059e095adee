package saver

import (
	"context"
	"fmt"

	"github.com/lcpush/lcpush/pkg/push"
)

// checkEnds validates a Checkpoint's ends: a bad uid is a caller's bug
// (the room checks every uid at AUTH), so the whole call is refused.
func checkEnds(ends []push.SessionEnd) error {
	for i := range ends {
		if err := checkUID(ends[i].UID); err != nil {
			return err
		}
	}
	return nil
}

// Checkpoint implements Store: Memory's ACKs are its only copy, so there
// is nothing to write.
func (m *Memory) Checkpoint(ctx context.Context, ends []push.SessionEnd) error {
	if err := checkEnds(ends); err != nil {
		return fmt.Errorf("saver checkpoint: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver checkpoint: %w", err)
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return fmt.Errorf("saver checkpoint: %w", ErrClosed)
	}
	return nil
}

// Checkpoint implements Store: Bolt's ACKs are fsynced at Ack, so there is
// nothing to write.
func (b *Bolt) Checkpoint(ctx context.Context, ends []push.SessionEnd) error {
	if err := checkEnds(ends); err != nil {
		return fmt.Errorf("saver checkpoint: %w", err)
	}
	if b.closed.Load() {
		return fmt.Errorf("saver checkpoint: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saver checkpoint: %w", err)
	}
	return nil
}
