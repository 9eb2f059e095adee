package system

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/room"
)

// roomDirectory routes calls addressed to a room instance id to that room.
// In one process the rooms are local values; the RPC client of the next
// stage is another implementation of the same interfaces (center.Rooms,
// coordinator.Rooms).
type roomDirectory struct {
	mu    sync.RWMutex
	rooms map[string]*room.Room
	// remote reaches rooms of other processes (cluster mode); nil alone.
	remote remoteRooms
}

// remoteRooms is the RPC side of the directory (pkg/remote.Rooms).
type remoteRooms interface {
	Push(ctx context.Context, room string, msg push.Message, targets []push.Target) (int, error)
	Kick(ctx context.Context, room, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error)
	Broadcast(ctx context.Context, room string, msg push.Message, perSec float64) (int, error)
	IDs() []string
}

// errNoRoom: the session points at a room instance this process cannot reach.
var errNoRoom = fmt.Errorf("room directory: %w", push.ErrUnavailable)

func newRoomDirectory() *roomDirectory {
	return &roomDirectory{rooms: make(map[string]*room.Room)}
}

func (d *roomDirectory) add(r *room.Room) {
	d.mu.Lock()
	d.rooms[r.ID()] = r
	d.mu.Unlock()
}

func (d *roomDirectory) get(id string) (*room.Room, error) {
	d.mu.RLock()
	r := d.rooms[id]
	d.mu.RUnlock()
	if r == nil {
		return nil, fmt.Errorf("%w: %s", errNoRoom, id)
	}
	return r, nil
}

func (d *roomDirectory) Push(ctx context.Context, id string, msg push.Message, targets []push.Target) (int, error) {
	r, err := d.get(id)
	if err != nil && d.remote != nil {
		return d.remote.Push(ctx, id, msg, targets)
	}
	if err != nil {
		return 0, err
	}
	return r.Push(ctx, msg, targets)
}

func (d *roomDirectory) Kick(ctx context.Context, id, uid string, connID uint64, apps []uint32, code int, reason string) (bool, error) {
	r, err := d.get(id)
	if err != nil && d.remote != nil {
		return d.remote.Kick(ctx, id, uid, connID, apps, code, reason)
	}
	if err != nil {
		return false, err
	}
	return r.Kick(ctx, uid, connID, apps, code, reason)
}

func (d *roomDirectory) Broadcast(ctx context.Context, id string, msg push.Message, perSec float64) (int, error) {
	r, err := d.get(id)
	if err != nil && d.remote != nil {
		return d.remote.Broadcast(ctx, id, msg, perSec)
	}
	if err != nil {
		return 0, err
	}
	return r.Broadcast(ctx, msg, perSec)
}

// IDs lists the rooms of this process and, in a cluster, the live room
// members (this process's own room is one of them too).
func (d *roomDirectory) IDs(context.Context) ([]string, error) {
	d.mu.RLock()
	ids := make([]string, 0, len(d.rooms))
	for id := range d.rooms {
		ids = append(ids, id)
	}
	d.mu.RUnlock()
	if d.remote != nil {
		for _, id := range d.remote.IDs() {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}
