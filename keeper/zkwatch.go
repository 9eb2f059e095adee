package keeper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// retryEvery is how soon a pass that could not finish is tried again.
const retryEvery = time.Second

var (
	errNoSession = errors.New("keeper zk: no session")
	errHeld      = errors.New("keeper zk: member znode held by another session")
)

// zkBackend keeps a Service in step with ZooKeeper: it hot-reloads the
// configuration, publishes this process's members as ephemeral znodes and
// mirrors every member into the Directory. One goroutine does all of it in
// passes. ZooKeeper events and directory changes only mark what is stale and
// wake it, so the work is level-triggered: whatever a lost connection or an
// expired session undid (watches, ephemerals) the next pass redoes.
type zkBackend struct {
	cli *ZKClient
	svc *Service
	log *slog.Logger

	wake chan struct{}

	evMu   sync.Mutex
	events []zk.Event  // node events not yet applied by a pass
	lost   atomic.Bool // the connection or session was lost since the last pass
	now    func() time.Time

	mu       sync.Mutex // one pass at a time; guards what follows
	session  int64      // the session the state below belongs to
	cfgArmed bool       // a watch on the config znode is set
	cfgZxid  int64      // Mzxid of the configuration last applied or refused
	cfgErr   error      // why that configuration was refused, or nil
	watched  map[string]bool
	mirror   map[string]map[string]*push.Member // role -> id -> member; nil: not read or undecodable
	written  map[string][]byte                  // own member znodes written in this session
	parents  map[string]bool                    // role znodes known to exist
	held     map[string]bool                    // own member paths another session holds (logged once)
	bad      map[string]bool                    // own members with unusable names (logged once)
	failing  bool                               // the last pass failed (logged once per streak)
	view     memberView                         // what the directory shows around an outage (zkoutage.go)
	frozeAt  time.Time                          // when the view froze
}

func newZKBackend(cli *ZKClient, svc *Service) *zkBackend {
	b := &zkBackend{
		cli:     cli,
		svc:     svc,
		log:     svc.log,
		wake:    make(chan struct{}, 1),
		watched: make(map[string]bool),
		mirror:  make(map[string]map[string]*push.Member),
		written: make(map[string][]byte),
		parents: make(map[string]bool),
		held:    make(map[string]bool),
		bad:     make(map[string]bool),
		now:     time.Now,
		view:    memberView{grace: cli.cfg.OutageGrace},
	}
	h := b.onEvent
	cli.hook.Store(&h)
	return b
}

// onEvent runs on zk's receive goroutine: record and wake, never block.
func (b *zkBackend) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		b.evMu.Lock()
		b.events = append(b.events, ev)
		b.evMu.Unlock()
	} else if ev.State == zk.StateDisconnected || ev.State == zk.StateExpired {
		b.lost.Store(true)
	}
	b.kick()
}

func (b *zkBackend) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *zkBackend) run(ctx context.Context) {
	retry := time.NewTimer(retryEvery)
	defer retry.Stop()
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	defer grace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-retry.C:
		case <-grace.C:
		}
		err := b.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		if d := b.view.graceLeft(b.now()); d > 0 {
			grace.Reset(d)
		}
		switch {
		case err != nil && !b.failing:
			b.failing = true
			b.log.Warn("zookeeper sync incomplete, retrying", "err", err)
		case err == nil && b.failing:
			b.failing = false
			b.log.Info("zookeeper sync recovered")
		}
		b.mu.Unlock()
		if err != nil {
			metricSyncErrors.Inc()
			retry.Reset(retryEvery)
		}
	}
}

