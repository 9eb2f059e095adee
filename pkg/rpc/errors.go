package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc/wire"
)

// Local errors of a Call. ErrOverloaded and ErrUnavailable wrap the shared
// sentinels of pkg/push, so callers can test either.
var (
	// ErrOverloaded: the client already has MaxInFlight calls in flight to
	// this target. Nothing was sent.
	ErrOverloaded = fmt.Errorf("rpc: too many calls in flight: %w", push.ErrOverloaded)
	// ErrUnavailable: no connection to the target is up (it is down, or
	// draining before a restart). Nothing was sent; another instance may be
	// tried.
	ErrUnavailable = fmt.Errorf("rpc: no connection: %w", push.ErrUnavailable)
	// ErrConnLost: the connection broke while the call was in flight. The
	// server may or may not have run it; the caller decides about a retry.
	ErrConnLost = errors.New("rpc: connection lost")
	// ErrClosed: the client or server was closed.
	ErrClosed = fmt.Errorf("rpc: %w", push.ErrClosed)
	// ErrTooLarge: the encoded request (or reply) is over MaxFrame.
	ErrTooLarge = errors.New("rpc: message too large")
	// ErrUnknownMethod: the server has no handler for the method.
	ErrUnknownMethod = errors.New("rpc: unknown method")
	// ErrBadRequest: the server could not decode the request. A handler
	// returns it (or a wire.ErrMalformed) for a request it cannot parse.
	ErrBadRequest = errors.New("rpc: bad request")
)

// Error codes carried by error replies. Codes below CodeUser belong to this
// package; services number their own from CodeUser up.
const (
	CodeInternal      uint32 = 1 // the handler failed (or panicked)
	CodeOverloaded    uint32 = 2 // the server's queue is full; retry later
	CodeUnavailable   uint32 = 3 // the server is draining or a dependency is down
	CodeUnknownMethod uint32 = 4
	CodeBadRequest    uint32 = 5
	CodeDeadline      uint32 = 6 // the call's deadline passed before a worker took it
	CodeTooLarge      uint32 = 7 // the reply was over the frame limit

	CodeUser uint32 = 1000
)

// maxErrMsg bounds the message of an error reply.
const maxErrMsg = 1024

// Error is an error reply from the server: a code and a message. errors.Is
// matches it against the sentinel its code stands for (CodeOverloaded is
// push.ErrOverloaded and ErrOverloaded, and so on), and against any *Error
// with the same code, so a service can declare its own sentinels:
//
//	var ErrNoSession = rpc.NewError(rpc.CodeUser+1, "no session")
//
// A handler returns ErrNoSession (wrapped or not); the caller's
// errors.Is(err, ErrNoSession) holds on the other side.
type Error struct {
	Code uint32
	Msg  string
}

// NewError returns an *Error with code and msg.
func NewError(code uint32, msg string) *Error { return &Error{Code: code, Msg: msg} }

func (e *Error) Error() string {
	if e.Msg == "" {
		return "rpc: remote error " + strconv.FormatUint(uint64(e.Code), 10)
	}
	return "rpc: remote error " + strconv.FormatUint(uint64(e.Code), 10) + ": " + e.Msg
}

// Is reports whether target is the sentinel for e's code, or an *Error with
// the same code.
func (e *Error) Is(target error) bool {
	if t, ok := target.(*Error); ok {
		return t.Code == e.Code
	}
	switch e.Code {
	case CodeOverloaded:
		return target == push.ErrOverloaded || target == ErrOverloaded
	case CodeUnavailable:
		return target == push.ErrUnavailable || target == ErrUnavailable
	case CodeUnknownMethod:
		return target == ErrUnknownMethod
	case CodeBadRequest:
		return target == ErrBadRequest || target == wire.ErrMalformed
	case CodeDeadline:
		return target == context.DeadlineExceeded
	case CodeTooLarge:
		return target == ErrTooLarge
	}
	return false
}

// errorCode maps a handler's error to the code and message of its error
// reply.
func errorCode(err error) (uint32, string) {
	var re *Error
	switch {
	case errors.As(err, &re):
		return re.Code, re.Msg
	case errors.Is(err, push.ErrOverloaded):
		return CodeOverloaded, err.Error()
	case errors.Is(err, push.ErrUnavailable), errors.Is(err, push.ErrClosed), errors.Is(err, context.Canceled):
		return CodeUnavailable, err.Error()
	case errors.Is(err, ErrBadRequest), errors.Is(err, wire.ErrMalformed):
		return CodeBadRequest, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadline, err.Error()
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge, err.Error()
	}
	return CodeInternal, err.Error()
}

// appendError appends an error frame for call id.
func appendError(b []byte, method uint16, id uint64, code uint32, msg string) []byte {
	if len(msg) > maxErrMsg {
		msg = msg[:maxErrMsg]
	}
	start := len(b)
	b = appendHeader(b, header{kind: kindError, method: method, id: id, aux: code})
	b = append(b, msg...)
	_ = finishFrame(b, start, headerSize+maxErrMsg) // cannot exceed: msg was cut
	return b
}
