package saver

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	bolt "go.etcd.io/bbolt"
)

// groupCommit shares bbolt commits between concurrent writers without a
// timer. bbolt's own Batch holds every write for MaxBatchDelay before its
// commit, so a lone write waits the delay plus the fsync; here a write that
// finds no commit under way commits at once, and the writes that arrive
// while a commit is under way all go into the next one. A busy store then
// commits as often as its fsync allows, each commit carrying what queued
// meanwhile; an idle one pays one commit per write.
//
// The writer that starts a commit (the leader) runs it on its own
// goroutine, so no goroutine is owned here. After its commit it hands the
// lead to the first queued writer, which is then the first of the next
// batch: each writer waits for at most the commit under way and its own.
//
// Semantics are bbolt Batch's: a function may run more than once (when
// another function of its batch fails, the batch is run again without
// that one, which then runs in a transaction of its own), so functions
// must be idempotent and reset what they report on each run.
type groupCommit struct {
	db  *bolt.DB
	max int // calls per commit

	mu      sync.Mutex
	queue   []*commitCall
	leading bool // a writer holds the lead: queue[0], once queued, leads next

	batch []*commitCall // the leader's, reused: one leader at a time
}

type commitCall struct {
	fn   func(*bolt.Tx) error
	done chan error // cap 1: one result, or errLead
	err  error      // the leader's own result
}

var (
	// errLead tells a queued writer that it leads the next commit.
	errLead = errors.New("saver: lead the next commit")
	// errSolo tells a writer that its function failed in a shared commit
	// and must run in a transaction of its own (bbolt's trySolo).
	errSolo = errors.New("saver: run alone")
)

var callPool = sync.Pool{New: func() any { return &commitCall{done: make(chan error, 1)} }}

var (
	metricCommits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_bolt_commits_total",
		Help: "Write transactions the embedded store committed for its writers (one fsync each).",
	})
	metricCommitCalls = promauto.NewCounter(prometheus.CounterOpts{
		Name: "lcpush_saver_bolt_commit_calls_total",
		Help: "Writes those commits carried: calls / commits is the group commit's batch size.",
	})
)

func newGroupCommit(db *bolt.DB, max int) *groupCommit {
	return &groupCommit{db: db, max: max}
}

// do runs fn in a shared write transaction and returns once it is
// committed (or failed).
func (g *groupCommit) do(fn func(*bolt.Tx) error) error {
	c := callPool.Get().(*commitCall)
	c.fn, c.err = fn, nil
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	var err error
	if !lead {
		err = <-c.done
		lead = err == errLead
	}
	if lead {
		g.lead()
		err = c.err
	}
	c.fn, c.err = nil, nil
	callPool.Put(c)
	if err == errSolo {
		err = g.db.Update(fn)
	}
	return err
}

// lead commits one batch from the head of the queue (the leader is its
// first call) and passes the lead on.
func (g *groupCommit) lead() {
	g.mu.Lock()
	n := min(len(g.queue), g.max)
	batch := append(g.batch[:0], g.queue[:n]...)
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	g.mu.Unlock()

	self := batch[0]
	metricCommits.Inc()
	metricCommitCalls.Add(float64(n))
	for len(batch) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range batch {
				if err := callSafely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			g.answer(self, batch[failed], errSolo)
			batch = append(batch[:failed], batch[failed+1:]...)
			continue
		}
		for _, c := range batch {
			g.answer(self, c, err)
		}
		break
	}

	clear(batch[:cap(batch)])
	g.batch = batch[:0]
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.leading = false
		g.mu.Unlock()
		return
	}
	next := g.queue[0]
	g.mu.Unlock()
	next.done <- errLead
}

func (g *groupCommit) answer(self, c *commitCall, err error) {
	if c == self {
		c.err = err
		return
	}
	c.done <- err
}

// callSafely turns a panic of fn into its error, so that the writers
// sharing its commit are answered (bbolt's Batch does the same).
func callSafely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("saver: write panicked: %v", p)
		}
	}()
	return fn(tx)
}