// pass brings everything up to date: config watch, own members, mirror.
func (b *zkBackend) pass(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.lost.Swap(false) || !b.cli.hasSession() {
		b.freeze(now)
	}
	if !b.cli.hasSession() {
		return errNoSession
	}
	b.thaw(now)
	if sid := b.cli.SessionID(); sid != b.session {
		if b.session != 0 {
			b.log.Warn("zookeeper session replaced (the old one expired): re-publishing members and watches",
				"old", fmt.Sprintf("%#x", b.session), "new", fmt.Sprintf("%#x", sid))
		}
		metricSessions.Inc()
		b.session = sid
		b.cfgArmed = false
		clear(b.watched)
		clear(b.written)
		clear(b.held)
	}
	b.applyEvents()
	var errs []error
	if !b.cfgArmed {
		errs = append(errs, b.watchConfig(ctx))
	}
	errs = append(errs, b.syncOwn(ctx), b.syncMirror(ctx))
	if b.view.expired(b.now()) {
		b.publishMirror()
	}
	return errors.Join(errs...)
}

// freeze keeps the directory's membership as it is while the session is
// down (zkoutage.go).
func (b *zkBackend) freeze(now time.Time) {
	if !b.view.freeze() {
		return
	}
	b.frozeAt = now
	metricFrozen.Inc()
	metricFrozenNow.Set(1)
	n := 0
	for _, byID := range b.view.protect {
		n += len(byID)
	}
	b.log.Warn("zookeeper connection lost: membership frozen at the last known list", "members", n)
}

// thaw ends a freeze once there is a session again; members known at the
// freeze stay listed for the grace while their znodes are missing.
func (b *zkBackend) thaw(now time.Time) {
	if !b.view.thaw(now) {
		return
	}
	metricFrozenNow.Set(0)
	b.log.Warn("zookeeper session back: membership thawed; members known before stay listed while missing, for the grace",
		"frozen_for", now.Sub(b.frozeAt).Round(time.Millisecond), "grace", b.view.grace,
		"session", fmt.Sprintf("%#x", b.cli.SessionID()))
}

func (b *zkBackend) applyEvents() {
	b.evMu.Lock()
	evs := b.events
	b.events = nil
	b.evMu.Unlock()
	cfgPath := b.cli.path(configNode)
	for _, ev := range evs {
		if ev.Path == cfgPath {
			b.cfgArmed = false
		} else {
			delete(b.watched, ev.Path)
		}
	}
}

