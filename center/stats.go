package center

import (
	"net/http"

	"github.com/lcpush/lcpush/pkg/push"
)

// statsAnswer is GET /v1/stats. Map keys are app ids and room ids.
// messages.pending counts unicast (uid, message) entries stored and not yet
// ACKed or expired: an ACK makes it go down.
type statsAnswer struct {
	Online   onlineStats  `json:"online"`
	Messages messageStats `json:"messages"`
	API      apiStats     `json:"api"`
	// Queues are this center's send queues by app (the apps that pushed
	// past their rate recently; see queueStat).
	Queues map[uint32]queueStat `json:"queues"`
}

type onlineStats struct {
	Total int            `json:"total"`
	Apps  map[uint32]int `json:"apps"`
	Rooms map[string]int `json:"rooms"`
	// Partial is set while some register instance could not be asked
	// (down or restarting): the figures are then a lower bound.
	Partial bool `json:"partial,omitempty"`
}

type messageStats struct {
	Pending       int64            `json:"pending"`
	PendingPerApp map[uint32]int64 `json:"pending_per_app"`
	Broadcasts    int64            `json:"broadcasts"`
	Saved         uint64           `json:"saved"`
	Acked         uint64           `json:"acked"`
	Expired       uint64           `json:"expired"`
	Parked        int64            `json:"parked"`
}

// apiStats count requests this center accepted since it started.
type apiStats struct {
	Pushes     uint64 `json:"pushes"`
	Broadcasts uint64 `json:"broadcasts"`
}

// handleStats serves GET /v1/stats (admin key only).
func (s *Service) handleStats(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := authenticate(s.conf.Load(), r)
	if e != nil {
		return e
	}
	if !c.admin {
		return forbidden("stats need the admin key")
	}
	ctx, cancel := s.callCtx(r.Context())
	defer cancel()
	counts, err := s.reg.Counts(ctx)
	if err != nil {
		depErrors.WithLabelValues("counts").Inc()
		s.log.Warn("center stats: counts", "err", err)
		return unavailable("session registry unavailable")
	}
	ss, err := s.store.Stats(ctx)
	if err != nil {
		depErrors.WithLabelValues("stats").Inc()
		s.log.Warn("center stats: store", "err", err)
		return unavailable("message store unavailable")
	}
	a := buildStats(counts, ss, s.apiPushes.Load(), s.apiBroadcasts.Load())
	a.Queues = s.queueStats()
	writeJSON(w, http.StatusOK, a)
	return nil
}

// handleQueue serves GET /v1/apps/{app}/queue: the app's send queue on this
// center, for the app's key (apps are tenants: only its own) or the admin.
func (s *Service) handleQueue(w http.ResponseWriter, r *http.Request) *apiError {
	_, app, e := appRequest(s.conf, r)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, s.queueStat(app))
	return nil
}

func buildStats(c push.Counts, ss push.StoreStats, pushes, broadcasts uint64) statsAnswer {
	a := statsAnswer{
		Online: onlineStats{Total: c.Total, Apps: c.PerApp, Rooms: c.PerRoom, Partial: c.Unanswered > 0},
		Messages: messageStats{
			Pending: ss.Pending, PendingPerApp: ss.PendingPerApp, Broadcasts: ss.Broadcasts,
			Saved: ss.Saved, Acked: ss.Acked, Expired: ss.Expired, Parked: ss.Parked,
		},
		API: apiStats{Pushes: pushes, Broadcasts: broadcasts},
	}
	// Empty maps as {} rather than null.
	if a.Online.Apps == nil {
		a.Online.Apps = map[uint32]int{}
	}
	if a.Online.Rooms == nil {
		a.Online.Rooms = map[string]int{}
	}
	if a.Messages.PendingPerApp == nil {
		a.Messages.PendingPerApp = map[uint32]int64{}
	}
	return a
}
