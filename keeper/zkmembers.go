package keeper

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-zookeeper/zk"

	"github.com/lcpush/lcpush/pkg/push"
)

// memberJSON is the data of a member znode. "addrs" are a room's raw TCP
// addresses; the other transports' lists were added later and are omitted
// when empty, so a member written before them (or by a room serving only
// TCP) reads as a TCP-only room, and a process that predates them ignores
// them (encoding/json skips unknown fields) and still sees the TCP ones.
type memberJSON struct {
	Role     string   `json:"role"`
	ID       string   `json:"id"`
	RPCAddr  string   `json:"rpc_addr,omitempty"`
	Addrs    []string `json:"addrs,omitempty"`
	TLSAddrs []string `json:"tls_addrs,omitempty"`
	WSAddrs  []string `json:"ws_addrs,omitempty"`
	WSSAddrs []string `json:"wss_addrs,omitempty"`
	IDC      string   `json:"idc,omitempty"`
	Load     int      `json:"load"`
	Epoch    int64    `json:"epoch,omitempty"`
}

func encodeMember(m push.Member) ([]byte, error) {
	return json.Marshal(memberJSON{Role: m.Role, ID: m.ID, RPCAddr: m.RPCAddr, Addrs: m.Addrs,
		TLSAddrs: m.TLSAddrs, WSAddrs: m.WSAddrs, WSSAddrs: m.WSSAddrs, IDC: m.IDC, Load: m.Load, Epoch: m.Epoch})
}

// decodeMember reads a member znode; role and id come from its path, which
// is the truth when the data disagrees.
func decodeMember(role, id string, data []byte) (push.Member, error) {
	var j memberJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return push.Member{}, fmt.Errorf("keeper member %s/%s: %w", role, id, err)
	}
	return push.Member{Role: role, ID: id, RPCAddr: j.RPCAddr, Addrs: j.Addrs,
		TLSAddrs: j.TLSAddrs, WSAddrs: j.WSAddrs, WSSAddrs: j.WSSAddrs, IDC: j.IDC, Load: j.Load, Epoch: j.Epoch}, nil
}

func (c *ZKClient) memberPath(m push.Member) (string, error) {
	if err := checkName(m.Role); err != nil {
		return "", fmt.Errorf("keeper member role: %w", err)
	}
	if err := checkName(m.ID); err != nil {
		return "", fmt.Errorf("keeper member id: %w", err)
	}
	return c.path(membersNode, m.Role, m.ID), nil
}

// Roles lists the roles that have had members, sorted.
func (c *ZKClient) Roles(ctx context.Context) ([]string, error) {
	var roles []string
	err := do(ctx, func() (err error) {
		roles, _, err = c.conn.Children(c.path(membersNode))
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, c.authHint(fmt.Errorf("keeper roles: %w", err))
	}
	slices.Sort(roles)
	return roles, nil
}

// Members reads the live members of role from ZooKeeper, sorted by id.
// Members whose data cannot be decoded are skipped.
func (c *ZKClient) Members(ctx context.Context, role string) ([]push.Member, error) {
	if err := checkName(role); err != nil {
		return nil, fmt.Errorf("keeper members: %w", err)
	}
	var ids []string
	err := do(ctx, func() (err error) {
		ids, _, err = c.conn.Children(c.path(membersNode, role))
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, c.authHint(fmt.Errorf("keeper members %s: %w", role, err))
	}
	out := make([]push.Member, 0, len(ids))
	for _, id := range ids {
		var data []byte
		err := do(ctx, func() (err error) {
			data, _, err = c.conn.Get(c.path(membersNode, role, id))
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			continue // left meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("keeper members %s: %w", role, err)
		}
		if m, err := decodeMember(role, id, data); err == nil {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b push.Member) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}
