package center

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// messageFields are the body fields shared by push and broadcast.
type messageFields struct {
	Text *string `json:"text"`
	Data *string `json:"data"` // standard base64
	QoS  *int    `json:"qos"`
	TTL  *int    `json:"ttl"` // seconds
}

type pushRequest struct {
	UIDs uidList `json:"uids"`
	messageFields
}

// encoding/json silently turns invalid UTF-8 in a string (and a lone
// surrogate escape) into U+FFFD, which would address another uid than the
// caller meant: the uid fields of the API refuse the request instead.
var errUIDNotUTF8 = errors.New("uid is not valid UTF-8 (invalid bytes or a lone surrogate escape)")

// uidList is a JSON list of uids: a []string that refuses invalid UTF-8.
type uidList []string

func (l *uidList) UnmarshalJSON(raw []byte) error {
	if err := json.Unmarshal(raw, (*[]string)(l)); err != nil {
		return err
	}
	return checkUTF8(raw, *l...)
}

// uidField is one uid in JSON: a string that refuses invalid UTF-8.
type uidField string

func (u *uidField) UnmarshalJSON(raw []byte) error {
	if err := json.Unmarshal(raw, (*string)(u)); err != nil {
		return err
	}
	return checkUTF8(raw, string(*u))
}

// checkUTF8 reports errUIDNotUTF8 when the JSON text raw is not UTF-8 or
// when decoding it made replacement characters that raw does not spell
// (literally or as \ufffd).
func checkUTF8(raw []byte, decoded ...string) error {
	if !utf8.Valid(raw) {
		return errUIDNotUTF8
	}
	made := 0
	for _, s := range decoded {
		made += strings.Count(s, string(utf8.RuneError))
	}
	if made == 0 {
		return nil
	}
	spelled := bytes.Count(raw, []byte(string(utf8.RuneError))) + bytes.Count(bytes.ToLower(raw), []byte(`\ufffd`))
	if made > spelled {
		return errUIDNotUTF8
	}
	return nil
}

// queuedAnswer is the 202 of a push that waits in the app's send queue:
// queued is the recipients waiting there, this push's included.
type queuedAnswer struct {
	MsgID  string `json:"msg_id"`
	Queued int    `json:"queued"`
}

type pushAnswer struct {
	MsgID  string `json:"msg_id"`
	Online int    `json:"online"`
	Stored int    `json:"stored"`
}

// message validates the fields against the app's limits and builds the
// message (without its id).
func (f *messageFields) message(cfg *config.Config, app *config.App, now time.Time) (push.Message, *apiError) {
	var payload []byte
	switch {
	case f.Text != nil && f.Data != nil:
		return push.Message{}, badRequest("give text or data, not both")
	case f.Text != nil:
		payload = []byte(*f.Text)
	case f.Data != nil:
		b, err := base64.StdEncoding.DecodeString(*f.Data)
		if err != nil {
			return push.Message{}, badRequest("data is not standard base64")
		}
		payload = b
	default:
		return push.Message{}, badRequest("text or data is required")
	}
	if len(payload) > app.MaxPayload {
		return push.Message{}, tooLarge("payload of " + strconv.Itoa(len(payload)) + " bytes is over the app's max_payload of " + strconv.Itoa(app.MaxPayload))
	}
	qos := int(push.QoS1)
	if f.QoS != nil {
		qos = *f.QoS
	}
	if qos != int(push.QoS0) && qos != int(push.QoS1) {
		return push.Message{}, badRequest("qos must be 0 or 1")
	}
	ttl := cfg.Center.DefaultTTL
	if f.TTL != nil {
		ttl = *f.TTL
	}
	if ttl < 1 || ttl > cfg.Center.MaxTTL {
		return push.Message{}, badRequest("ttl must be 1.." + strconv.Itoa(cfg.Center.MaxTTL) + " seconds")
	}
	return push.Message{App: app.ID, QoS: uint8(qos), Expire: now.Unix() + int64(ttl), Payload: payload}, nil
}

// checkUID applies the platform's one uid rule (push.CheckUID): a uid the
// rooms and the stores would refuse is a 400 here, never a 503 later.
func checkUID(uid string) *apiError {
	if err := push.CheckUID(uid); err != nil {
		return badRequest("uid must be 1.." + strconv.Itoa(push.MaxUIDLen) +
			" bytes of valid UTF-8 without control characters: " + err.Error())
	}
	return nil
}

// cleanUIDs checks the uid list and removes duplicates, keeping the order.
func cleanUIDs(uids []string, maxN int) ([]string, *apiError) {
	if len(uids) == 0 {
		return nil, badRequest("uids must name at least one user")
	}
	if len(uids) > maxN {
		return nil, badRequest("at most " + strconv.Itoa(maxN) + " uids per push")
	}
	seen := make(map[string]struct{}, len(uids))
	out := make([]string, 0, len(uids))
	for _, u := range uids {
		if e := checkUID(u); e != nil {
			return nil, e
		}
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		out = append(out, u)
	}
	return out, nil
}

