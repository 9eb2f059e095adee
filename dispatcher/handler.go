package dispatcher

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/lcpush/lcpush/pkg/push"
)

// maxFailed bounds the failed addresses considered from one request.
const maxFailed = 64

type dispatchAnswer struct {
	Addrs []string `json:"addrs"`
	TTL   int      `json:"ttl"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dispatch", s.handleDispatch)
	mux.HandleFunc("/v1/dispatch", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	return mux
}

// handleDispatch answers
// GET /v1/dispatch?uid=U&app=A&net=N&retry=R&failed=a,b&transport=T.
func (s *Service) handleDispatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := request{uid: q.Get("uid")}
	code, msg := "", ""
	// The platform's one uid rule (push.CheckUID): a uid the room would
	// refuse at login gets no addresses.
	switch err := push.CheckUID(req.uid); {
	case req.uid == "":
		code, msg = "bad_request", "uid is required"
	case err != nil:
		code, msg = "bad_request", "uid must be 1.."+strconv.Itoa(push.MaxUIDLen)+
			" bytes of valid UTF-8 without control characters: "+err.Error()
	}
	if app := q.Get("app"); code == "" && app != "" {
		if _, err := strconv.ParseUint(app, 10, 32); err != nil {
			code, msg = "bad_request", "app must be a decimal app id"
		}
	}
	if rs := q.Get("retry"); code == "" && rs != "" {
		n, err := strconv.Atoi(rs)
		if err != nil || n < 0 {
			code, msg = "bad_request", "retry must be a non-negative integer"
		}
		req.retry = n
	}
	if code == "" {
		var ok bool
		if req.transport, ok = parseTransport(q.Get("transport")); !ok {
			code, msg = "bad_request", "transport must be one of "+strings.Join(push.Transports, ", ")+
				" (default tcp), not "+strconv.Quote(truncate(q.Get("transport"), 32))
		}
	}
	if code != "" {
		requests.WithLabelValues("400").Inc()
		writeError(w, http.StatusBadRequest, code, msg)
		return
	}
	for _, f := range q["failed"] {
		for _, a := range strings.Split(f, ",") {
			if a = strings.TrimSpace(a); a == "" || len(req.failed) >= maxFailed {
				continue
			}
			// host:port for every transport; a client that names the
			// URL it failed on is understood too.
			a = push.HostPort(a)
			if req.failed == nil {
				req.failed = make(map[string]bool)
			}
			req.failed[a] = true
		}
	}
	if req.retry > 0 || len(req.failed) > 0 {
		retries.Inc()
	}
	members := s.members.Members(RoleRoom)
	addrs := pick(members, req, s.cfg.MaxAddrs)
	if len(addrs) == 0 {
		// Which transport is missing, unless there is no room at all and
		// the client asked for the default.
		msg := "no live room"
		if len(members) > 0 || req.transport != push.TransportTCP {
			msg += " serves transport " + req.transport
		}
		requests.WithLabelValues("503").Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", msg)
		return
	}
	requests.WithLabelValues("200").Inc()
	netRequests.WithLabelValues(netLabel(q.Get("net"))).Inc()
	transportAnswers.WithLabelValues(req.transport).Inc()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, dispatchAnswer{Addrs: addrs, TTL: s.cfg.TTL})
}

// parseTransport reads the transport parameter: empty is TCP; the names are
// those of push.Transports, in any case.
func parseTransport(t string) (string, bool) {
	if t == "" {
		return push.TransportTCP, true
	}
	t = strings.ToLower(t)
	if !slices.Contains(push.Transports, t) {
		return "", false
	}
	return t, true
}

// truncate bounds a client's value quoted back in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// netLabel bounds the metric label to a few known network types.
func netLabel(n string) string {
	switch n = strings.ToLower(n); n {
	case "wifi", "2g", "3g", "4g", "5g", "ethernet":
		return n
	case "":
		return "unknown"
	}
	return "other"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types reach here
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}