// watchConfig reads the configuration with a watch and applies it.
func (b *zkBackend) watchConfig(ctx context.Context) error {
	p := b.cli.path(configNode)
	var data []byte
	var st *zk.Stat
	err := do(ctx, func() (err error) {
		data, st, _, err = b.cli.conn.GetW(p)
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		// Deleted by hand: keep running what we have, watch for it to return.
		var ok bool
		if err := do(ctx, func() (err error) {
			ok, _, _, err = b.cli.conn.ExistsW(p)
			return err
		}); err != nil {
			return fmt.Errorf("keeper watch %s: %w", p, err)
		}
		if ok {
			return fmt.Errorf("keeper watch %s: created meanwhile", p)
		}
		b.cfgArmed = true
		if b.cfgZxid != -1 {
			b.cfgZxid = -1
			b.log.Error("configuration znode is gone; keeping the running version until it is written again", "path", p)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("keeper watch %s: %w", p, err)
	}
	b.cfgArmed = true
	b.apply(data, st)
	return nil
}

// apply publishes a configuration read from ZooKeeper unless it was seen
// already; an invalid one is refused and the running one kept.
func (b *zkBackend) apply(data []byte, st *zk.Stat) {
	if st.Mzxid == b.cfgZxid {
		return
	}
	b.cfgZxid = st.Mzxid
	c, err := config.Parse(data)
	if err != nil {
		b.cfgErr = fmt.Errorf("keeper config version %d: %w", st.Version, err)
		metricVersions.WithLabelValues("refused").Inc()
		b.log.Error("config refused, keeping the running version", "version", st.Version, "err", err)
		return
	}
	b.cfgErr = nil
	b.svc.publish(c, fmt.Sprintf("zookeeper %s version %d", b.cli.path(configNode), st.Version))
	metricConfigVersion.Set(float64(st.Version))
}

// reload reads the configuration now, without waiting for its watch.
func (b *zkBackend) reload(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var data []byte
	var st *zk.Stat
	err := do(ctx, func() (err error) {
		data, st, err = b.cli.conn.Get(b.cli.path(configNode))
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("keeper reload: %w", ErrNoConfig)
	}
	if err != nil {
		return fmt.Errorf("keeper reload: %w", err)
	}
	b.apply(data, st)
	return b.cfgErr
}

// syncOwn makes the member znodes of this session match the members joined here.
func (b *zkBackend) syncOwn(ctx context.Context) error {
	want := make(map[string][]byte)
	for _, m := range b.svc.dir.ownMembers() {
		p, err := b.cli.memberPath(m)
		if err != nil {
			if key := m.Role + "\x00" + m.ID; !b.bad[key] {
				b.bad[key] = true
				b.log.Error("member not published", "role", m.Role, "id", m.ID, "err", err)
			}
			continue
		}
		data, err := encodeMember(m)
		if err != nil {
			continue
		}
		want[p] = data
	}
	var errs []error
	for p, data := range want {
		if old, ok := b.written[p]; !ok || !bytes.Equal(old, data) {
			errs = append(errs, b.writeOwn(ctx, p, data))
		}
	}
	for p := range b.written {
		if _, ok := want[p]; ok {
			continue
		}
		err := do(ctx, func() error { return b.cli.conn.Delete(p, -1) })
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			errs = append(errs, fmt.Errorf("keeper leave %s: %w", p, err))
			continue
		}
		delete(b.written, p)
	}
	return errors.Join(errs...)
}

func (b *zkBackend) writeOwn(ctx context.Context, p string, data []byte) error {
	set := func() error {
		return do(ctx, func() error {
			_, err := b.cli.conn.Set(p, data, -1)
			return err
		})
	}
	if _, ok := b.written[p]; ok {
		err := set()
		if err == nil {
			b.written[p] = data
			return nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("keeper member %s: %w", p, err)
		}
		delete(b.written, p) // deleted by hand: create it again
	}
	parent := path.Dir(p)
	if !b.parents[parent] {
		if err := b.cli.ensure(ctx, parent); err != nil {
			return err
		}
		b.parents[parent] = true
	}
	err := do(ctx, func() error {
		_, err := b.cli.conn.Create(p, data, zk.FlagEphemeral, b.cli.acl)
		return err
	})
	if errors.Is(err, zk.ErrNodeExists) {
		err = b.claim(ctx, p, data, set)
	}
	if errors.Is(err, zk.ErrNoNode) {
		delete(b.parents, parent)
	}
	if err != nil {
		return fmt.Errorf("keeper member %s: %w", p, err)
	}
	b.written[p] = data
	delete(b.held, p)
	return nil
}

// claim handles a member znode that exists already. Ours (a create whose
// answer was lost) is updated. Another session's that announces the same
// RPC address as ours is this instance before a restart (kill -9): we hold
// that address now, so the old process is gone and its node is taken over at
// once, instead of after its session times out, so that clients see the new
// Epoch (a register restarted empty) within a poll. Any other (a duplicate
// id) is left alone: it disappears when that session ends, and a later pass
// joins then.
func (b *zkBackend) claim(ctx context.Context, p string, data []byte, set func() error) error {
	var (
		old []byte
		st  *zk.Stat
	)
	err := do(ctx, func() (err error) {
		old, st, err = b.cli.conn.Get(p)
		return err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return fmt.Errorf("removed while joining: %w", zk.ErrNoNode)
	case err != nil:
		return err
	case st.EphemeralOwner == b.session:
		return set()
	}
	if sameRPCAddr(old, data) {
		err := do(ctx, func() error { return b.cli.conn.Delete(p, st.Version) })
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		b.log.Info("took over the member znode of this instance's previous run", "path", p,
			"owner", fmt.Sprintf("%#x", st.EphemeralOwner))
		return do(ctx, func() error {
			_, err := b.cli.conn.Create(p, data, zk.FlagEphemeral, b.cli.acl)
			return err
		})
	}
	if !b.held[p] {
		b.held[p] = true
		b.log.Warn("member znode held by another session; joining when it ends", "path", p,
			"owner", fmt.Sprintf("%#x", st.EphemeralOwner))
	}
	return errHeld
}

// sameRPCAddr reports whether two member znodes announce the same, non-empty
// RPC address.
func sameRPCAddr(a, b []byte) bool {
	var ma, mb memberJSON
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil {
		return false
	}
	return ma.RPCAddr != "" && ma.RPCAddr == mb.RPCAddr
}

// syncMirror re-reads what fired since the last pass: the roles, the ids of
// a role, the data of a member; each read sets the next watch.
func (b *zkBackend) syncMirror(ctx context.Context) error {
	root := b.cli.path(membersNode)
	changed := false
	if !b.watched[root] {
		var roles []string
		if err := do(ctx, func() (err error) {
			roles, _, _, err = b.cli.conn.ChildrenW(root)
			return err
		}); err != nil {
			return fmt.Errorf("keeper watch %s: %w", root, err)
		}
		b.watched[root] = true
		next := make(map[string]map[string]*push.Member, len(roles))
		for _, r := range roles {
			if next[r] = b.mirror[r]; next[r] == nil {
				next[r] = make(map[string]*push.Member)
			}
		}
		for r, byID := range b.mirror {
			if _, ok := next[r]; !ok {
				b.forget(root+"/"+r, byID)
			}
		}
		b.mirror = next
		changed = true
	}
	var errs []error
	for role, byID := range b.mirror {
		rp := root + "/" + role
		if !b.watched[rp] {
			var ids []string
			err := do(ctx, func() (err error) {
				ids, _, _, err = b.cli.conn.ChildrenW(rp)
				return err
			})
			if errors.Is(err, zk.ErrNoNode) {
				continue // the role went; the watch on root says so
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("keeper watch %s: %w", rp, err))
				continue
			}
			b.watched[rp] = true
			live := make(map[string]bool, len(ids))
			for _, id := range ids {
				live[id] = true
				if _, ok := byID[id]; !ok {
					byID[id] = nil
				}
			}
			for id := range byID {
				if !live[id] {
					delete(byID, id)
					delete(b.watched, rp+"/"+id)
				}
			}
			changed = true
		}
		for id := range byID {
			mp := rp + "/" + id
			if b.watched[mp] {
				continue
			}
			var data []byte
			err := do(ctx, func() (err error) {
				data, _, _, err = b.cli.conn.GetW(mp)
				return err
			})
			if errors.Is(err, zk.ErrNoNode) {
				delete(byID, id)
				changed = true
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("keeper watch %s: %w", mp, err))
				continue
			}
			b.watched[mp] = true
			changed = true
			m, err := decodeMember(role, id, data)
			if err != nil {
				byID[id] = nil
				b.log.Warn("member znode ignored", "path", mp, "err", err)
				continue
			}
			byID[id] = &m
		}
	}
	if changed {
		b.publishMirror()
	}
	return errors.Join(errs...)
}

func (b *zkBackend) forget(rolePath string, byID map[string]*push.Member) {
	delete(b.watched, rolePath)
	for id := range byID {
		delete(b.watched, rolePath+"/"+id)
	}
}

// publishMirror hands the directory a copy of the mirror, as the view
// shows it (zkoutage.go).
func (b *zkBackend) publishMirror() {
	mirror := make(map[string]map[string]push.Member, len(b.mirror))
	for role, byID := range b.mirror {
		out := make(map[string]push.Member, len(byID))
		for id, m := range byID {
			if m != nil {
				out[id] = *m
			}
		}
		mirror[role] = out
	}
	shown, removed := b.view.show(b.now(), mirror)
	if len(removed) > 0 {
		metricOutageRemoved.Add(float64(len(removed)))
		b.log.Warn("members still missing from zookeeper when the outage grace ended: removed", "members", removed)
	}
	remote := make(map[string]map[string]push.Member, len(shown))
	for role, byID := range shown {
		remote[role] = maps.Clone(byID)
		metricMembers.WithLabelValues(role).Set(float64(len(byID)))
	}
	metricHeld.Set(float64(b.view.held))
	b.svc.dir.setRemote(remote)
}
