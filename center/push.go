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
	"sync"
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
	return messageOf(cfg, app, now, payload, f.QoS, f.TTL)
}

// messageOf checks the payload, qos and ttl (nil: not given) of a message
// against the app's limits and builds it (without its id).
func messageOf(cfg *config.Config, app *config.App, now time.Time, payload []byte, qosField, ttlField *int) (push.Message, *apiError) {
	if len(payload) > app.MaxPayload {
		return push.Message{}, tooLarge("payload of " + strconv.Itoa(len(payload)) + " bytes is over the app's max_payload of " + strconv.Itoa(app.MaxPayload))
	}
	qos := int(push.QoS1)
	if qosField != nil {
		qos = *qosField
	}
	if qos != int(push.QoS0) && qos != int(push.QoS1) {
		return push.Message{}, badRequest("qos must be 0 or 1")
	}
	ttl := cfg.Center.DefaultTTL
	if ttlField != nil {
		ttl = *ttlField
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
// A list without duplicates is returned as it is.
func cleanUIDs(uids []string, maxN int) ([]string, *apiError) {
	if len(uids) == 0 {
		return nil, badRequest("uids must name at least one user")
	}
	if len(uids) > maxN {
		return nil, badRequest("at most " + strconv.Itoa(maxN) + " uids per push")
	}
	for _, u := range uids {
		if e := checkUID(u); e != nil {
			return nil, e
		}
	}
	if !hasDup(uids) {
		return uids, nil
	}
	seen := make(map[string]struct{}, len(uids))
	out := make([]string, 0, len(uids))
	for _, u := range uids {
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		out = append(out, u)
	}
	return out, nil
}

// smallList is the length up to which hasDup compares every pair instead
// of building a set.
const smallList = 16

func hasDup(uids []string) bool {
	if len(uids) > smallList {
		seen := make(map[string]struct{}, len(uids))
		for _, u := range uids {
			if _, dup := seen[u]; dup {
				return true
			}
			seen[u] = struct{}{}
		}
		return false
	}
	for i := 1; i < len(uids); i++ {
		for _, v := range uids[:i] {
			if v == uids[i] {
				return true
			}
		}
	}
	return false
}

// handlePush serves POST /v1/apps/{app}/push: store (QoS 1), then either
// look up the sessions and push through their rooms (200) or, past the
// app's rate, leave the message to the app's send queue (202).
func (s *Service) handlePush(w http.ResponseWriter, r *http.Request) *apiError {
	cfg, app, e := appRequest(s.conf, r)
	if e != nil {
		return e
	}
	var fast fastPush
	req, e := decodePushBody(w, r, &fast)
	if e != nil {
		return e
	}
	var msg push.Message
	uidsIn := fast.uids
	if req != nil { // encoding/json decoded it
		uidsIn = req.UIDs
	}
	uids, e := cleanUIDs(uidsIn, app.MaxMulticast)
	if e != nil {
		return e
	}
	if req != nil {
		msg, e = req.message(cfg, app, time.Now())
	} else {
		msg, e = messageOf(cfg, app, time.Now(), fast.payload, fast.qosField(), fast.ttlField())
	}
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
		err := s.store.Save(s.pushCtx(), msg, uids)
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
	// From here the message is accepted: finish even if the caller leaves
	// (pushCtx has no parent but its deadline).
	stored := 0
	if msg.QoS == push.QoS1 {
		stored = len(uids)
	}
	// A recipient the register could not answer for is not "offline":
	// online counts only recipients reached through an answer. QoS 1
	// retries them, then queues them (retry.go); QoS 0 pushes to what was
	// answered and is refused only when nothing was.
	sessions, pending, err := s.lookup(s.pushCtx(), uids)
	if err != nil {
		depErrors.WithLabelValues("lookup").Inc()
		s.log.Warn("center push: lookup", "app", app.ID, "msg", msg.ID, "unanswered", len(pending), "err", err)
		if msg.QoS == push.QoS0 && len(pending) >= len(uids) { // nothing was done: say so
			return unavailable("session registry unavailable")
		}
	}
	online := 0
	if len(sessions) > 0 { // deliverSessions, on the shared deadline
		gs := groupsPool.Get().(*roomGroups)
		gs.g = groupInto(gs.g, sessions, msg.App)
		online = s.deliver(s.pushCtx(), msg, gs.g, "push")
		gs.put()
	}
	if msg.QoS == push.QoS1 && len(pending) > 0 {
		n, still := s.retryLookup(context.WithoutCancel(r.Context()), msg, pending)
		online += n
		if len(still) > 0 {
			s.enqueue(msg, still)
		}
	}
	s.apiPushes.Add(1)
	pushes.WithLabelValues(strconv.Itoa(int(msg.QoS))).Inc()
	writePushAnswer(w, msg.ID, online, stored)
	return nil
}

// writePushAnswer writes the 200 of a push as writeJSON(pushAnswer) would,
// without its allocations (the Header's own are net/http's).
func writePushAnswer(w http.ResponseWriter, id uint64, online, stored int) {
	bp := answerPool.Get().(*[]byte)
	b := append((*bp)[:0], `{"msg_id":"`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `","online":`...)
	b = strconv.AppendInt(b, int64(online), 10)
	b = append(b, `,"stored":`...)
	b = strconv.AppendInt(b, int64(stored), 10)
	b = append(b, "}\n"...)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	*bp = b
	answerPool.Put(bp)
}

// jsonContentType is the Content-Type header value of the push answer
// (net/http copies it when the header is written).
var jsonContentType = []string{"application/json"}

// answerPool holds the buffers push answers are built in.
var answerPool = sync.Pool{New: func() any { b := make([]byte, 0, 96); return &b }}

// roomTargets are the connections one room should reach.
type roomTargets struct {
	room    string
	targets []push.Target
}

// groupByRoom keeps the sessions that have app bound and groups them by
// room, in the order rooms first appear.
func groupByRoom(sessions []push.Session, app uint32) []roomTargets {
	return groupInto(nil, sessions, app)
}

// roomGroups holds the groups of one push, recycled (groupsPool): the
// rooms' Push does not keep its targets past its return (a remote room
// encodes them in the call).
type roomGroups struct{ g []roomTargets }

var groupsPool = sync.Pool{New: func() any { return new(roomGroups) }}

// Past these, a push's groups go to the GC instead of the pool.
const (
	maxPooledRooms   = 64
	maxPooledTargets = 1024
)

// put clears the groups (no uid or room kept alive) and gives them back.
func (gs *roomGroups) put() {
	n := 0
	for i := range gs.g {
		n += cap(gs.g[i].targets)
		clear(gs.g[i].targets)
		gs.g[i].room = ""
	}
	if cap(gs.g) > maxPooledRooms || n > maxPooledTargets {
		return
	}
	gs.g = gs.g[:0]
	groupsPool.Put(gs)
}

// groupInto is groupByRoom into out's arrays (out's own and its groups'
// targets, as put left them).
func groupInto(out []roomTargets, sessions []push.Session, app uint32) []roomTargets {
	out = out[:0]
	var index map[string]int // past smallList rooms; before, a scan
	for i := range sessions {
		ss := &sessions[i]
		if ss.Room == "" || !ss.HasApp(app) {
			continue
		}
		j := -1
		if index != nil {
			if k, ok := index[ss.Room]; ok {
				j = k
			}
		} else {
			for k := range out {
				if out[k].room == ss.Room {
					j = k
					break
				}
			}
		}
		if j < 0 {
			j = len(out)
			if j < cap(out) { // a pooled group: reuse its targets' array
				out = out[:j+1]
				out[j].room, out[j].targets = ss.Room, out[j].targets[:0]
			} else {
				out = append(out, roomTargets{room: ss.Room})
			}
			if index != nil {
				index[ss.Room] = j
			} else if len(out) > smallList {
				index = make(map[string]int, 2*len(out))
				for k := range out {
					index[out[k].room] = k
				}
			}
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
