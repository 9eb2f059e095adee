package saver

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lcpush/lcpush/pkg/push"
)

// Ack implements Store: one script deletes the entries of apps from the
// user's hash and writes the broadcast cursors of apps the ACKed
// broadcasts moved (read first by one HMGET, only when the call names a
// broadcast); the MySQL deletes follow through the queue. A broadcast ACK
// queues no MySQL row: the Redis cursor is the live copy, and Checkpoint
// (redis_checkpoint.go) writes it to MySQL when the session ends, so a
// broadcast ACKed by every online user costs MySQL nothing at the ACK. Ids
// that take no effect (unknown, other apps', broadcasts ACKed already)
// queue nothing and, on a hash of the current epoch, write nothing to Redis.
// An id the broadcast cache lacks (another saver may have just stored it) is
// looked up again after a refresh (refreshForAck); a refresh that fails
// fails the call, so the room retries instead of the ACK being lost.
//
// A hash not of the current epoch (Redis lost data since the user was last
// filled) may lack entries MySQL holds. Its unknown ids are not taken as
// unknown at once: the user is first reloaded from MySQL (two indexed
// reads, once per user and epoch: the hash is then current) and the ids
// are ACKed again, so the deletes are queued only for entries that exist.
// Only when the reload cannot be done (MySQL down) does the ACK queue, for
// each unknown id, a MySQL delete restricted to apps (a row per id, to be
// written when MySQL is back) and leave tombstones for a reload to respect.
func (r *RedisStore) Ack(ctx context.Context, uid string, apps []uint32, ids []uint64) (int, error) {
	if err := checkUID(uid); err != nil {
		return 0, fmt.Errorf("saver ack: %w", err)
	}
	if !r.enter() {
		return 0, fmt.Errorf("saver ack %s: %w", uid, ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	if len(apps) == 0 || len(ids) == 0 {
		return 0, nil
	}
	if !r.dur.reserve(len(ids), true) {
		return 0, fmt.Errorf("saver ack %s: %w", uid, refused(opAck))
	}
	// Refreshes started after this point see every broadcast the client
	// can be ACKing: it was stored before the room delivered it.
	mark := r.ackSync.mark()
	set := appSet(apps)
	tomb := r.dur.down() // no reload possible: tombstone unknown ids at once
	// Delivery status of the unicast ids, in the same round trip as the
	// ACK (broadcast ACKs are counted from its result: ackOnce).
	var status []*pipeOp
	for _, id := range ids {
		if _, bcast := r.bc.get(id); !bcast {
			status = append(status, r.statusStep(id, "a", set, 0, uid))
		}
	}
	res, err := r.ackOnce(ctx, uid, set, apps, ids, tomb, status...)
	r.logStatus(status...)
	if err == nil && len(res.unknown) > 0 {
		// Another saver may have stored a broadcast this cache lacks: look
		// every unknown id up again after a refresh, whether this call's or
		// another's (the periodic sync may have loaded it meanwhile).
		if rerr := r.refreshForAck(ctx, mark); rerr != nil {
			err = fmt.Errorf("refresh broadcasts: %w", rerr)
		}
		var known, still []uint64
		for _, id := range res.unknown {
			if _, ok := r.bc.get(id); ok && r.bc.seq(id) != 0 && err == nil {
				known = append(known, id)
			} else {
				still = append(still, id)
			}
		}
		if len(known) > 0 {
			again, err2 := r.ackOnce(ctx, uid, set, apps, known, tomb)
			res.n += again.n
			res.rows = append(res.rows, again.rows...)
			res.unknown = append(still, again.unknown...)
			err = err2
		}
	}
	if err == nil && !res.fresh && len(res.unknown) > 0 {
		if !tomb {
			if rerr := r.reload(ctx, uid, *r.epoch.Load()); rerr != nil {
				metricReloads.WithLabelValues("failed").Inc()
				r.log.Debug("saver: reload for an ack failed", "uid", truncate(uid), "err", rerr)
				tomb = true
			} else {
				metricReloads.WithLabelValues("ok").Inc()
			}
			again, err2 := r.ackOnce(ctx, uid, set, apps, res.unknown, tomb)
			res.n += again.n
			res.rows = append(res.rows, again.rows...)
			res.unknown, res.fresh = again.unknown, again.fresh
			err = err2
		}
		if err == nil && !res.fresh && len(res.unknown) > 0 {
			// Still not reloaded: MySQL may hold entries Redis does not,
			// so delete the ids there, but only entries of apps.
			own := slices.Clone(apps)
			for _, id := range res.unknown {
				res.rows = append(res.rows, drow{op: dDeleteIn, uid: uid, id: id, apps: own})
			}
		}
	}
	// At most one row per distinct id: the reservation covers them.
	r.dur.release(len(ids) - len(res.rows))
	r.dur.enqueue(res.rows, false)
	if err != nil {
		return res.n, fmt.Errorf("saver ack %s: %w", uid, err)
	}
	return res.n, nil
}

// appSet is apps as scriptAck takes them: ",1,2,".
func appSet(apps []uint32) string {
	b := make([]byte, 0, 1+6*len(apps))
	b = append(b, ',')
	for _, a := range apps {
		b = strconv.AppendUint(b, uint64(a), 10)
		b = append(b, ',')
	}
	return string(b)
}

type ackResult struct {
	n       int
	fresh   bool     // the hash carries the current epoch
	rows    []drow   // unicast deletes (never cursor rows: Checkpoint writes those)
	unknown []uint64 // ids that took no effect and are no known broadcast (with a seq) or other app's entry
}

// ackOnce runs scriptAck for ids on behalf of apps (set: appSet(apps)).
// ids of known broadcasts of apps are ACKed in their cursors: read first
// (one HMGET of the cursor fields and the ids' previous-version records),
// changed here, written by the same script with a compare-and-set, and
// read again if another call changed them meanwhile. A known broadcast of
// another app is left out of the call.
func (r *RedisStore) ackOnce(ctx context.Context, uid, set string, apps []uint32, ids []uint64, tomb bool, extra ...*pipeOp) (ackResult, error) {
	type bref struct {
		id, seq uint64
		app     uint32
	}
	var uni, noseq []uint64
	var bcasts []bref
	seen := map[uint64]bool{}
	now := time.Now().Unix()
	for _, id := range ids {
		m, ok := r.bc.get(id)
		if !ok {
			uni = append(uni, id)
			continue
		}
		seq := r.bc.seq(id)
		if !hasApp(apps, m.App) || m.Expired(now) || seen[id] {
			// Another app's broadcast: as if unknown. An expired one
			// (never delivered again anyway): nothing to record.
			continue
		}
		seen[id] = true
		if seq == 0 {
			// Not given a seq yet (the previous version's): unknown, for
			// Ack to look up again after a refresh, which gives it one.
			noseq = append(noseq, id)
			continue
		}
		bcasts = append(bcasts, bref{id, seq, m.App})
	}
	if len(uni) == 0 && len(bcasts) == 0 {
		return ackResult{fresh: true, unknown: noseq}, nil // only other apps' broadcasts
	}
	var fields []string
	if len(bcasts) > 0 {
		fapps := map[uint32]bool{}
		for _, b := range bcasts {
			if !fapps[b.app] {
				fapps[b.app] = true
				fields = append(fields, cursorField(b.app))
			}
			fields = append(fields, "b"+id8(b.id))
		}
	}
	key := r.k.user(uid)
	for try := range casRetries {
		if err := casBackoff(ctx, try); err != nil {
			return ackResult{}, err
		}
		var cas []any
		var newly []uint64
		if len(fields) > 0 {
			read := &pipeOp{kind: pipeHMGet, key: key, fields: fields}
			if err := r.pipe.do(ctx, read); err != nil {
				return ackResult{}, err
			}
			if read.err != nil {
				return ackResult{}, redisErr(read.err)
			}
			curs, legacy, _ := parseCursorFields(fields, read.vals)
			p := newCursorPlan(r, uid, curs, legacy, now)
			p.foldLegacy()
			for _, b := range bcasts {
				if p.cursor(b.app).ack(b.seq) {
					newly = append(newly, b.id)
				}
			}
			// The cursor rows finish plans are left to Checkpoint.
			cas, _ = p.finish()
		}
		args := make([]any, 0, 7+len(cas)+len(uni))
		args = append(args, *r.epoch.Load(), now, r.idle(), set, boolDigit(tomb), r.keepFor(cas, now), casCount(cas))
		args = append(args, cas...)
		for _, id := range uni {
			args = append(args, id8(id))
		}
		if len(uni) == 0 && len(cas) == 0 {
			return ackResult{fresh: true, unknown: noseq}, nil // broadcasts ACKed already: nothing to write
		}
		op := &pipeOp{kind: pipeScript, script: scriptAck, key: key, args: args}
		err := r.pipe.do(ctx, append([]*pipeOp{op}, extra...)...)
		extra = nil // the delivery status steps ran: once is enough
		if err != nil {
			return ackResult{}, err
		}
		l, err := op.list()
		if err != nil || len(l) < 2 {
			return ackResult{}, cmpErr(nil, err)
		}
		if asInt(l[1]) != 1 {
			continue // a cursor changed since the read
		}
		res := ackResult{fresh: asInt(l[0]) == 1, unknown: noseq}
		for _, id := range newly {
			res.n++
			r.sacc.add(id, 1) // delivery status, sent every CounterEvery
		}
		done := map[uint64]bool{}
		for i := 2; i+2 < len(l); i += 3 {
			s := asString(l[i])
			id, ok := parseID8(s[min(1, len(s)):])
			if !ok {
				continue
			}
			done[id] = true
			if s[0] == 'u' {
				res.n++
				res.rows = append(res.rows, drow{op: dDelete, uid: uid, id: id,
					cd: cdelta{app: uint32(asInt(l[i+1])), pend: -1, park: -int8(asInt(l[i+2]))}})
				r.acked.Add(1)
			}
		}
		for _, id := range uni {
			if !done[id] {
				done[id] = true // once per repeated id
				res.unknown = append(res.unknown, id)
			}
		}
		return res, nil
	}
	return ackResult{}, errCursorBusy
}

// ackRefresh runs the broadcast refreshes of ACKs one at a time: callers
// join the refresh in flight when it started after they did (it sees what
// they need), else wait for it and start the next, so a burst of unknown
// ids costs one small read per refresh, and no caller gives up on an id a
// refresh would have found.
type ackRefresh struct {
	started atomic.Int64 // refreshes started so far
	mu      sync.Mutex
	cur     *refreshFlight // the latest refresh started (nil: none yet)
}

type refreshFlight struct {
	num  int64
	done chan struct{} // closed when err is set
	err  error
}

// mark returns what refreshForAck takes: refreshes started later are recent enough.
func (a *ackRefresh) mark() int64 { return a.started.Load() }

// refreshForAck returns once a broadcast refresh started after mark (taken
// at the start of the call) has finished: this caller's, or a concurrent
// one's. The refresh runs on a context detached from the caller's (others
// may be waiting on it), bounded by ReadTimeout.
func (r *RedisStore) refreshForAck(ctx context.Context, mark int64) error {
	a := &r.ackSync
	for {
		a.mu.Lock()
		f := a.cur
		if f == nil || (f.num <= mark && isClosed(f.done)) {
			f = &refreshFlight{num: a.started.Add(1), done: make(chan struct{})}
			a.cur = f
			a.mu.Unlock()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.ReadTimeout)
			_, f.err = r.syncBroadcasts(rctx, false)
			cancel()
			close(f.done)
			return f.err
		}
		a.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if f.num > mark {
			return f.err
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ackManyParallel is how many of an AckMany's uids RedisStore ACKs at once:
// their scripts share the pipeliner's round trips (Options.Pipeline
// commands each), so a batch of ACKs costs a few round trips, not one per
// entry.
const ackManyParallel = 64

// AckMany implements Store: the entries of each uid in order, as Ack would
// take them, different uids concurrently (ackManyParallel at once), so that
// their scripts and reads ride the same pipelines; the MySQL deletes of all
// of them go through the durable queue's batches as Ack's do. A failed
// entry does not stop the others: the call returns the count of those that
// took effect and the first error (the caller retries the whole call).
func (r *RedisStore) AckMany(ctx context.Context, acks []push.AckReq) (int, error) {
	if err := checkAcks(acks); err != nil {
		return 0, fmt.Errorf("saver ack many: %w", err)
	}
	if !r.enter() {
		return 0, fmt.Errorf("saver ack many: %w", ErrClosed)
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("saver ack many: %w", err)
	}
	// The entries of each uid, in call order; uids in order of first use.
	var order []string
	byUID := make(map[string][]int, len(acks))
	for i := range acks {
		a := &acks[i]
		if len(a.Apps) == 0 || len(a.IDs) == 0 {
			continue
		}
		if _, ok := byUID[a.UID]; !ok {
			order = append(order, a.UID)
		}
		byUID[a.UID] = append(byUID[a.UID], i)
	}
	var total atomic.Int64
	var mu sync.Mutex
	var first error
	run := func(uid string) {
		for _, i := range byUID[uid] {
			a := &acks[i]
			n, err := r.Ack(ctx, a.UID, a.Apps, a.IDs)
			total.Add(int64(n))
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}
	}
	if len(order) == 1 {
		run(order[0])
	} else {
		sem := make(chan struct{}, ackManyParallel)
		var wg sync.WaitGroup
		for _, uid := range order {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				run(uid)
			})
		}
		wg.Wait()
	}
	if first != nil {
		return int(total.Load()), fmt.Errorf("saver ack many (%d entries): %w", len(acks), first)
	}
	return int(total.Load()), nil
}
