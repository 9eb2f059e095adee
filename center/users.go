package center

import (
	"net/http"
	"strconv"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/token"
)

const (
	defaultTokenTTL = 86400
	maxReason       = 256 // bytes of a kick reason
)

// userAnswer is what one app may know of a uid: never another app's
// bindings or messages (apps are tenants).
type userAnswer struct {
	Online bool   `json:"online"`
	Room   string `json:"room,omitempty"`
	Since  int64  `json:"since,omitempty"`
	// Apps is [this app] when the uid is online with it bound; the other
	// apps bound on the same connection are not shown.
	Apps []uint32 `json:"apps,omitempty"`
	// Pending counts this app's stored messages for the uid; Parked, those
	// of them no longer delivered because they were loaded too often
	// without ACK.
	Pending *int `json:"pending,omitempty"`
	Parked  *int `json:"parked,omitempty"`
}

// pathUID returns the {uid} of the path if it passes the uid rule
// (push.CheckUID).
func pathUID(r *http.Request) (string, *apiError) {
	uid := r.PathValue("uid")
	if e := checkUID(uid); e != nil {
		return "", e
	}
	return uid, nil
}

// session returns uid's session if it has app bound. A connection carrying
// other apps only is not this app's business: it is reported offline and
// cannot be kicked through this app.
func (s *Service) session(r *http.Request, uid string, app uint32) (push.Session, bool, *apiError) {
	ctx, cancel := s.callCtx(r.Context())
	defer cancel()
	sess, ok, err := s.reg.Get(ctx, uid, app)
	if err != nil {
		depErrors.WithLabelValues("get").Inc()
		s.log.Warn("center: registry get", "uid", uid, "err", err)
		return push.Session{}, false, unavailable("session registry unavailable")
	}
	if !ok || !sess.HasApp(app) {
		return push.Session{}, false, nil
	}
	return sess, true, nil
}

// handleUser serves GET /v1/apps/{app}/users/{uid}.
func (s *Service) handleUser(w http.ResponseWriter, r *http.Request) *apiError {
	_, app, e := appRequest(s.conf, r)
	if e != nil {
		return e
	}
	uid, e := pathUID(r)
	if e != nil {
		return e
	}
	sess, online, e := s.session(r, uid, app.ID)
	if e != nil {
		return e
	}
	ans := userAnswer{Online: online}
	if online {
		ans.Room, ans.Since, ans.Apps = sess.Room, sess.Since, []uint32{app.ID}
	}
	ctx, cancel := s.callCtx(r.Context())
	defer cancel()
	// The store's counts are extra information: without the store the
	// online status is still answered, without them.
	if pending, parked, err := s.store.UserStats(ctx, uid, app.ID); err == nil {
		ans.Pending, ans.Parked = &pending, &parked
	} else {
		depErrors.WithLabelValues("user_stats").Inc()
		s.log.Warn("center: store user stats", "uid", uid, "err", err)
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

type kickRequest struct {
	Reason string `json:"reason"`
}

type kickAnswer struct {
	Kicked bool `json:"kicked"`
}

// handleKick serves POST /v1/apps/{app}/users/{uid}/kick; the body is
// optional.
func (s *Service) handleKick(w http.ResponseWriter, r *http.Request) *apiError {
	_, app, e := appRequest(s.conf, r)
	if e != nil {
		return e
	}
	uid, e := pathUID(r)
	if e != nil {
		return e
	}
	var req kickRequest
	if e := decodeBody(w, r, &req, true); e != nil {
		return e
	}
	if len(req.Reason) > maxReason {
		return badRequest("reason longer than 256 bytes")
	}
	if req.Reason == "" {
		req.Reason = "admin"
	}
	sess, online, e := s.session(r, uid, app.ID)
	if e != nil {
		return e
	}
	kicked := false
	if online {
		ctx, cancel := s.callCtx(r.Context())
		var err error
		// Only this app's session ends: the connection keeps its other apps.
		kicked, err = s.rooms.Kick(ctx, sess.Room, uid, sess.ConnID, []uint32{app.ID}, push.KickAdmin, req.Reason)
		cancel()
		if err != nil {
			roomErrors.WithLabelValues("kick").Inc()
			s.log.Warn("center: room kick", "room", sess.Room, "uid", uid, "err", err)
			return unavailable("room " + sess.Room + " unavailable")
		}
	}
	writeJSON(w, http.StatusOK, kickAnswer{Kicked: kicked})
	return nil
}

type tokenRequest struct {
	UID uidField `json:"uid"`
	TTL *int     `json:"ttl"`
}

type tokenAnswer struct {
	Token  string `json:"token"`
	Expiry int64  `json:"expiry"`
}

// handleToken serves POST /v1/apps/{app}/tokens: a client token for (app,
// uid), signed with the app secret. Its ttl is at most room.max_token_lifetime
// (default 30 days): the rooms refuse a token that is valid for longer.
func (s *Service) handleToken(w http.ResponseWriter, r *http.Request) *apiError {
	cfg, app, e := appRequest(s.conf, r)
	if e != nil {
		return e
	}
	var req tokenRequest
	if e := decodeBody(w, r, &req, false); e != nil {
		return e
	}
	if e := checkUID(string(req.UID)); e != nil {
		return e
	}
	maxTTL := int(cfg.Room.MaxTokenLifetime / time.Second)
	ttl := min(defaultTokenTTL, maxTTL)
	if req.TTL != nil {
		ttl = *req.TTL
	}
	if ttl < 1 || ttl > maxTTL {
		return badRequest("ttl must be 1.." + strconv.Itoa(maxTTL) + " seconds (room.max_token_lifetime)")
	}
	expiry := time.Now().Unix() + int64(ttl)
	writeJSON(w, http.StatusOK, tokenAnswer{
		Token:  token.Sign([]byte(app.Secret), app.ID, string(req.UID), expiry),
		Expiry: expiry,
	})
	return nil
}
