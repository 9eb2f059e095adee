package keeper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/lcpush/lcpush/pkg/config"
)

// Expected versions for Put besides a real znode version (0, 1, ...).
const (
	// VersionAny writes over whatever is stored (still one atomic write with
	// its history revision), or creates the first configuration.
	VersionAny int32 = -1
	// VersionNone only creates the first configuration: ErrConflict if one is stored.
	VersionNone int32 = -2
)

// maxWrite bounds the bytes of one write (the YAML, then again inside its
// history revision): ZooKeeper's default jute.maxbuffer is 1 MiB per
// request, and a server that gets more drops the connection.
const maxWrite = 1000 * 1000

// NoRevision is Current.Revision for a configuration the history does not
// hold: written to the znode by hand, not through keeper.
const NoRevision int64 = -1

// Current is the configuration stored now.
type Current struct {
	Data     []byte // YAML
	Version  int32  // znode version: what a write based on this must expect
	Revision int64  // history revision that wrote it; NoRevision if written outside keeper
	Modified time.Time
}

// Revision is one configuration write kept in the history.
type Revision struct {
	Seq           int64 // the history sequence number: v-0000000042 is 42
	ConfigVersion int32 // the config znode version this write produced
	Author        string
	Note          string
	Time          time.Time
	Data          []byte // YAML
}

// WriteMeta is recorded with a write.
type WriteMeta struct {
	Author string
	Note   string
}

// revisionJSON is the data of a history znode.
type revisionJSON struct {
	ConfigVersion int32     `json:"config_version"`
	Author        string    `json:"author,omitempty"`
	Note          string    `json:"note,omitempty"`
	Time          time.Time `json:"time"`
	YAML          string    `json:"yaml"`
}

