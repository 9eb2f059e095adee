package remote

import (
	"errors"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// ServeOption adjusts a server binding.
type ServeOption func(*serveOpts)

type errMap struct {
	local error
	code  uint32
}

type serveOpts struct {
	errs []errMap
}

// MapError makes a handler error that matches local (errors.Is) travel with
// remote's code, so that errors.Is(err, remote) holds for the caller. It is
// how a service sentinel this package cannot import crosses the wire:
//
//	remote.MapError(coordinator.ErrNoCallback, remote.ErrNoCallback)
//	remote.MapError(register.ErrInvalid, remote.ErrInvalid)
func MapError(local error, remote *rpc.Error) ServeOption {
	return func(o *serveOpts) { o.errs = append(o.errs, errMap{local: local, code: remote.Code}) }
}

func newServeOpts(opts []ServeOption) *serveOpts {
	o := &serveOpts{}
	for _, f := range opts {
		f(o)
	}
	return o
}

// wireErr turns a handler error into what the client should receive. An
// *rpc.Error inside err (a service passing on the failure of its own remote
// call) keeps its code, with err's whole text; push.ErrClosed gets CodeClosed (pkg/rpc alone would
// send it as CodeUnavailable); mapped sentinels get their codes; the rest is
// left to pkg/rpc.
func (o *serveOpts) wireErr(err error) error {
	if err == nil {
		return nil
	}
	var re *rpc.Error
	if errors.As(err, &re) {
		if err == error(re) {
			return err
		}
		return rpc.NewError(re.Code, err.Error()) // keep the context of the wrapping
	}
	for _, m := range o.errs {
		if errors.Is(err, m.local) {
			return rpc.NewError(m.code, err.Error())
		}
	}
	if errors.Is(err, push.ErrClosed) {
		return rpc.NewError(CodeClosed, err.Error())
	}
	return err
}

// closedError is an error reply with CodeClosed as the caller sees it: it
// matches the *rpc.Error (by code), push.ErrClosed and push.ErrUnavailable.
type closedError struct{ re *rpc.Error }

func (e *closedError) Error() string { return e.re.Error() }
func (e *closedError) Unwrap() []error {
	return []error{e.re, push.ErrClosed, push.ErrUnavailable}
}

// callErr turns what rpc.Client.Call returned into what a client method
// returns.
func callErr(err error) error {
	if err == nil {
		return nil
	}
	var re *rpc.Error
	if errors.As(err, &re) && re.Code == CodeClosed {
		return &closedError{re: re}
	}
	return err
}

// gone reports whether err means the instance is down or restarting, so that
// the call surely (rpc.ErrUnavailable, CodeUnavailable, CodeClosed) or maybe
// (rpc.ErrConnLost) did not take effect there.
func gone(err error) bool {
	return errors.Is(err, push.ErrUnavailable) || errors.Is(err, rpc.ErrConnLost) || errors.Is(err, push.ErrClosed)
}

// failover reports whether a call that failed with err may be sent to
// another instance: nothing was sent (rpc.ErrUnavailable), the instance
// refused it while draining or closed (CodeUnavailable, CodeClosed), or its
// own dependency is down (a handler error wrapping push.ErrUnavailable:
// trying once more elsewhere is harmless).
func failover(err error) bool { return errors.Is(err, push.ErrUnavailable) }
