package room

import (
	"context"
	"fmt"
	"slices"

	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/push"
)

// Kick takes apps from the uid's connection with connID (0 = its newest
// connection here): apps are tenants, so a login or a kick through app A
// ends only A's session. The connection is sent KICK {code, reason} and
// closed when it has no app left, or when apps is empty (the whole
// connection); otherwise it keeps serving its other apps, and is sent
// nothing (version 1 has no frame for it: the client learns it from ERROR
// not_bound if it uses the app). It reports whether such a connection was
// found; the frames are written asynchronously by its loop.
func (r *Room) Kick(_ context.Context, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error) {
	if r.isClosing() {
		return false, fmt.Errorf("room kick: %w", push.ErrClosed)
	}
	s := r.idx.get(uid, connID)
	if s == nil {
		return r.kickHeld(uid, connID), nil
	}
	if reason == "" {
		reason = proto.KickReason(code)
	}
	apps = slices.Clone(apps)
	err := r.onLoop(s, func() {
		if len(apps) > 0 {
			var took []uint32
			for _, a := range apps {
				if s.removeApp(a) {
					took = append(took, a)
				}
			}
			if len(s.appList()) > 0 {
				r.revoked(s, took, code)
				return
			}
		}
		r.writeKick(s, code, reason)
		r.lingerClose(s, closeKick, "")
	})
	if err != nil {
		return false, fmt.Errorf("room kick: %w", push.ErrClosed)
	}
	return true, nil
}

// revoked tells the register what a connection that kept other apps has
// left (loop only). A login elsewhere took the apps there: the user is still
// online for them, so no offline event; a kick reports them offline.
func (r *Room) revoked(s *connState, took []uint32, code int) {
	mRevoked.Add(float64(len(took)))
	for _, a := range took {
		r.syncApps(s, a, code != push.KickLoginElsewhere)
	}
}
