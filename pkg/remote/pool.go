package remote

import (
	"errors"
	"sync"
	"time"

	"github.com/lcpush/lcpush/pkg/rpc"
)

// Pool holds one shared *rpc.Client per address, created on first use. Every
// cluster client of a process shares one Pool, so each target gets one set
// of connections however many services call it.
//
// A client not asked for during IdleAfter is closed by a later Get (no
// goroutine sweeps): instances that left for good, e.g. a room restarted on
// another port, do not keep redialing forever.
type Pool struct {
	cfg rpc.ClientConfig

	mu      sync.Mutex
	clients map[string]*pooled
	swept   time.Time
	closed  bool
}

type pooled struct {
	c        *rpc.Client
	lastUsed time.Time
}

// IdleAfter is how long a pooled client may go unused before it is closed.
const IdleAfter = 10 * time.Minute

// NewPool returns an empty pool whose clients use cfg (its Addr is ignored).
func NewPool(cfg rpc.ClientConfig) *Pool {
	return &Pool{cfg: cfg, clients: make(map[string]*pooled), swept: time.Now()}
}

// Get returns the client for addr, creating it if needed. It fails with
// rpc.ErrClosed after Close.
func (p *Pool) Get(addr string) (*rpc.Client, error) {
	if addr == "" {
		return nil, errors.New("remote: empty rpc address")
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, rpc.ErrClosed
	}
	if pc := p.clients[addr]; pc != nil {
		pc.lastUsed = now
		c := pc.c
		p.mu.Unlock()
		return c, nil
	}
	idle := p.sweepLocked(now)
	cfg := p.cfg
	cfg.Addr = addr
	c, err := rpc.NewClient(cfg)
	if err == nil {
		p.clients[addr] = &pooled{c: c, lastUsed: now}
		mPoolClients.Inc()
	}
	p.mu.Unlock()
	closeAll(idle)
	return c, err
}

// sweepLocked removes and returns the clients idle past IdleAfter, at most
// once a minute.
func (p *Pool) sweepLocked(now time.Time) []*rpc.Client {
	if now.Sub(p.swept) < time.Minute {
		return nil
	}
	p.swept = now
	var idle []*rpc.Client
	for addr, pc := range p.clients {
		if now.Sub(pc.lastUsed) > IdleAfter {
			idle = append(idle, pc.c)
			delete(p.clients, addr)
			mPoolClients.Dec()
		}
	}
	return idle
}

// Len returns the number of clients held.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

// Close closes every client and makes Get fail. It is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	all := make([]*rpc.Client, 0, len(p.clients))
	for _, pc := range p.clients {
		all = append(all, pc.c)
	}
	clear(p.clients)
	mPoolClients.Sub(float64(len(all)))
	p.mu.Unlock()
	closeAll(all)
	return nil
}

func closeAll(cs []*rpc.Client) {
	for _, c := range cs {
		_ = c.Close()
	}
}
