package room

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// UPSTREAM: client data for a product, handed to the coordinator by a
// worker; UPSTREAM_OK (when REPLY_WANTED) or an ERROR comes back on the loop.

// handleUpstream checks an UPSTREAM on the loop and hands it to a worker.
func (r *Room) handleUpstream(s *connState, f proto.Frame) gnet.Action {
	typ, payload, err := proto.ParseUpstream(f.Body)
	if err != nil {
		return r.protocolError(s, f.Seq, proto.ErrCodeBadFrame, "bad UPSTREAM body")
	}
	if !s.hasApp(f.App) {
		r.writeError(s, f.Seq, proto.ErrCodeNotBound, "app not bound on this connection")
		return gnet.None
	}
	up := push.Upstream{App: f.App, UID: s.uid, Type: typ, Data: bytes.Clone(payload), TS: time.Now().UnixMilli()}
	seq, want := f.Seq, f.Flags&proto.FlagReplyWanted != 0
	if !r.submit(func() { r.upstreamTask(s, up, seq, want) }) {
		mPoolDropped.WithLabelValues("upstream").Inc()
		r.writeError(s, f.Seq, proto.ErrCodeOverloaded, "upstream not accepted, retry")
	}
	return gnet.None
}

// upstreamTask hands up to the coordinator (worker) and answers on s's loop.
func (r *Room) upstreamTask(s *connState, up push.Upstream, seq uint32, want bool) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	err := r.deps.Coordinator.Upstream(ctx, up)
	switch {
	case err == nil:
		if want {
			r.onLoop(s, func() { r.writeEmpty(s, proto.OpUpstreamOK, seq) })
		}
	case errors.Is(err, push.ErrOverloaded):
		r.onLoop(s, func() { r.writeError(s, seq, proto.ErrCodeOverloaded, "upstream queue full, retry") })
	default:
		r.log.Warn("upstream failed", "uid", up.UID, "app", up.App, "err", err)
		r.onLoop(s, func() { r.writeError(s, seq, proto.ErrCodeInternal, "upstream not accepted") })
	}
}
