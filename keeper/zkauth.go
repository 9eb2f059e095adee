package keeper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"unicode"

	"github.com/go-zookeeper/zk"
)

// ZooKeeper access control. Without a credential (ZKConfig.Auth zero) every
// znode keeper creates is open (world:anyone, all permissions), as before:
// whoever reaches ZooKeeper reads the configuration with every app's secret
// and API key, rewrites it, or publishes a fake member. With a credential,
// every session authenticates with it (digest scheme) and every znode keeper
// creates under the root (the root, config, history and its revisions,
// members, the role parents and the ephemeral members) carries only
// zk.DigestACL(zk.PermAll, user, password): a client without the credential
// can neither read, list, write nor create anything below the root. Znodes
// that are still open from before (an upgrade) are closed by the first keeper
// client with the credential that writes the tree (Service start, CLI put):
// see secureTree.

// ErrBadAuth means a ZooKeeper credential is malformed or its file unsafe.
var ErrBadAuth = errors.New("keeper: bad ZooKeeper credential")

// ZKAuth is a ZooKeeper digest credential, user:password. The zero value is
// no credential.
type ZKAuth struct {
	User     string
	Password string
}

// IsZero reports whether a is no credential.
func (a ZKAuth) IsZero() bool { return a.User == "" && a.Password == "" }

// String names the user only: the password never reaches a log.
func (a ZKAuth) String() string {
	if a.IsZero() {
		return "none"
	}
	return "digest:" + a.User + ":***"
}

// GoString hides the password from %#v too.
func (a ZKAuth) GoString() string { return a.String() }

