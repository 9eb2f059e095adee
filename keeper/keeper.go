// Package keeper owns configuration and membership. It loads the typed
// configuration (pkg/config) from a source, validates it, publishes it through
// a config.Holder and hot-reloads it when the source changes: a bad new
// version is refused and the running one kept. It also keeps the directory of
// live service instances (membership) that the dispatcher and the router of
// pushes read.
//
// Two backends sit behind the same Service: a Source (a file polled for
// changes, or embedded bytes) with an in-memory Directory for the
// single-process mode, and ZooKeeper (ZKConfig), where the configuration is
// a watched znode with a versioned history, members are ephemeral znodes
// mirrored by every process, and operators use RunCLI. The znode layout is
// described in zk.go.
package keeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/lcpush/lcpush/pkg/config"
)

// Source is where configuration versions come from.
type Source interface {
	// Load returns the current raw configuration.
	Load(ctx context.Context) ([]byte, error)
	// Changed reports whether the source may hold a new version since the last Load.
	Changed(ctx context.Context) (bool, error)
	// String names the source for logs.
	String() string
}

// Config configures the keeper service. Set either Source or ZK.Servers.
type Config struct {
	Source    Source
	PollEvery time.Duration // how often Changed is polled; default 2s
	// ZK, when ZK.Servers is set, takes the configuration from ZooKeeper and
	// publishes membership there; ZK.Seed fills an empty tree.
	ZK     ZKConfig
	Logger *slog.Logger
}

// Service loads, validates, publishes and reloads configuration.
type Service struct {
	cfg    Config
	log    *slog.Logger
	holder *config.Holder
	dir    *Directory
	zk     *zkBackend // nil with a Source

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Errors of New and Reload.
var (
	ErrNoSource   = errors.New("keeper: no config source")
	ErrTwoSources = errors.New("keeper: both Source and ZK.Servers set (ZK.Seed seeds an empty ZooKeeper tree)")
	// ErrNotStarted is returned by Reload before a successful Start.
	ErrNotStarted = errors.New("keeper: not started")
)

// New returns a keeper for cfg.Source or cfg.ZK. It does no I/O: Start loads.
func New(cfg Config) (*Service, error) {
	useZK := len(cfg.ZK.Servers) > 0
	switch {
	case cfg.Source == nil && !useZK:
		return nil, ErrNoSource
	case cfg.Source != nil && useZK:
		return nil, ErrTwoSources
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if useZK {
		if cfg.ZK.Logger == nil {
			cfg.ZK.Logger = log
		}
		if err := cfg.ZK.defaults(); err != nil {
			return nil, err
		}
	}
	return &Service{cfg: cfg, log: log, dir: NewDirectory()}, nil
}

// Start loads and validates the first configuration (an invalid one is an
// error) and begins watching for new versions. With ZooKeeper it also
// begins publishing and mirroring membership.
func (s *Service) Start(ctx context.Context) error {
	if len(s.cfg.ZK.Servers) > 0 {
		return s.startZK(ctx)
	}
	c, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.publish(c, s.cfg.Source.String())
	s.goWatch(s.watch)
	return nil
}

func (s *Service) goWatch(f func(context.Context)) {
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(wctx)
	}()
}

// startZK connects, seeds an empty tree, loads the first configuration and
// starts the sync goroutine.
func (s *Service) startZK(ctx context.Context) error {
	zcfg := s.cfg.ZK
	cli, err := DialZK(ctx, zcfg)
	if err != nil {
		return err
	}
	if zcfg.Auth.IsZero() {
		s.log.Warn("zookeeper: no credential (-zk-auth-file): the znodes keeper creates are open to anyone who reaches ZooKeeper (world:anyone), app secrets and API keys included",
			"root", cli.Root())
	}
	b := newZKBackend(cli, s)
	if err := s.seed(ctx, cli); err != nil {
		cli.Close()
		return err
	}
	passErr := b.pass(ctx) // what fails here (members) the sync goroutine retries
	if s.holder == nil {
		b.mu.Lock()
		err := b.cfgErr
		b.mu.Unlock()
		if err == nil && errors.Is(passErr, zk.ErrNoAuth) {
			err = cli.authHint(passErr)
		}
		if err == nil {
			err = fmt.Errorf("keeper start: %s: %w (write one with the keeper CLI, or set ZK.Seed)", cli.path(configNode), ErrNoConfig)
		}
		cli.Close()
		return err
	}
	s.zk = b
	s.dir.setChanged(b.kick)
	s.goWatch(b.run)
	b.kick()
	return nil
}

// seed writes ZK.Seed as the first revision when no configuration is
// stored. Another process seeding at the same time is not an error.
func (s *Service) seed(ctx context.Context, cli *ZKClient) error {
	if err := cli.ensureTree(ctx); err != nil {
		return err
	}
	seed := s.cfg.ZK.Seed
	if seed == nil {
		return nil
	}
	ok, _, err := cli.exists(ctx, cli.path(configNode))
	if err != nil || ok {
		return err
	}
	raw, err := seed.Load(ctx)
	if err != nil {
		return fmt.Errorf("keeper seed %s: %w", seed, err)
	}
	rev, err := cli.Put(ctx, raw, VersionNone, WriteMeta{Author: "keeper seed", Note: "seeded from " + seed.String()})
	if errors.Is(err, ErrConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keeper seed %s: %w", seed, err)
	}
	s.log.Info("seeded zookeeper configuration", "path", cli.path(configNode), "revision", rev.Seq, "from", seed.String())
	return nil
}

// publish makes c the running configuration.
func (s *Service) publish(c *config.Config, from string) {
	metricVersions.WithLabelValues("loaded").Inc()
	if s.holder == nil {
		s.holder = config.NewHolder(c)
		return
	}
	s.holder.Store(c)
	s.log.Info("config reloaded", "source", from, "apps", len(c.Apps))
}

func (s *Service) load(ctx context.Context) (*config.Config, error) {
	raw, err := s.cfg.Source.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("keeper load %s: %w", s.cfg.Source, err)
	}
	c, err := config.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("keeper load %s: %w", s.cfg.Source, err)
	}
	return c, nil
}

func (s *Service) watch(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.Reload(ctx)
	}
}

// Reload checks the source now and publishes a new valid version. It returns
// the error that made it keep the running version, or nil. With ZooKeeper,
// watches reload on their own; Reload reads the znode without waiting.
func (s *Service) Reload(ctx context.Context) error {
	switch {
	case s.zk != nil:
		return s.zk.reload(ctx)
	case s.holder == nil:
		return ErrNotStarted
	}
	changed, err := s.cfg.Source.Changed(ctx)
	if err != nil || !changed {
		return err
	}
	c, err := s.load(ctx)
	if err != nil {
		metricVersions.WithLabelValues("refused").Inc()
		s.log.Error("config refused, keeping the running version", "err", err)
		return err
	}
	s.publish(c, s.cfg.Source.String())
	return nil
}

// Holder publishes the current configuration; valid after Start.
func (s *Service) Holder() *config.Holder { return s.holder }

// Directory is the membership directory.
func (s *Service) Directory() *Directory { return s.dir }

// ZK is the ZooKeeper session after Start, nil with a Source.
func (s *Service) ZK() *ZKClient {
	if s.zk == nil {
		return nil
	}
	return s.zk.cli
}

// Shutdown stops watching and, with ZooKeeper, ends the session, which
// removes this process's members at once. It is idempotent.
func (s *Service) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if s.zk != nil {
		s.dir.setChanged(nil)
		s.zk.cli.Close()
	}
	return err
}
