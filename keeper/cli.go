package keeper

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/push"
)

// ErrUsage means the command line was wrong; the message says how.
var ErrUsage = errors.New("keeper: usage")

const cliUsage = `usage: lcpush keeper [-zk host:port,...] [-zk-root /lcpush] COMMAND [ARGS]

The configuration and membership kept in ZooKeeper.

commands:
  list                       what the tree holds: config version, history, members per role
  get                        print the configuration; its first line names the version it is
  put [-version N] [-force] [-m note] FILE
                             validate FILE and store it as the new configuration; refused if
                             invalid, or if the stored version is no longer the one FILE was
                             based on (the header line of get, or -version); -force skips that
  watch [-yaml]              print every new configuration version until interrupted
  history [-n 20] [REV]      list revisions (* = running), or print revision REV
  rollback [-version N] [-m note] REV
                             store revision REV again as a new revision
  members [ROLE]             list live members of every role, or of ROLE

flags (before or after COMMAND):
  -zk       ZooKeeper servers, comma separated (default $ZK_ADDR, else 127.0.0.1:2181)
  -zk-root  root znode of the tree (default /lcpush), the servers' -zk-root;
            -root is the same flag
  -timeout  how long to wait for a ZooKeeper session (default 10s)
  -author   recorded with writes (default $USER@host)
  -zk-auth-file PATH
            ZooKeeper digest credential user:password, first line of PATH (mode 0600),
            the one the processes use; needed when the tree is protected
  -zk-auth user:password
            the same on the command line (visible to other local users: prefer the file)
`

// cliFlags are accepted before and after the command.
type cliFlags struct {
	zk       string
	root     string
	timeout  time.Duration
	author   string
	auth     string // -zk-auth user:password
	authFile string
}

func (f *cliFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.zk, "zk", f.zk, "ZooKeeper servers, comma separated")
	fs.StringVar(&f.root, "zk-root", f.root, "root znode (the servers' -zk-root)")
	fs.StringVar(&f.root, "root", f.root, "root znode (same as -zk-root)")
	fs.DurationVar(&f.timeout, "timeout", f.timeout, "how long to wait for a session")
	fs.StringVar(&f.author, "author", f.author, "author recorded with writes")
	fs.StringVar(&f.auth, "zk-auth", f.auth, "ZooKeeper digest credential user:password")
	fs.StringVar(&f.authFile, "zk-auth-file", f.authFile, "file whose first line is the ZooKeeper credential user:password")
}

// RunCLI runs the operator command line, `lcpush keeper ARGS...`: list, get,
// put, watch, history, rollback and members (see the usage text, printed by
// `help`). Output goes to stdout; flag errors and usage to stderr. It returns
// an error wrapping ErrUsage for a wrong command line, flag.ErrHelp after
// -h, and the cause otherwise; watch runs until ctx ends.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := &cliFlags{zk: os.Getenv("ZK_ADDR"), root: DefaultRoot, timeout: DefaultConnectTimeout, author: defaultAuthor()}
	if f.zk == "" {
		f.zk = "127.0.0.1:2181"
	}
	fs := newFlagSet("keeper", stderr)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, cliUsage)
		return fmt.Errorf("%w: no command", ErrUsage)
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	run, ok := cliCommands[cmd]
	if !ok {
		if cmd == "help" {
			fmt.Fprint(stdout, cliUsage)
			return nil
		}
		fmt.Fprint(stderr, cliUsage)
		return fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
	}
	return run(&cli{flags: f, stdout: stdout, stderr: stderr}, ctx, rest)
}

var cliCommands = map[string]func(*cli, context.Context, []string) error{
	"list":     (*cli).list,
	"get":      (*cli).get,
	"put":      (*cli).put,
	"watch":    (*cli).watch,
	"history":  (*cli).history,
	"rollback": (*cli).rollback,
	"members":  (*cli).members,
}

type cli struct {
	flags          *cliFlags
	stdout, stderr io.Writer
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cliUsage) }
	return fs
}

// parse parses a command's flags (the common ones too) and checks that it
// got between min and max positional arguments.
func (c *cli) parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	c.flags.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if n := fs.NArg(); n < min || n > max {
		return nil, fmt.Errorf("%w: %s takes %d to %d arguments, got %d (lcpush keeper help)", ErrUsage, fs.Name(), min, max, n)
	}
	return fs.Args(), nil
}