// LogValue hides the password from slog.
func (a ZKAuth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// acl is what znodes get with this credential.
func (a ZKAuth) acl() []zk.ACL {
	if a.IsZero() {
		return zk.WorldACL(zk.PermAll)
	}
	return zk.DigestACL(zk.PermAll, a.User, a.Password)
}

// ParseZKAuth reads "user:password". The user cannot hold a colon (the
// server splits at the first one); the password can.
func ParseZKAuth(s string) (ZKAuth, error) {
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" || pass == "" {
		return ZKAuth{}, fmt.Errorf("%w: want user:password", ErrBadAuth)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0 {
		return ZKAuth{}, fmt.Errorf("%w: control characters in user:password", ErrBadAuth)
	}
	return ZKAuth{User: user, Password: pass}, nil
}

// maxAuthFile bounds what ReadZKAuthFile reads.
const maxAuthFile = 64 << 10

// ReadZKAuthFile reads user:password from the first line of the file at
// path (surrounding spaces dropped). A file that its group or other users
// may read or write is refused, as ssh refuses such a private key:
// chmod 600 it.
func ReadZKAuthFile(path string) (ZKAuth, error) {
	f, err := os.Open(path)
	if err != nil {
		return ZKAuth{}, fmt.Errorf("keeper zk auth file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ZKAuth{}, fmt.Errorf("keeper zk auth file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return ZKAuth{}, fmt.Errorf("%w: %s is not a regular file", ErrBadAuth, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return ZKAuth{}, fmt.Errorf("%w: %s is accessible by group or others (mode %04o): chmod 600 %s", ErrBadAuth, path, perm, path)
	}
	line, err := bufio.NewReader(io.LimitReader(f, maxAuthFile)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return ZKAuth{}, fmt.Errorf("keeper zk auth file: %w", err)
	}
	a, err := ParseZKAuth(strings.TrimSpace(line))
	if err != nil {
		return ZKAuth{}, fmt.Errorf("%w (first line of %s)", err, path)
	}
	return a, nil
}

// LoadZKAuth turns the -zk-auth and -zk-auth-file flags into a credential:
// none when both are empty, an error when both are set.
func LoadZKAuth(value, file string) (ZKAuth, error) {
	switch {
	case value != "" && file != "":
		return ZKAuth{}, fmt.Errorf("%w: give -zk-auth or -zk-auth-file, not both", ErrBadAuth)
	case file != "":
		return ReadZKAuthFile(file)
	case value != "":
		a, err := ParseZKAuth(value)
		if err != nil {
			return ZKAuth{}, fmt.Errorf("-zk-auth: %w", err)
		}
		return a, nil
	}
	return ZKAuth{}, nil
}

// addAuth authenticates the session. zk remembers the credential and sends
// it again, before any queued request, on every later connection of this
// client (a reconnect to the same session, or a new session after expiry).
func (c *ZKClient) addAuth() error {
	if c.cfg.Auth.IsZero() {
		return nil
	}
	if err := c.conn.AddAuth("digest", []byte(c.cfg.Auth.User+":"+c.cfg.Auth.Password)); err != nil {
		return fmt.Errorf("keeper zk auth as %s: %w", c.cfg.Auth, err)
	}
	return nil
}

// aclFor is the ACL of a znode keeper creates at p: its own for the root and
// below; open for the root's ancestors, which keeper does not own (other
// trees may live beside it) and which hold nothing but names.
func (c *ZKClient) aclFor(p string) []zk.ACL {
	if p == c.cfg.Root || strings.HasPrefix(p, c.cfg.Root+"/") {
		return c.acl
	}
	return zk.WorldACL(zk.PermAll)
}

// open reports whether an ACL lets anyone in (a world:anyone entry).
func open(acl []zk.ACL) bool {
	for _, a := range acl {
		if a.Scheme == "world" {
			return true
		}
	}
	return false
}

// secureTree, with a credential, gives the root and every znode below it
// that is open (world:anyone, created before a credential was configured)
// the credential's ACL. Znodes with other ACLs (set by hand) are left alone.
// Members of processes still running without the credential are closed too:
// they can no longer update them, which is the point of the upgrade. It
// returns how many znodes it changed.
func (c *ZKClient) secureTree(ctx context.Context) (int, error) {
	if c.cfg.Auth.IsZero() {
		return 0, nil
	}
	n := 0
	var walk func(p string) error
	walk = func(p string) error {
		var acl []zk.ACL
		var st *zk.Stat
		err := do(ctx, func() (err error) {
			acl, st, err = c.conn.GetACL(p)
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			return nil // deleted meanwhile (a member left)
		}
		if err != nil {
			return c.authHint(fmt.Errorf("keeper zk acl %s: %w", p, err))
		}
		if open(acl) {
			err := do(ctx, func() error {
				_, err := c.conn.SetACL(p, c.acl, -1)
				return err
			})
			if errors.Is(err, zk.ErrNoNode) {
				return nil
			}
			if err != nil {
				return c.authHint(fmt.Errorf("keeper zk set acl %s: %w", p, err))
			}
			n++
		}
		if st.NumChildren == 0 || st.EphemeralOwner != 0 {
			return nil
		}
		var kids []string
		err = do(ctx, func() (err error) {
			kids, _, err = c.conn.Children(p)
			return err
		})
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return c.authHint(fmt.Errorf("keeper zk list %s: %w", p, err))
		}
		for _, k := range kids {
			if err := walk(p + "/" + k); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(c.cfg.Root)
	if n > 0 {
		c.log.Warn("zookeeper: closed open znodes created before a credential was configured",
			"root", c.cfg.Root, "znodes", n, "auth", c.cfg.Auth)
	}
	return n, err
}

// authHint explains a zk.ErrNoAuth: the tree is protected by a credential
// this client lacks. Other errors pass unchanged.
func (c *ZKClient) authHint(err error) error {
	if !errors.Is(err, zk.ErrNoAuth) {
		return err
	}
	if c.cfg.Auth.IsZero() {
		return fmt.Errorf("%w: the tree %s is protected by a ZooKeeper ACL: give its credential with -zk-auth-file (or -zk-auth)", err, c.cfg.Root)
	}
	return fmt.Errorf("%w: the tree %s is protected by a ZooKeeper ACL the credential of user %q does not match (wrong password, or another user's tree)",
		err, c.cfg.Root, c.cfg.Auth.User)
}
