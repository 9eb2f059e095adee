package dispatcher

import (
	"cmp"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/lcpush/lcpush/pkg/push"
)

// candidate is one live room instance ranked for one uid.
type candidate struct {
	m       *push.Member
	score   uint64   // rendezvous score of (uid, instance id); highest wins
	addrs   []string // usable addresses, the uid's preferred one first
	suspect bool     // the client failed on this instance (or it is the hashed one on a retry)
	tier    int      // 0 first; only used on a retry
}

// request is what the client told us.
type request struct {
	uid       string
	transport string // push.TransportTCP, ...; "" is TCP
	retry     int
	failed    map[string]bool // host:port the client could not use, for every transport
}

// pick orders the addresses of r.transport of the live rooms for r, at most
// max of them. It returns nil when no room has an address of that transport.
// Rooms that do not serve the transport take no part: the uid's instance is
// the one it hashes to among those that do.
//
// Normal answer: round 1 takes one address of every instance in rendezvous
// order (so the first is the uid's own instance and the next ones are the
// instances it would move to if that one left), round 2 the second address
// of each, and so on. The per-instance starting address also depends on the
// uid so that users spread over the ports of one instance.
//
// On a retry (retry > 0 or a failed list) failed addresses are left out and
// the instances are regrouped: instances in an IDC other than the failed
// ones first, then other instances, and only after all their addresses the
// remaining addresses of the instances the client failed on (or, with no
// failed list, of the uid's own instance). If every address has
// failed, the normal answer is returned rather than nothing: the failures may
// have been transient and an empty list would strand the client.
func pick(members []push.Member, r request, max int) []string {
	cands := rank(members, r.uid, r.transport)
	if len(cands) == 0 {
		return nil
	}
	if r.retry <= 0 && len(r.failed) == 0 {
		return spread(cands, max)
	}
	regroup(cands, r)
	// Every address of the healthy instances before any of the suspects'.
	split := slices.IndexFunc(cands, func(c candidate) bool { return c.suspect })
	if split < 0 {
		split = len(cands)
	}
	out := spread(cands[:split], max)
	for _, a := range spread(cands[split:], max-len(out)) {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) > 0 {
		return out
	}
	return spread(rank(members, r.uid, r.transport), max)
}

// rank scores every member that has addresses of transport and sorts them,
// best first.
func rank(members []push.Member, uid, transport string) []candidate {
	if transport == "" {
		transport = push.TransportTCP
	}
	total := 0
	for i := range members {
		total += len(members[i].TransportAddrs(transport))
	}
	cands := make([]candidate, 0, len(members))
	all := make([]string, 0, total) // one backing array for every candidate's list
	for i := range members {
		m := &members[i]
		addrs := m.TransportAddrs(transport)
		if len(addrs) == 0 {
			continue
		}
		sc := score(uid, m.ID)
		off := int(sc % uint64(len(addrs)))
		start := len(all)
		all = append(all, addrs[off:]...)
		all = append(all, addrs[:off]...)
		cands = append(cands, candidate{m: m, score: sc, addrs: all[start:len(all):len(all)]})
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.m.ID, b.m.ID)
	})
	return cands
}

// score is the rendezvous hash of (uid, instance id).
func score(uid, id string) uint64 {
	var buf [192]byte
	b := append(buf[:0], uid...)
	b = append(b, 0)
	b = append(b, id...)
	return xxhash.Sum64(b)
}

// regroup drops failed addresses and reorders cands for a retry. The failed
// list is host:port for every transport, so a WebSocket URL is compared by
// its host:port.
func regroup(cands []candidate, r request) {
	badIDC := make(map[string]bool)
	anySuspect := false
	for i := range cands {
		c := &cands[i]
		kept := c.addrs[:0]
		for _, a := range c.addrs {
			if r.failed[push.HostPort(a)] {
				c.suspect = true
				continue
			}
			kept = append(kept, a)
		}
		c.addrs = kept
		anySuspect = anySuspect || c.suspect
	}
	if !anySuspect { // a retry without a list: the uid's own instance failed
		cands[0].suspect = true
	}
	for i := range cands {
		if cands[i].suspect && cands[i].m.IDC != "" {
			badIDC[cands[i].m.IDC] = true
		}
	}
	for i := range cands {
		c := &cands[i]
		switch {
		case c.suspect:
			c.tier = 2
		case len(badIDC) > 0 && c.m.IDC != "" && !badIDC[c.m.IDC]:
			c.tier = 0
		default:
			c.tier = 1
		}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(a.tier, b.tier) })
}

// spread takes one address per instance per round, in order, up to max.
// An address listed by two instances (a misconfiguration) is given once.
func spread(cands []candidate, max int) []string {
	out := make([]string, 0, max)
	for round := 0; len(out) < max; round++ {
		took := false
		for i := range cands {
			if round >= len(cands[i].addrs) {
				continue
			}
			took = true
			if a := cands[i].addrs[round]; !slices.Contains(out, a) {
				out = append(out, a)
				if len(out) == max {
					break
				}
			}
		}
		if !took {
			break
		}
	}
	return out
}