func (c *cli) dial(ctx context.Context) (*ZKClient, error) {
	var servers []string
	for _, s := range strings.Split(c.flags.zk, ",") {
		if s = strings.TrimSpace(s); s != "" {
			servers = append(servers, s)
		}
	}
	auth, err := LoadZKAuth(c.flags.auth, c.flags.authFile)
	if err != nil {
		return nil, err
	}
	cli, err := DialZK(ctx, ZKConfig{Servers: servers, Root: c.flags.root, ConnectTimeout: c.flags.timeout, Auth: auth})
	if err != nil {
		return nil, fmt.Errorf("cannot reach ZooKeeper at %s (set -zk or ZK_ADDR): %w", c.flags.zk, err)
	}
	return cli, nil
}

func (c *cli) meta(note string) WriteMeta { return WriteMeta{Author: c.flags.author, Note: note} }

func (c *cli) get(ctx context.Context, args []string) error {
	if _, err := c.parse(newFlagSet("get", c.stderr), args, 0, 0); err != nil {
		return err
	}
	z, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer z.Close()
	cur, err := z.Get(ctx)
	if err != nil {
		return err
	}
	body, _, _ := SplitHeader(cur.Data)
	_, err = fmt.Fprintf(c.stdout, "%s%s", FormatHeader(cur), body)
	return err
}

func (c *cli) put(ctx context.Context, args []string) error {
	fs := newFlagSet("put", c.stderr)
	version := fs.Int("version", -1, "the stored version FILE is based on (default: its header line)")
	force := fs.Bool("force", false, "write whatever version is stored")
	note := fs.String("m", "", "note recorded with the revision")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("keeper put: %w", err)
	}
	body, hdrVersion, hasHeader := SplitHeader(data)
	// Refuse an invalid file before touching ZooKeeper.
	if _, err := config.Parse(body); err != nil {
		return fmt.Errorf("keeper put: %s refused, nothing written: %w", pos[0], err)
	}
	z, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer z.Close()
	var expect int32
	switch {
	case *force:
		expect = VersionAny
	case *version >= 0:
		expect = int32(*version)
	case hasHeader:
		expect = hdrVersion
	default:
		_, err := z.Get(ctx)
		if !errors.Is(err, ErrNoConfig) {
			if err == nil {
				err = fmt.Errorf("%w: %s has no %q line naming the version it edits: start from `lcpush keeper get`, or pass -version N, or -force", ErrUsage, pos[0], headerPrefix)
			}
			return err
		}
		expect = VersionNone // the first configuration
	}
	rev, err := z.Put(ctx, body, expect, c.meta(*note))
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return fmt.Errorf("%w; get the new version, apply your edit to it and put again", err)
		}
		return err
	}
	fmt.Fprintf(c.stdout, "wrote revision %d: config version %d\n", rev.Seq, rev.ConfigVersion)
	return nil
}

func (c *cli) rollback(ctx context.Context, args []string) error {
	fs := newFlagSet("rollback", c.stderr)
	version := fs.Int("version", -1, "refuse unless the stored version is still N")
	note := fs.String("m", "", "note recorded with the revision (default: rollback to revision REV)")
	pos, err := c.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	seq, err := strconv.ParseInt(strings.TrimPrefix(pos[0], revPrefix), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: rollback: revision %q is not a number", ErrUsage, pos[0])
	}
	z, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer z.Close()
	// Compare-and-set against what is stored now, and say what it replaced,
	// so that undoing someone's write is never silent.
	cur, err := z.Get(ctx)
	if err != nil {
		return err
	}
	expect := cur.Version
	if *version >= 0 {
		expect = int32(*version)
	}
	rev, err := z.Rollback(ctx, seq, expect, c.meta(*note))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "wrote revision %d (the configuration of revision %d): config version %d, replacing version %d (revision %s)\n",
		rev.Seq, seq, rev.ConfigVersion, cur.Version, revString(cur.Revision))
	return nil
}

func (c *cli) history(ctx context.Context, args []string) error {
	fs := newFlagSet("history", c.stderr)
	n := fs.Int("n", 20, "how many of the newest revisions to list (0: all)")
	pos, err := c.parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	z, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer z.Close()
	if len(pos) == 1 {
		seq, err := strconv.ParseInt(strings.TrimPrefix(pos[0], revPrefix), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: history: revision %q is not a number", ErrUsage, pos[0])
		}
		r, err := z.Revision(ctx, seq)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "# revision %d, config version %d, %s by %s: %s\n%s",
			r.Seq, r.ConfigVersion, r.Time.Format(time.RFC3339), r.Author, r.Note, r.Data)
		return err
	}
	revs, err := z.History(ctx, *n)
	if err != nil {
		return err
	}
	cur, err := z.Get(ctx)
	if errors.Is(err, ErrNoConfig) {
		cur.Revision = NoRevision
	} else if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REV\tVERSION\tTIME\tAUTHOR\tNOTE")
	for _, r := range revs {
		mark := " "
		if r.Seq == cur.Revision {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s%d\t%d\t%s\t%s\t%s\n", mark, r.Seq, r.ConfigVersion, r.Time.Format(time.RFC3339), r.Author, r.Note)
	}
	return tw.Flush()
}

