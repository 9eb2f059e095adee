package center

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Delivery status (API.md "Extensions"): GET /v1/messages/{msg_id} answers
// what became of a message: the store's record (stored, sent, acked,
// expired, parked, counted by the savers and the rooms' write reports,
// summed across the cluster by the shared store) plus the recipients still
// waiting in this center's send queue. Apps are tenants: another app's
// message is answered 404, exactly like an unknown one.

type messageAnswer struct {
	MsgID   string        `json:"msg_id"`
	App     uint32        `json:"app"`
	Kind    string        `json:"kind"`
	Created int64         `json:"created"`
	Expires int64         `json:"expires"`
	Targets int64         `json:"targets"`
	Stored  int64         `json:"stored"`
	Sent    int64         `json:"sent"`
	Acked   int64         `json:"acked"`
	Expired int64         `json:"expired"`
	Parked  int64         `json:"parked"`
	Queued  int64         `json:"queued"`
	User    *userDelivery `json:"user,omitempty"`
}

type userDelivery struct {
	State string `json:"state"`
}

func (s *Service) handleMessage(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := authenticate(s.conf.Load(), r)
	if e != nil {
		return e
	}
	id, err := strconv.ParseUint(r.PathValue("msg"), 10, 64)
	if err != nil || id == 0 {
		return notFound("no such message")
	}
	uid := r.URL.Query().Get("uid")
	if uid != "" {
		if e := checkUID(uid); e != nil {
			return e
		}
	}
	app := c.app // 0 for the admin key: any app's record
	ctx, cancel := s.callCtx(r.Context())
	defer cancel()
	st, ok, err := s.store.Status(ctx, app, id)
	if err != nil {
		depErrors.WithLabelValues("status").Inc()
		return unavailable("message store unavailable")
	}
	if ok {
		app = st.App
	}
	q, ok2 := s.queuedOf(app, id)
	switch {
	case !ok && !ok2:
		return notFound("no such message")
	case !ok: // queued before its record exists (a QoS 0 push opens it when it is released)
		st = q.status
	}
	// A broadcast's targets are in its record: each room adds its
	// connections when its task starts.
	a := messageAnswer{
		MsgID: strconv.FormatUint(id, 10), App: st.App, Kind: st.Kind, Created: st.Created, Expires: st.Expires,
		Targets: st.Targets, Stored: st.Stored, Sent: st.Sent, Acked: st.Acked, Expired: st.Expired, Parked: st.Parked,
		Queued: int64(q.waiting),
	}
	if uid != "" {
		state := push.StateUnknown
		if slices.Contains(q.uids, uid) {
			state = push.StateQueued
		} else if ok {
			if state, err = s.store.UserState(ctx, st.App, id, uid); err != nil {
				depErrors.WithLabelValues("status").Inc()
				return unavailable("message store unavailable")
			}
		}
		a.User = &userDelivery{State: state}
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// queuedMsg is what this center's send queue holds of one message.
type queuedMsg struct {
	waiting int
	uids    []string // the recipients not released yet
	status  push.MessageStatus
}

// queuedOf looks msg id up in app's send queue (app 0: every app's).
func (s *Service) queuedOf(app uint32, id uint64) (queuedMsg, bool) {
	sq := s.sendq
	sq.mu.Lock()
	defer sq.mu.Unlock()
	for a, q := range sq.q.apps {
		if app != 0 && a != app {
			continue
		}
		for _, it := range q.items {
			if it.msg.ID == id {
				rest := it.uids[it.off:]
				return queuedMsg{waiting: len(rest), uids: slices.Clone(rest), status: push.MessageStatus{
					MsgID: id, App: it.msg.App, Kind: kindOf(len(it.uids)), Created: it.at.Unix(),
					Expires: it.msg.Expire, Targets: int64(len(it.uids)),
				}}, true
			}
		}
	}
	return queuedMsg{}, false
}

func kindOf(recipients int) string {
	if recipients == 1 {
		return push.KindUnicast
	}
	return push.KindMulticast
}

// maxStatusOpens bounds the QoS 0 status records being written at once;
// beyond it a QoS 0 push goes without one (counted).
const maxStatusOpens = 64

// openStatus gives a push the store does not Save (QoS 0) its delivery
// status record, in the background: the push does not wait for a write
// whose only reader is GET /v1/messages, and the rooms report their writes
// a tick later, when the record is there.
func (s *Service) openStatus(msg push.Message, uids []string) {
	if msg.Expire <= 0 {
		return
	}
	select {
	case s.statusSlots <- struct{}{}:
	default:
		statusSkipped.Inc()
		return
	}
	st := push.MessageStatus{MsgID: msg.ID, App: msg.App, Kind: kindOf(len(uids)), Created: time.Now().Unix(), Expires: msg.Expire}
	if !s.startJob(func() {
		defer func() { <-s.statusSlots }()
		ctx, cancel := s.callCtx(s.jobCtx)
		defer cancel()
		if err := s.store.OpenStatus(ctx, st, uids); err != nil {
			statusSkipped.Inc()
			s.log.Debug("center: delivery status not opened", "msg", msg.ID, "err", err)
		}
	}) {
		<-s.statusSlots
	}
}
