package center

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxBody bounds every request body; a data payload of 1 MiB (the largest
// max_payload) is 1.4 MiB in base64.
const maxBody = 2 << 20

// apiError is an error answer of API.md.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration // 429: the Retry-After header
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func badRequest(msg string) *apiError { return &apiError{http.StatusBadRequest, "bad_request", msg, 0} }
func notFound(msg string) *apiError   { return &apiError{http.StatusNotFound, "not_found", msg, 0} }
func tooLarge(msg string) *apiError {
	return &apiError{http.StatusRequestEntityTooLarge, "too_large", msg, 0}
}
func forbidden(msg string) *apiError { return &apiError{http.StatusForbidden, "forbidden", msg, 0} }
func unauthorized() *apiError {
	return &apiError{http.StatusUnauthorized, "unauthorized", "missing or unknown API key", 0}
}
func unavailable(msg string) *apiError {
	return &apiError{http.StatusServiceUnavailable, "unavailable", msg, 0}
}
func rateLimited(msg string, after time.Duration) *apiError {
	return &apiError{http.StatusTooManyRequests, "rate_limited", msg, after}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
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

func writeError(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable {
		secs := int64(1)
		if e.retryAfter > time.Second {
			secs = int64((e.retryAfter + time.Second - 1) / time.Second)
		}
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeJSON(w, e.status, errorBody{Error: errorDetail{Code: e.code, Message: e.msg}})
}

// decodeBody reads one JSON object into v: unknown fields, trailing data and
// bodies over maxBody are refused. With allowEmpty an empty body leaves v
// as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) *apiError {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return nil
		}
		if err == nil {
			return badRequest("trailing data after the JSON body")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return tooLarge("request body over 2 MiB")
	case errors.Is(err, io.EOF) && allowEmpty:
		return nil
	case errors.Is(err, io.EOF):
		return badRequest("empty body, a JSON object is required")
	}
	return badRequest("invalid JSON body: " + err.Error())
}

// statusRecorder remembers the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// recorderPool recycles the statusRecorders of requests: a handler never
// keeps its ResponseWriter past its return (net/http's rule).
var recorderPool = sync.Pool{New: func() any { return new(statusRecorder) }}

// statusCodes are the decimal forms of the status codes, built once:
// strconv.Itoa allocates one of three digits for every request.
var statusCodes = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

// statusCode is strconv.Itoa(code) without an allocation for 0-599.
func statusCode(code int) string {
	if code >= 0 && code < len(statusCodes) {
		return statusCodes[code]
	}
	return strconv.Itoa(code)
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// handlerFunc is an endpoint: it writes a success answer or returns an error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) *apiError

// routes builds the API mux. Every pattern also gets a method-less twin that
// answers 405 in the JSON error form, and unknown paths answer 404 likewise.
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	add := func(method, path, endpoint string, h handlerFunc) {
		mux.Handle(method+" "+path, s.instrument(endpoint, h))
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", method)
			writeError(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", "use " + method, 0})
		})
	}
	add(http.MethodPost, "/v1/apps/{app}/push", "push", s.handlePush)
	add(http.MethodPost, "/v1/apps/{app}/broadcast", "broadcast", s.handleBroadcast)
	add(http.MethodGet, "/v1/jobs/{job}", "job", s.handleJob)
	add(http.MethodGet, "/v1/messages/{msg}", "message", s.handleMessage)
	add(http.MethodGet, "/v1/apps/{app}/users/{uid}", "user", s.handleUser)
	add(http.MethodPost, "/v1/apps/{app}/users/{uid}/kick", "kick", s.handleKick)
	add(http.MethodPost, "/v1/apps/{app}/tokens", "token", s.handleToken)
	add(http.MethodGet, "/v1/stats", "stats", s.handleStats)
	add(http.MethodGet, "/v1/apps/{app}/queue", "queue", s.handleQueue)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, notFound("no such endpoint"))
	})
	return mux
}

// instrument turns a handlerFunc into a handler that writes its error and
// counts the request by endpoint and status code.
func (s *Service) instrument(endpoint string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := recorderPool.Get().(*statusRecorder)
		rec.ResponseWriter, rec.status = w, 0
		if e := h(rec, r); e != nil {
			writeError(rec, e)
		}
		status := rec.status
		*rec = statusRecorder{} // keeps no ResponseWriter alive
		recorderPool.Put(rec)
		requests.WithLabelValues(endpoint, statusCode(status)).Inc()
		latency.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	})
}