// handlePush serves POST /v1/apps/{app}/push: store (QoS 1), then either
// look up the sessions and push through their rooms (200) or, past the
// app's rate, leave the message to the app's send queue (202).
func (s *Service) handlePush(w http.ResponseWriter, r *http.Request) *apiError {
	cfg, app, e := appRequest(s.conf, r)
	if e != nil {
		return e
	}
	var req pushRequest
	if e := decodeBody(w, r, &req, false); e != nil {
		return e
	}
	uids, e := cleanUIDs(req.UIDs, app.MaxMulticast)
	if e != nil {
		return e
	}
	msg, e := req.message(cfg, app, time.Now())
	if e != nil {
		return e
	}
	// The app's rate counts recipients: send at once, queue (202), or
	// refuse (sendqueue.go).
	adm := s.admitPush(app, msg, uids)
	switch adm.kind {
	case admitNever:
		return badRequest("a push to " + strconv.Itoa(len(uids)) + " recipients can never pass app " + appLabel(app.ID) +
			"'s push_queue of " + strconv.Itoa(app.PushQueue) + " (or push_queue_bytes) and push_burst of " + strconv.Itoa(app.PushBurst) + ": split it")
	case admitFull:
		rateLimitedTotal.Inc()
		return rateLimited("push rate of app "+appLabel(app.ID)+" exceeded and its send queue (push_queue) is full", adm.retry)
	}
	msg.ID = s.ids.Next()
	if msg.QoS == push.QoS0 {
		s.openStatus(msg, uids) // Save opens the record of a QoS 1 message
	}

	// Store-then-send: a QoS 1 message that could not be stored is refused
	// before anything reaches a client (or waits in the queue).
	if msg.QoS == push.QoS1 {
		ctx, cancel := s.callCtx(r.Context())
		err := s.store.Save(ctx, msg, uids)
		cancel()
		if err != nil {
			if adm.kind == admitQueued {
				s.cancelPush(adm)
			}
			depErrors.WithLabelValues("save").Inc()
			s.log.Warn("center push: save", "app", app.ID, "msg", msg.ID, "err", err)
			return unavailable("message store unavailable")
		}
	}
	if adm.kind == admitQueued {
		s.journal(r.Context(), msg, uids) // before the commit: its release forgets it
		if !s.commitPush(adm, msg, uids) {
			return unavailable("center is shutting down")
		}
		s.apiPushes.Add(1)
		pushes.WithLabelValues(strconv.Itoa(int(msg.QoS))).Inc()
		writeJSON(w, http.StatusAccepted, queuedAnswer{MsgID: strconv.FormatUint(msg.ID, 10), Queued: adm.queued})
		return nil
	}
	// From here the message is accepted: finish even if the caller leaves.
	base := context.WithoutCancel(r.Context())
	stored := 0
	if msg.QoS == push.QoS1 {
		stored = len(uids)
	}
	// A recipient the register could not answer for is not "offline":
	// online counts only recipients reached through an answer. QoS 1
	// retries them, then queues them (retry.go); QoS 0 pushes to what was
	// answered and is refused only when nothing was.
	ctx, cancel := s.callCtx(base)
	sessions, pending, err := s.lookup(ctx, uids)
	cancel()
	if err != nil {
		depErrors.WithLabelValues("lookup").Inc()
		s.log.Warn("center push: lookup", "app", app.ID, "msg", msg.ID, "unanswered", len(pending), "err", err)
		if msg.QoS == push.QoS0 && len(pending) >= len(uids) { // nothing was done: say so
			return unavailable("session registry unavailable")
		}
	}
	online := s.deliverSessions(base, msg, sessions, "push")
	if msg.QoS == push.QoS1 && len(pending) > 0 {
		n, still := s.retryLookup(base, msg, pending)
		online += n
		if len(still) > 0 {
			s.enqueue(msg, still)
		}
	}
	s.apiPushes.Add(1)
	pushes.WithLabelValues(strconv.Itoa(int(msg.QoS))).Inc()
	writeJSON(w, http.StatusOK, pushAnswer{MsgID: strconv.FormatUint(msg.ID, 10), Online: online, Stored: stored})
	return nil
}

// roomTargets are the connections one room should reach.
type roomTargets struct {
	room    string
	targets []push.Target
}

// groupByRoom keeps the sessions that have app bound and groups them by
// room, in the order rooms first appear.
func groupByRoom(sessions []push.Session, app uint32) []roomTargets {
	var out []roomTargets
	index := make(map[string]int)
	for i := range sessions {
		ss := &sessions[i]
		if ss.Room == "" || !ss.HasApp(app) {
			continue
		}
		j, ok := index[ss.Room]
		if !ok {
			j = len(out)
			index[ss.Room] = j
			out = append(out, roomTargets{room: ss.Room})
		}
		out[j].targets = append(out[j].targets, push.Target{UID: ss.UID, ConnID: ss.ConnID})
	}
	return out
}

// deliver pushes msg to every group and returns how many targets the rooms
// reported connected. A failing room is logged and counted; a QoS 1 message
// stays stored for those users.
func (s *Service) deliver(ctx context.Context, msg push.Message, groups []roomTargets, kind string) int {
	online := 0
	for _, g := range groups {
		n, err := s.rooms.Push(ctx, g.room, msg, g.targets)
		if err != nil {
			roomErrors.WithLabelValues("push").Inc()
			s.log.Warn("center: room push", "room", g.room, "msg", msg.ID, "targets", len(g.targets), "err", err)
			continue
		}
		online += n
	}
	deliveries.WithLabelValues(kind).Add(float64(online))
	return online
}
