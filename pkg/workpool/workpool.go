// Package workpool is a fixed set of resident worker goroutines fed by one
// bounded queue. Submitting never blocks: when the queue is full the caller is
// told at once, so it can push back (answer "overloaded") instead of piling
// up goroutines or memory. Event loops use it to hand off blocking work.
package workpool

import (
	"sync"
)

// Pool runs submitted functions on a fixed number of goroutines.
type Pool struct {
	tasks chan func()
	wg    sync.WaitGroup
	once  sync.Once
	mu    sync.RWMutex
	done  bool
}

// New starts workers goroutines behind a queue of queueLen tasks.
func New(workers, queueLen int) *Pool {
	if workers < 1 {
		workers = 1
	}
	if queueLen < 0 {
		queueLen = 0
	}
	p := &Pool{tasks: make(chan func(), queueLen)}
	p.wg.Add(workers)
	for i := 0; i < workers; i++ {
		go p.work()
	}
	return p
}

func (p *Pool) work() {
	defer p.wg.Done()
	for f := range p.tasks {
		f()
	}
}

// TrySubmit queues f and reports whether it was accepted. It is false when the
// queue is full or the pool is closed.
func (p *Pool) TrySubmit(f func()) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.done {
		return false
	}
	select {
	case p.tasks <- f:
		return true
	default:
		return false
	}
}

// Len returns the number of queued tasks.
func (p *Pool) Len() int { return len(p.tasks) }

// Close stops accepting tasks, runs the queued ones and waits for the workers.
func (p *Pool) Close() {
	p.once.Do(func() {
		p.mu.Lock()
		p.done = true
		close(p.tasks)
		p.mu.Unlock()
	})
	p.wg.Wait()
}