func (c *cli) members(ctx context.Context, args []string) error {
	pos, err := c.parse(newFlagSet("members", c.stderr), args, 0, 1)
	if err != nil {
		return err
	}
	z, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer z.Close()
	roles := pos
	if len(roles) == 0 {
		if roles, err = z.Roles(ctx); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tID\tRPC\tADDRS\tIDC\tLOAD")
	for _, role := range roles {
		ms, err := z.Members(ctx, role)
		if err != nil {
			return err
		}
		for _, m := range ms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", m.Role, m.ID, dash(m.RPCAddr), dash(strings.Join(publicAddrs(m), ",")), dash(m.IDC), m.Load)
		}
	}
	return tw.Flush()
}

func (c *cli) list(ctx context.Context, args []string) error {
	if _, err := c.parse(newFlagSet("list", c.stderr), args, 0, 0); err != nil {
		return err
	}
	z, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer z.Close()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	cur, err := z.Get(ctx)
	switch {
	case errors.Is(err, ErrNoConfig):
		fmt.Fprintf(tw, "%s\tnone stored\n", z.path(configNode))
	case err != nil:
		return err
	default:
		fmt.Fprintf(tw, "%s\tversion %d, revision %s, %d bytes, modified %s\n",
			z.path(configNode), cur.Version, revString(cur.Revision), len(cur.Data), cur.Modified.UTC().Format(time.RFC3339))
	}
	seqs, err := z.revisionSeqs(ctx)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		fmt.Fprintf(tw, "%s\tno revisions\n", z.path(historyNode))
	} else {
		fmt.Fprintf(tw, "%s\t%d revisions, %d to %d\n", z.path(historyNode), len(seqs), seqs[0], seqs[len(seqs)-1])
	}
	roles, err := z.Roles(ctx)
	if err != nil {
		return err
	}
	for _, role := range roles {
		ms, err := z.Members(ctx, role)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%d members\n", z.path(membersNode, role), len(ms))
	}
	return tw.Flush()
}

// watch prints a line per configuration version the processes would see,
// saying whether they accept it.
func (c *cli) watch(ctx context.Context, args []string) error {
	fs := newFlagSet("watch", c.stderr)
	withYAML := fs.Bool("yaml", false, "print each version's YAML too")
	if _, err := c.parse(fs, args, 0, 0); err != nil {
		return err
	}
	z, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer z.Close()
	p := z.path(configNode)
	var lastZxid int64 = -1
	for {
		var data []byte
		var st *zk.Stat
		var ch <-chan zk.Event
		err := do(ctx, func() (err error) {
			data, st, ch, err = z.conn.GetW(p)
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			if lastZxid != 0 {
				fmt.Fprintf(c.stdout, "%s no configuration stored at %s; waiting\n", stamp(), p)
				lastZxid = 0
			}
			err = do(ctx, func() (err error) {
				_, _, ch, err = z.conn.ExistsW(p)
				return err
			})
		} else if err == nil && st.Mzxid != lastZxid {
			lastZxid = st.Mzxid
			c.printVersion(ctx, z, data, st, *withYAML)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("keeper watch %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch: // changed, or the watch was lost: read again either way
		}
	}
}

func (c *cli) printVersion(ctx context.Context, z *ZKClient, data []byte, st *zk.Stat, withYAML bool) {
	var state string
	if cfg, err := config.Parse(data); err != nil {
		state = "INVALID, processes keep their running version: " + err.Error()
	} else {
		state = fmt.Sprintf("valid, %d apps", len(cfg.Apps))
	}
	fmt.Fprintf(c.stdout, "%s version %d revision %s: %s\n", stamp(), st.Version, revString(z.revisionOf(ctx, st.Version)), state)
	if withYAML {
		fmt.Fprintf(c.stdout, "%s\n", strings.TrimRight(string(data), "\n"))
	}
}

func stamp() string { return time.Now().UTC().Format(time.RFC3339) }

// publicAddrs lists a member's public addresses of every transport: TCP
// ones as host:port, TLS ones as tls://host:port, WebSocket ones as the
// URLs they are.
func publicAddrs(m push.Member) []string {
	out := slices.Clone(m.Addrs)
	for _, a := range m.TLSAddrs {
		out = append(out, push.TransportTLS+"://"+a)
	}
	out = append(out, m.WSAddrs...)
	return append(out, m.WSSAddrs...)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func defaultAuthor() string {
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	if host, err := os.Hostname(); err == nil {
		return user + "@" + host
	}
	return user
}
