package saver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/pkg/push"
)

// pipeliner sends the per-user commands of every caller through a few
// resident workers, each of which takes whatever is queued (up to max
// commands) and sends it as one pipeline: concurrent Saves, Loads and ACKs
// of different users share round trips instead of taking one each. With
// max 1 every command is its own round trip (the benchmark's baseline).
//
// A context is checked before a command is queued; a pipeline under way is
// not abandoned (it has its own timeout), so callers always learn the
// outcome of what they queued and can account for it.
type pipeliner struct {
	rc      redis.UniversalClient
	ops     chan *pipeOp
	max     int
	timeout time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup
}

type pipeKind uint8

const (
	pipeScript pipeKind = iota
	pipeHGetAll
	pipeHKeys
	pipeHMGet
)

// pipeOp is one command on one key.
type pipeOp struct {
	kind   pipeKind
	script *redis.Script
	key    string
	key2   string // a second key of a script (same hash slot as key), or ""
	args   []any
	fields []string // HMGET

	res  any               // script reply
	vals []any             // HMGET reply: a string or nil per field
	hash map[string]string // HGETALL reply
	keys []string          // HKEYS reply
	err  error

	grp *opGroup
}

// opGroup is the commands of one call: the caller waits for all of them.
type opGroup struct {
	left atomic.Int32
	done chan struct{}
}

func (g *opGroup) finish(n int32) {
	if g.left.Add(-n) == 0 {
		close(g.done)
	}
}

func newPipeliner(rc redis.UniversalClient, workers, max, queue int, timeout time.Duration) *pipeliner {
	p := &pipeliner{rc: rc, ops: make(chan *pipeOp, queue), max: max, timeout: timeout, stop: make(chan struct{})}
	for range workers {
		p.wg.Go(p.worker)
	}
	return p
}

// close stops the workers once no caller is inside do (the store's
// in-flight count guarantees that).
func (p *pipeliner) close() {
	close(p.stop)
	p.wg.Wait()
}

// do queues ops and waits for all queued ones to complete. Ops it could not
// queue before ctx ended carry ctx's error, which do also returns.
func (p *pipeliner) do(ctx context.Context, ops ...*pipeOp) error {
	if len(ops) == 0 {
		return nil
	}
	g := &opGroup{done: make(chan struct{})}
	g.left.Store(int32(len(ops)))
	var err error
	for i, op := range ops {
		op.grp = g
		if err == nil {
			select {
			case p.ops <- op:
				continue
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		for _, rest := range ops[i:] {
			rest.err = err
		}
		g.finish(int32(len(ops) - i))
		break
	}
	<-g.done
	return err
}

func (p *pipeliner) worker() {
	batch := make([]*pipeOp, 0, p.max)
	for {
		select {
		case <-p.stop:
			return
		case op := <-p.ops:
			batch = append(batch[:0], op)
		}
	fill:
		for len(batch) < p.max {
			select {
			case op := <-p.ops:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		p.exec(batch)
		for _, op := range batch {
			op.grp.finish(1)
		}
		clear(batch)
	}
}

// exec sends one pipeline; scripts the server does not know (a restarted
// or flushed Redis) are sent again in full.
func (p *pipeliner) exec(batch []*pipeOp) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	p.run(ctx, batch, false)
	var retry []*pipeOp
	for _, op := range batch {
		if op.kind == pipeScript && redis.HasErrorPrefix(op.err, "NOSCRIPT") {
			retry = append(retry, op)
		}
	}
	if len(retry) > 0 {
		p.run(ctx, retry, true)
	}
}

func (p *pipeliner) run(ctx context.Context, batch []*pipeOp, full bool) {
	pipe := p.rc.Pipeline()
	cmds := make([]redis.Cmder, len(batch))
	for i, op := range batch {
		keys := []string{op.key}
		if op.key2 != "" {
			keys = append(keys, op.key2)
		}
		switch {
		case op.kind == pipeHGetAll:
			cmds[i] = pipe.HGetAll(ctx, op.key)
		case op.kind == pipeHKeys:
			cmds[i] = pipe.HKeys(ctx, op.key)
		case op.kind == pipeHMGet:
			cmds[i] = pipe.HMGet(ctx, op.key, op.fields...)
		case full:
			cmds[i] = op.script.Eval(ctx, pipe, keys, op.args...)
		default:
			cmds[i] = op.script.EvalSha(ctx, pipe, keys, op.args...)
		}
	}
	_, _ = pipe.Exec(ctx) // errors are per command
	for i, op := range batch {
		switch c := cmds[i].(type) {
		case *redis.MapStringStringCmd:
			op.hash, op.err = c.Result()
		case *redis.StringSliceCmd:
			op.keys, op.err = c.Result()
		case *redis.SliceCmd:
			op.vals, op.err = c.Result()
		case *redis.Cmd:
			op.res, op.err = c.Result()
		}
	}
}

// redisErr classifies an error of a Redis call: the server or the network
// failing (not the command) wraps push.ErrUnavailable, so that center
// answers 503 and callers retry later. A pipeline's own timeout counts as
// failing; a caller's cancelled context does not.
func redisErr(err error) error {
	var rerr redis.Error
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &rerr) && !transientReply(rerr.Error()):
		return err
	}
	return fmt.Errorf("%w: %w", push.ErrUnavailable, err)
}

// transientReply: server replies that mean "not now" rather than "wrong".
func transientReply(msg string) bool {
	for _, p := range []string{"LOADING", "OOM", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "BUSY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
