package keeper

import (
	"cmp"
	"maps"
	"slices"
	"sync"

	"github.com/lcpush/lcpush/pkg/push"
)

// Directory is the set of live service instances by role. Services of this
// process Join it; with ZooKeeper each joined member becomes an ephemeral
// znode and the directory also mirrors the members every other process
// published, so Members answers for the whole cluster. Without ZooKeeper it
// holds only what joined here (single-process mode).
type Directory struct {
	mu     sync.RWMutex
	local  map[string]map[string]push.Member // role -> id -> member joined here
	remote map[string]map[string]push.Member // role -> id -> mirror of ZooKeeper
	// sorted caches Members per role until the next change: the dispatcher
	// reads it on every request, changes are rare.
	sorted map[string][]push.Member
	// changed is called, outside the lock, after a local change; the
	// ZooKeeper backend uses it to publish. It must not block.
	changed func()
}

// NewDirectory returns an empty directory.
func NewDirectory() *Directory {
	return &Directory{
		local:  make(map[string]map[string]push.Member),
		remote: make(map[string]map[string]push.Member),
		sorted: make(map[string][]push.Member),
	}
}

// Join adds or replaces m, a member run by this process. With ZooKeeper it is
// published as an ephemeral znode in the background and re-published after a
// session expiry; a role or id that is not a valid znode name is logged and
// kept local.
func (d *Directory) Join(m push.Member) {
	m.Addrs = slices.Clone(m.Addrs)
	m.TLSAddrs = slices.Clone(m.TLSAddrs)
	m.WSAddrs = slices.Clone(m.WSAddrs)
	m.WSSAddrs = slices.Clone(m.WSSAddrs)
	d.mu.Lock()
	byID := d.local[m.Role]
	if byID == nil {
		byID = make(map[string]push.Member)
		d.local[m.Role] = byID
	}
	byID[m.ID] = m
	delete(d.sorted, m.Role)
	d.mu.Unlock()
	d.notify()
}

// Leave removes the member (role, id) that this process joined.
func (d *Directory) Leave(role, id string) {
	d.mu.Lock()
	delete(d.local[role], id)
	delete(d.sorted, role)
	d.mu.Unlock()
	d.notify()
}

// SetLoad updates the load of a member this process joined and reports
// whether it exists. With ZooKeeper each change is one write, coalesced with
// others still pending: call it every few seconds, not per connection.
func (d *Directory) SetLoad(role, id string, load int) bool {
	d.mu.Lock()
	m, ok := d.local[role][id]
	if ok && m.Load != load {
		m.Load = load
		d.local[role][id] = m
		delete(d.sorted, role)
	}
	d.mu.Unlock()
	if ok {
		d.notify()
	}
	return ok
}

// Count returns how many live members role has (Members without the copy).
func (d *Directory) Count(role string) int {
	d.mu.RLock()
	cached, ok := d.sorted[role]
	d.mu.RUnlock()
	if ok {
		return len(cached)
	}
	return len(d.Members(role))
}

// Members returns the live members of role, sorted by id: those published in
// ZooKeeper and those joined here (which win, being the freshest). The slice
// is the caller's; the address slices in it (Addrs, TLSAddrs, WSAddrs,
// WSSAddrs) are shared and must not be modified.
func (d *Directory) Members(role string) []push.Member {
	d.mu.RLock()
	cached, ok := d.sorted[role]
	d.mu.RUnlock()
	if ok {
		return slices.Clone(cached)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cached, ok = d.sorted[role]; !ok {
		cached = make([]push.Member, 0, len(d.remote[role])+len(d.local[role]))
		for id, m := range d.remote[role] {
			if _, mine := d.local[role][id]; !mine {
				cached = append(cached, m)
			}
		}
		cached = slices.AppendSeq(cached, maps.Values(d.local[role]))
		slices.SortFunc(cached, func(a, b push.Member) int { return cmp.Compare(a.ID, b.ID) })
		d.sorted[role] = cached
	}
	return slices.Clone(cached)
}

// Roles returns the roles that have members, sorted.
func (d *Directory) Roles() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []string
	for _, byRole := range []map[string]map[string]push.Member{d.local, d.remote} {
		for role, byID := range byRole {
			if len(byID) > 0 && !slices.Contains(out, role) {
				out = append(out, role)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (d *Directory) notify() {
	d.mu.RLock()
	f := d.changed
	d.mu.RUnlock()
	if f != nil {
		f()
	}
}

func (d *Directory) setChanged(f func()) {
	d.mu.Lock()
	d.changed = f
	d.mu.Unlock()
}

// ownMembers returns a copy of the members joined here.
func (d *Directory) ownMembers() []push.Member {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []push.Member
	for _, byID := range d.local {
		out = slices.AppendSeq(out, maps.Values(byID))
	}
	return out
}

// setRemote replaces the mirror of ZooKeeper; the maps become the directory's.
func (d *Directory) setRemote(remote map[string]map[string]push.Member) {
	d.mu.Lock()
	d.remote = remote
	clear(d.sorted)
	d.mu.Unlock()
}