// Get returns the stored configuration; ErrNoConfig if there is none.
func (c *ZKClient) Get(ctx context.Context) (Current, error) {
	var data []byte
	var st *zk.Stat
	err := do(ctx, func() (err error) {
		data, st, err = c.conn.Get(c.path(configNode))
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return Current{}, fmt.Errorf("keeper get %s: %w", c.path(configNode), ErrNoConfig)
	}
	if err != nil {
		return Current{}, c.authHint(fmt.Errorf("keeper get %s: %w", c.path(configNode), err))
	}
	cur := Current{Data: data, Version: st.Version, Modified: time.UnixMilli(st.Mtime)}
	cur.Revision = c.revisionOf(ctx, st.Version)
	return cur, nil
}

// revisionOf finds which of the newest revisions wrote config version v.
// Every keeper write adds its revision in the same transaction, so it is
// the newest one unless the znode was written by hand since.
func (c *ZKClient) revisionOf(ctx context.Context, v int32) int64 {
	seqs, err := c.revisionSeqs(ctx)
	if err != nil {
		return NoRevision
	}
	for i := len(seqs) - 1; i >= 0 && i >= len(seqs)-3; i-- {
		r, err := c.Revision(ctx, seqs[i])
		if err == nil && r.ConfigVersion == v {
			return r.Seq
		}
	}
	return NoRevision
}

// Put validates data with config.Parse and, only if it is valid, stores it
// as the configuration if the stored one is still at version expect (or see
// VersionAny, VersionNone), with its history revision, atomically. An invalid
// configuration is refused with an error wrapping config.ErrInvalid; a write
// based on an old version fails with ErrConflict. A keeper header line
// (see FormatHeader) at the top of data is dropped.
func (c *ZKClient) Put(ctx context.Context, data []byte, expect int32, meta WriteMeta) (Revision, error) {
	body, _, _ := SplitHeader(data)
	if _, err := config.Parse(body); err != nil {
		return Revision{}, fmt.Errorf("keeper put: refused, nothing written: %w", err)
	}
	if err := c.ensureTree(ctx); err != nil {
		return Revision{}, err
	}
	for attempt := 0; ; attempt++ {
		version, create := expect, expect == VersionNone
		if expect == VersionAny {
			ok, st, err := c.exists(ctx, c.path(configNode))
			if err != nil {
				return Revision{}, fmt.Errorf("keeper put: %w", err)
			}
			if create = !ok; ok {
				version = st.Version
			}
		}
		rev := Revision{ConfigVersion: version + 1, Author: meta.Author, Note: meta.Note, Time: time.Now().UTC().Truncate(time.Millisecond), Data: body}
		if create {
			rev.ConfigVersion = 0
		}
		entry, err := json.Marshal(revisionJSON{ConfigVersion: rev.ConfigVersion, Author: rev.Author, Note: rev.Note, Time: rev.Time, YAML: string(body)})
		if err != nil {
			return Revision{}, fmt.Errorf("keeper put: %w", err)
		}
		if n := len(body) + len(entry); n > maxWrite {
			return Revision{}, fmt.Errorf("keeper put: %d bytes of YAML make a %d-byte write, above the %d one ZooKeeper request may carry: %w",
				len(body), n, maxWrite, ErrTooLarge)
		}
		var write any = &zk.SetDataRequest{Path: c.path(configNode), Data: body, Version: version}
		if create {
			write = &zk.CreateRequest{Path: c.path(configNode), Data: body, Acl: c.acl}
		}
		hist := &zk.CreateRequest{Path: c.path(historyNode, revPrefix), Data: entry, Acl: c.acl, Flags: zk.FlagSequence}
		var res []zk.MultiResponse
		err = do(ctx, func() (err error) {
			res, err = c.conn.Multi(write, hist)
			return err
		})
		if err == nil {
			rev.Seq, _ = parseSeq(strings.TrimPrefix(res[1].String, c.path(historyNode)+"/"))
			c.prune(ctx)
			return rev, nil
		}
		if len(res) != 2 || res[0].Error == nil {
			return Revision{}, fmt.Errorf("keeper put: %w", err)
		}
		// The config write failed: it was changed, deleted or created meanwhile.
		if expect == VersionAny && attempt < 5 {
			continue
		}
		return Revision{}, c.conflict(ctx, expect)
	}
}

func (c *ZKClient) conflict(ctx context.Context, expect int32) error {
	ok, st, err := c.exists(ctx, c.path(configNode))
	switch {
	case err != nil:
		return fmt.Errorf("keeper put: %w (and %w)", ErrConflict, err)
	case !ok:
		return fmt.Errorf("keeper put: no configuration is stored, the write expected version %d: %w", expect, ErrConflict)
	case expect == VersionNone:
		return fmt.Errorf("keeper put: a configuration is stored already (version %d): %w", st.Version, ErrConflict)
	}
	return fmt.Errorf("keeper put: stored version is %d, the write was based on version %d: %w", st.Version, expect, ErrConflict)
}

func (c *ZKClient) exists(ctx context.Context, p string) (bool, *zk.Stat, error) {
	var ok bool
	var st *zk.Stat
	err := do(ctx, func() (err error) {
		ok, st, err = c.conn.Exists(p)
		return err
	})
	return ok, st, err
}

// Rollback stores revision seq again as a new revision, with the same
// version check as Put.
func (c *ZKClient) Rollback(ctx context.Context, seq int64, expect int32, meta WriteMeta) (Revision, error) {
	r, err := c.Revision(ctx, seq)
	if err != nil {
		return Revision{}, err
	}
	if meta.Note == "" {
		meta.Note = fmt.Sprintf("rollback to revision %d", seq)
	}
	return c.Put(ctx, r.Data, expect, meta)
}

// Revision returns one revision of the history.
func (c *ZKClient) Revision(ctx context.Context, seq int64) (Revision, error) {
	p := c.path(historyNode, fmt.Sprintf("%s%010d", revPrefix, seq))
	var data []byte
	err := do(ctx, func() (err error) {
		data, _, err = c.conn.Get(p)
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return Revision{}, fmt.Errorf("keeper revision %d: %w", seq, ErrNoRevision)
	}
	if err != nil {
		return Revision{}, fmt.Errorf("keeper revision %d: %w", seq, err)
	}
	var j revisionJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return Revision{}, fmt.Errorf("keeper revision %d: bad data in %s: %w", seq, p, err)
	}
	return Revision{Seq: seq, ConfigVersion: j.ConfigVersion, Author: j.Author, Note: j.Note, Time: j.Time, Data: []byte(j.YAML)}, nil
}

// History returns the newest limit revisions (all if limit <= 0), oldest first.
func (c *ZKClient) History(ctx context.Context, limit int) ([]Revision, error) {
	seqs, err := c.revisionSeqs(ctx)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(seqs) > limit {
		seqs = seqs[len(seqs)-limit:]
	}
	out := make([]Revision, 0, len(seqs))
	for _, seq := range seqs {
		r, err := c.Revision(ctx, seq)
		if errors.Is(err, ErrNoRevision) {
			continue // pruned meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// revisionSeqs lists the history's sequence numbers, ascending.
func (c *ZKClient) revisionSeqs(ctx context.Context) ([]int64, error) {
	var names []string
	err := do(ctx, func() (err error) {
		names, _, err = c.conn.Children(c.path(historyNode))
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, c.authHint(fmt.Errorf("keeper history: %w", err))
	}
	seqs := make([]int64, 0, len(names))
	for _, n := range names {
		if seq, ok := parseSeq(n); ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// prune deletes the oldest revisions beyond the history limit. A failure
// only leaves more history; it is logged.
func (c *ZKClient) prune(ctx context.Context) {
	seqs, err := c.revisionSeqs(ctx)
	if err != nil || len(seqs) <= c.cfg.HistoryLimit {
		return
	}
	for _, seq := range seqs[:len(seqs)-c.cfg.HistoryLimit] {
		p := c.path(historyNode, fmt.Sprintf("%s%010d", revPrefix, seq))
		err := do(ctx, func() error { return c.conn.Delete(p, -1) })
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			c.log.Warn("history prune failed", "path", p, "err", err)
			return
		}
	}
}

func parseSeq(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, revPrefix)
	if !ok || digits == "" {
		return 0, false
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	return seq, err == nil && seq >= 0
}

// The header line `get` prints above the YAML tells `put` which version an
// edited file is based on, so a stale edit is refused instead of silently
// overwriting another operator's write. It is a YAML comment.
const headerPrefix = "# lcpush-keeper:"

var headerRE = regexp.MustCompile(`^# lcpush-keeper:.*\bversion=(-?\d+)`)

// FormatHeader returns the header line for cur, newline included.
func FormatHeader(cur Current) string {
	return fmt.Sprintf("%s version=%d revision=%s (put refuses this file if the stored version changed)\n",
		headerPrefix, cur.Version, revString(cur.Revision))
}

func revString(seq int64) string {
	if seq < 0 {
		return "none"
	}
	return strconv.FormatInt(seq, 10)
}

// SplitHeader drops a leading header line from data and returns the version
// it names; ok is false when data has no header.
func SplitHeader(data []byte) (body []byte, version int32, ok bool) {
	line, rest, _ := bytes.Cut(data, []byte("\n"))
	if !bytes.HasPrefix(line, []byte(headerPrefix)) {
		return data, 0, false
	}
	m := headerRE.FindSubmatch(line)
	if m == nil {
		return rest, 0, false
	}
	v, err := strconv.ParseInt(string(m[1]), 10, 32)
	if err != nil || v < 0 {
		return rest, 0, false
	}
	return rest, int32(v), true
}
