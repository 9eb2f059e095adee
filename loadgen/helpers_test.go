package loadgen

import (
	"time"

	"github.com/lcpush/lcpush/pkg/proto"
)

func payloadFrame(id uint64) []byte {
	return proto.AppendPush(nil, 1, true, id, payload(256, time.Now(), 1))
}

func parseFrame(b []byte) (proto.Frame, int, error) { return proto.Parse(b, proto.DefaultMaxLen) }
