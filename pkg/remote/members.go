package remote

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/lcpush/lcpush/pkg/push"
)

// Members is the live membership (keeper.Directory satisfies it). Members
// returns the live instances of role; the slice is the caller's.
type Members interface {
	Members(role string) []push.Member
}

// Roles the cluster clients look up.
const (
	RoleRegister    = "register"
	RoleSaver       = "saver"
	RoleCoordinator = "coordinator"
	RoleRoom        = "room"
)

// noMember counts and returns the error for a role without live members.
func noMember(role string) error {
	mNoMember.WithLabelValues(role).Inc()
	return fmt.Errorf("%w: %s", ErrNoMember, role)
}

// live returns the members of role that can be called (they have an RPC
// address), sorted by ID.
func live(m Members, role string) []push.Member {
	all := m.Members(role)
	out := all[:0]
	for _, x := range all {
		if x.RPCAddr != "" {
			out = append(out, x)
		}
	}
	if !slices.IsSortedFunc(out, byID) {
		slices.SortFunc(out, byID)
	}
	return out
}

func byID(a, b push.Member) int { return cmp.Compare(a.ID, b.ID) }

// score is the rendezvous weight of member id for key: xxhash of the id, a
// zero byte, and the key. The owner of a key is the member with the highest
// score, so a member joining or leaving moves only the keys it wins or held.
func score(id, key string) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(id)
	_, _ = d.Write(sep[:])
	_, _ = d.WriteString(key)
	return d.Sum64()
}

var sep = [1]byte{0}

// owner returns the index in ms of the owner of key, -1 when ms is empty.
// Ties (never seen in practice) go to the lower ID.
func owner(ms []push.Member, key string) int {
	best, bestScore := -1, uint64(0)
	for i := range ms {
		if s := score(ms[i].ID, key); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// owners returns the indexes in ms of the best and second-best members for
// key; -1 where there is none.
func owners(ms []push.Member, key string) (int, int) {
	first, second := -1, -1
	var s1, s2 uint64
	for i := range ms {
		s := score(ms[i].ID, key)
		switch {
		case first < 0 || s > s1:
			second, s2 = first, s1
			first, s1 = i, s
		case second < 0 || s > s2:
			second, s2 = i, s
		}
	}
	return first, second
}
