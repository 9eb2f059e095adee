package push

import (
	"errors"
	"fmt"
)

// AckReq is one client ACK as the saver takes it in a batch
// (saver.Store.AckMany): the uid, the apps the ACKing connection acts for
// (tenants: an id of another app is an unknown id) and the ACKed ids.
type AckReq struct {
	UID  string
	Apps []uint32
	IDs  []uint64
}

// Bounds of one AckMany call, everywhere: the RPC codec refuses a bigger
// request and the stores return ErrAckBatch. A caller sends a bigger batch
// as several calls; a hostile caller costs only its share.
const (
	// MaxAckEntries bounds the entries of one call.
	MaxAckEntries = 4096
	// MaxAckIDs bounds the ids of one call, all entries together.
	MaxAckIDs = 1 << 16
	// MaxAckApps bounds the apps of one entry (a room binds at most 16 on
	// a connection).
	MaxAckApps = 64
)

// ErrAckBatch means an AckMany call is past MaxAckEntries, MaxAckIDs or
// MaxAckApps: nothing of it was applied.
var ErrAckBatch = errors.New("ack batch too large")

// CheckAckBatch reports whether acks fit the bounds of one call, with the
// bound it breaks (wrapping ErrAckBatch).
func CheckAckBatch(acks []AckReq) error {
	if len(acks) > MaxAckEntries {
		return fmt.Errorf("%w: %d entries, at most %d", ErrAckBatch, len(acks), MaxAckEntries)
	}
	ids := 0
	for i := range acks {
		if len(acks[i].Apps) > MaxAckApps {
			return fmt.Errorf("%w: entry %d has %d apps, at most %d", ErrAckBatch, i, len(acks[i].Apps), MaxAckApps)
		}
		ids += len(acks[i].IDs)
	}
	if ids > MaxAckIDs {
		return fmt.Errorf("%w: %d ids, at most %d", ErrAckBatch, ids, MaxAckIDs)
	}
	return nil
}
