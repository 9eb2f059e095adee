// Package system assembles the services of one lcpush process (keeper,
// register, saver, coordinator, room, center, dispatcher and the admin
// port), wired for direct in-process calls or, with ZooKeeper, as members
// of a cluster. The command (main.go) parses flags into Options and calls
// Start; tests start a whole system on random ports the same way
// (internal/testkit/systest).
package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lcpush/lcpush/center"
	"github.com/lcpush/lcpush/coordinator"
	"github.com/lcpush/lcpush/dispatcher"
	"github.com/lcpush/lcpush/keeper"
	"github.com/lcpush/lcpush/pkg/admin"
	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/idgen"
	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/remote"
	"github.com/lcpush/lcpush/pkg/rpc"
	"github.com/lcpush/lcpush/register"
	"github.com/lcpush/lcpush/room"
	"github.com/lcpush/lcpush/saver"
)

// Targets a process can run. "all" is every one of them.
var allTargets = []string{"keeper", "register", "saver", "coordinator", "room", "center", "dispatcher"}

// needs lists, per target, the services it calls. Without ZooKeeper (no
// cluster) a target runs only when what it needs runs in the same process.
var needs = map[string][]string{
	"register":    {"keeper"},
	"saver":       {"keeper"},
	"coordinator": {"keeper", "room"},
	"room":        {"keeper", "register", "saver", "coordinator"},
	"center":      {"keeper", "register", "saver", "room"},
	"dispatcher":  {"keeper", "room"},
}

// Options say what one process runs and where. Flags fill it (main.go); tests
// build it directly with ":0"-style addresses.
type Options struct {
	Targets    []string // subset of allTargets, or "all"
	ConfigPath string   // YAML file; empty = DemoConfig
	// DemoConfig is the published demo configuration (config.demo.yaml,
	// embedded in the command): the configuration when ConfigPath is
	// empty, and the source of the published keys whose presence in the
	// running configuration turns demo mode on (loopback only). main sets
	// it; without it there is no demo mode and ConfigPath (or ZooKeeper)
	// is required.
	DemoConfig   []byte
	DataDir      string // saver's embedded store lives here
	Store        string // "bolt" (durable, default), "memory" or "redis" (Redis + MySQL)
	RoomID       string
	RoomAddr     string
	PublicAddr   string // what the dispatcher hands to clients; default the bound room address
	CenterAddr   string // empty: ":8000", or loopback with the demo keys (resolveListen)
	DispatchAddr string // empty: ":8001", or loopback with the demo keys
	AdminAddr    string // empty: "127.0.0.1:9000"; with the demo keys loopback only
	NodeID       int    // message-id node, 0..1023
	IDC          string
	ConfigPoll   time.Duration
	// WSAddr is the room's WebSocket listen address (PROTOCOL.md,
	// "Transports", path /v1/ws), on the room's engine next to RoomAddr;
	// empty: no WebSocket. Unless PublicWS is set, the room announces its
	// bound address as ws://host:port/v1/ws (a wildcard host as loopback).
	WSAddr string
	// PublicWS, PublicTLS and PublicWSS are the room's public addresses of
	// the other transports, announced in membership next to PublicAddr (the
	// TCP one) and handed out by the dispatcher for ?transport=ws, tls, wss.
	// PublicWS: ws:// URLs or host:port, normalised to ws://host:port/v1/ws;
	// PublicTLS: host:port of the TLS terminator in front of this room;
	// PublicWSS: wss:// URLs or host:port of the terminator, normalised to
	// wss://host:port/v1/ws (push.WSURL). Empty: the room is not announced
	// for that transport.
	PublicWS  []string
	PublicTLS []string
	PublicWSS []string
	// ZKServers, when set, takes configuration and membership from
	// ZooKeeper under ZKRoot; ConfigPath (or the demo config) seeds an empty tree.
	ZKServers []string
	ZKRoot    string
	// ZKAuth, when set, is the ZooKeeper digest credential: every znode
	// of the tree gets its ACL (no world access).
	ZKAuth keeper.ZKAuth
	// ID names this process's instances in membership (default ROLE-1);
	// rooms use RoomID.
	ID string
	// RPCAddr is where a cluster process serves internal RPC; RPCAdvertise
	// is the address others dial (default: the bound one, loopback for a
	// wildcard bind).
	RPCAddr      string
	RPCAdvertise string
	// DrainSpread and DrainWait shape a room's shutdown in a cluster: its
	// clients are told (REDIRECT) to reconnect to the other rooms after a
	// random delay of up to DrainSpread, and the room waits up to DrainWait
	// for them to leave before it kicks the rest (KICK server_shutdown).
	// DrainWait 0 skips the drain.
	DrainSpread time.Duration
	DrainWait   time.Duration
	// RedisAddrs, RedisCluster and MySQLDSN configure Store "redis".
	RedisAddrs   []string
	RedisCluster bool
	MySQLDSN     string
	Logger       *slog.Logger
}

func (o *Options) defaults() {
	if len(o.Targets) == 0 {
		o.Targets = []string{"all"}
	}
	if o.DataDir == "" {
		o.DataDir = "data"
	}
	if o.Store == "" {
		o.Store = "bolt"
	}
	if o.RoomID == "" {
		o.RoomID = "room-1"
	}
	if o.RPCAddr == "" {
		o.RPCAddr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// resolveTargets expands "all" and checks that every target's dependencies run here.
func resolveTargets(in []string, cluster bool) (map[string]bool, error) {
	run := make(map[string]bool)
	for _, t := range in {
		for _, t := range strings.Split(t, ",") {
			t = strings.TrimSpace(t)
			switch {
			case t == "all":
				for _, a := range allTargets {
					run[a] = true
				}
			case slices.Contains(allTargets, t):
				run[t] = true
			default:
				return nil, fmt.Errorf("unknown target %q (want all or a list of %s)", t, strings.Join(allTargets, ","))
			}
		}
	}
	run["keeper"] = true // every process reads configuration
	if cluster {
		return run, nil // the others are reached over RPC
	}
	for t := range run {
		for _, dep := range needs[t] {
			if !run[dep] {
				return nil, fmt.Errorf("target %s needs %s in the same process, or -zk for a cluster where it runs elsewhere", t, dep)
			}
		}
	}
	return run, nil
}

// System is one process's set of services, wired for direct in-process calls.
type System struct {
	opts   Options
	log    *slog.Logger
	ready  atomic.Bool
	closed atomic.Bool

	Keeper      *keeper.Service
	Register    *register.Service
	Saver       *saver.Service
	Coordinator *coordinator.Service
	Room        *room.Room
	Center      *center.Service
	Dispatcher  *dispatcher.Service
	Admin       *admin.Server

	rooms    *roomDirectory
	pool     *remote.Pool
	joined   [][2]string // (role, id) joined in membership
	stopLoad chan struct{}
	loadDone chan struct{}
	shutdown []func(context.Context) error // in start order; run in reverse
}

// Start builds and starts the services named in opts. On error everything
// already started is shut down.
func Start(ctx context.Context, opts Options) (_ *System, err error) {
	opts.defaults()
	run, err := resolveTargets(opts.Targets, len(opts.ZKServers) > 0)
	if err != nil {
		return nil, err
	}
	roomPub, err := opts.roomTransports()
	if err != nil {
		return nil, err
	}
	s := &System{opts: opts, log: opts.Logger, rooms: newRoomDirectory()}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = s.Shutdown(sctx)
		}
	}()
	log := opts.Logger

	var src keeper.Source
	switch {
	case opts.ConfigPath != "":
		src = &keeper.FileSource{Path: opts.ConfigPath}
	case len(opts.DemoConfig) > 0:
		src = &keeper.BytesSource{Name: "demo", Data: opts.DemoConfig}
	case len(opts.ZKServers) == 0:
		return nil, errors.New("no configuration: set ConfigPath (or DemoConfig)")
	}
	kcfg := keeper.Config{Source: src, PollEvery: opts.ConfigPoll, Logger: log.With("svc", "keeper")}
	if len(opts.ZKServers) > 0 {
		kcfg.Source = nil
		kcfg.ZK = keeper.ZKConfig{Servers: opts.ZKServers, Root: opts.ZKRoot, Auth: opts.ZKAuth, Seed: src, Logger: kcfg.Logger}
	}
	if s.Keeper, err = keeper.New(kcfg); err != nil {
		return nil, err
	}
	if err = s.start(ctx, s.Keeper.Start, s.Keeper.Shutdown); err != nil {
		return nil, err
	}
	holder := s.Keeper.Holder()
	demo, err := resolveListen(&opts, holder.Load(), run)
	if err != nil {
		return nil, err
	}
	s.opts = opts
	if demo {
		log.Warn("DEMO MODE: the configuration holds the published demo keys (config.demo.yaml): " +
			"the Center API, dispatcher and admin port listen on loopback only; use -config with your own keys for anything else")
	}

	s.Admin = admin.New(admin.Config{
		Addr:     opts.AdminAddr,
		Ready:    s.readyCheck,
		AdminKey: func() string { return holder.Load().AdminKey },
		Logger:   log.With("svc", "admin"),
	})
	if err = s.start(ctx, s.Admin.Start, s.Admin.Shutdown); err != nil {
		return nil, err
	}

	cluster := len(opts.ZKServers) > 0
	dir := s.Keeper.Directory()
	epoch := time.Now().UnixNano()
	memberID := func(role string) string {
		if opts.ID != "" {
			return opts.ID
		}
		return role + "-1"
	}

	// The dependencies each service calls: local services in one process;
	// in a cluster, RPC clients that route by ZooKeeper membership.
	var (
		roomReg     room.Register
		centerReg   center.Register
		roomSaver   room.Saver
		centerSaver center.Saver
		coord       room.Coordinator
		regs        *remote.Registers
	)
	if cluster {
		s.pool = remote.NewPool(rpc.ClientConfig{Logger: log.With("svc", "rpc-client")})
		regs = remote.NewRegisters(dir, s.pool, remote.RegistersConfig{Logger: log.With("svc", "registers")})
		roomReg, centerReg = regs, regs
		rs := remote.NewSaver(dir, s.pool)
		roomSaver, centerSaver = rs, rs
		coord = remote.NewCoordinator(dir, s.pool)
		s.rooms.remote = remote.NewRooms(dir, s.pool)
	}

	if run["register"] {
		if s.Register, err = register.New(register.Config{Logger: log.With("svc", "register")}); err != nil {
			return nil, err
		}
		if err = s.start(ctx, s.Register.Start, s.Register.Shutdown); err != nil {
			return nil, err
		}
		if !cluster {
			roomReg, centerReg = s.Register, s.Register
		}
	}
	if run["saver"] {
		st, err := openStore(ctx, opts, holder.Load().Saver)
		if err != nil {
			return nil, err
		}
		if s.Saver, err = saver.New(saver.Config{Logger: log.With("svc", "saver"), ExpireEvery: holder.Load().Saver.ExpireEvery}, st); err != nil {
			_ = st.Close()
			return nil, err
		}
		if err = s.start(ctx, s.Saver.Start, s.Saver.Shutdown); err != nil {
			return nil, err
		}
		roomSaver, centerSaver = s.Saver, s.Saver
	}
	if run["coordinator"] {
		if s.Coordinator, err = coordinator.New(coordinator.Config{Logger: log.With("svc", "coordinator")},
			coordinator.Deps{Config: holder, Rooms: s.rooms}); err != nil {
			return nil, err
		}
		if err = s.start(ctx, s.Coordinator.Start, s.Coordinator.Shutdown); err != nil {
			return nil, err
		}
		coord = s.Coordinator
	}
	if run["room"] {
		if s.Room, err = room.New(room.Config{
			ID: opts.RoomID, Addr: opts.RoomAddr, WSAddr: opts.WSAddr, PublicAddr: opts.PublicAddr, Logger: log.With("svc", "room"),
		}, room.Deps{Config: holder, Register: roomReg, Saver: roomSaver, Coordinator: coord}); err != nil {
			return nil, err
		}
		if err = s.start(ctx, s.Room.Start, s.Room.Shutdown); err != nil {
			return nil, err
		}
		s.rooms.add(s.Room)
		if regs != nil {
			regs.SetSource(s.Room.Sessions) // re-fill a register that restarted empty
			regs.SetOnRefilled(s.Room.Redeliver)
		}
	}
	if regs != nil {
		if err = s.start(ctx, regs.Start, regs.Shutdown); err != nil {
			return nil, err
		}
	}

	// Internal RPC: the services other processes call.
	var rpcAddr string
	if cluster && (run["register"] || run["saver"] || run["coordinator"] || run["room"]) {
		srv, err := rpc.NewServer(rpc.ServerConfig{Addr: opts.RPCAddr, Logger: log.With("svc", "rpc-server")})
		if err != nil {
			return nil, err
		}
		if s.Register != nil {
			remote.ServeRegister(srv, s.Register, remote.MapError(register.ErrInvalid, remote.ErrInvalid))
		}
		if s.Saver != nil {
			remote.ServeSaver(srv, s.Saver)
		}
		if s.Coordinator != nil {
			remote.ServeCoordinator(srv, s.Coordinator, remote.MapError(coordinator.ErrNoCallback, remote.ErrNoCallback))
		}
		if s.Room != nil {
			remote.ServeRoom(srv, s.Room)
		}
		if err = s.start(ctx, srv.Start, srv.Shutdown); err != nil {
			return nil, err
		}
		rpcAddr = publicAddr(opts.RPCAdvertise, srv.Addr())
	}
	join := func(role, id string, addrs ...string) {
		dir.Join(push.Member{Role: role, ID: id, RPCAddr: rpcAddr, Addrs: addrs, IDC: opts.IDC, Epoch: epoch})
		s.joined = append(s.joined, [2]string{role, id})
	}
	for _, role := range []string{"register", "saver", "coordinator"} {
		if run[role] {
			join(role, memberID(role))
		}
	}
	if s.Room != nil {
		pub := publicAddr(opts.PublicAddr, s.Room.Addr())
		if opts.PublicAddr == "" && pub != s.Room.Addr() {
			log.Warn("room bound to all interfaces: the dispatcher hands out "+pub+"; set -room-public for other hosts", "bound", s.Room.Addr())
		}
		// The room's member: its client addresses of every transport,
		// what the dispatcher hands out (in one process too: it reads the
		// same directory).
		// A room serving WebSocket with no PublicWS announces its bound
		// WebSocket address (a wildcard host as loopback, as for TCP).
		wsAddrs := roomPub.ws
		if len(wsAddrs) == 0 && s.Room.WSAddr() != "" {
			u, err := push.WSURL(push.TransportWS, publicAddr("", s.Room.WSAddr()))
			if err != nil {
				return nil, err
			}
			wsAddrs = []string{u}
		}
		dir.Join(push.Member{Role: "room", ID: s.Room.ID(), RPCAddr: rpcAddr, Addrs: []string{pub},
			TLSAddrs: roomPub.tls, WSAddrs: wsAddrs, WSSAddrs: roomPub.wss, IDC: opts.IDC, Epoch: epoch})
		s.joined = append(s.joined, [2]string{"room", s.Room.ID()})
		s.startLoadReports(dir, s.Room)
	}

	if run["center"] {
		ids, err := idgen.New(opts.NodeID)
		if err != nil {
			return nil, err
		}
		if s.Center, err = center.New(center.Config{Addr: opts.CenterAddr, ID: memberID("center"), Logger: log.With("svc", "center")}, center.Deps{
			Config: holder, IDs: ids, Register: centerReg, Saver: centerSaver, Rooms: s.rooms,
			Centers: func() int { return dir.Count("center") },
			CenterIDs: func() []string {
				ms := dir.Members("center")
				ids := make([]string, len(ms))
				for i, m := range ms {
					ids[i] = m.ID
				}
				return ids
			},
		}); err != nil {
			return nil, err
		}
		if err = s.start(ctx, s.Center.Start, s.Center.Shutdown); err != nil {
			return nil, err
		}
		join("center", memberID("center"))
	}
	if run["dispatcher"] {
		if s.Dispatcher, err = dispatcher.New(dispatcher.Config{Addr: opts.DispatchAddr, Logger: log.With("svc", "dispatcher")},
			dir); err != nil {
			return nil, err
		}
		if err = s.start(ctx, s.Dispatcher.Start, s.Dispatcher.Shutdown); err != nil {
			return nil, err
		}
		join("dispatcher", memberID("dispatcher"))
	}
	s.ready.Store(true)
	log.Info("started", "targets", opts.Targets, "room", s.RoomAddr(), "center", s.CenterAddr(),
		"dispatcher", s.DispatchAddr(), "admin", s.Admin.Addr())
	return s, nil
}

// roomAddrs are a room's announced addresses of the transports besides TCP.
type roomAddrs struct{ tls, ws, wss []string }

// roomTransports checks and normalises PublicTLS, PublicWS and PublicWSS.
func (o *Options) roomTransports() (roomAddrs, error) {
	var out roomAddrs
	norm := func(list []string, name string, f func(string) (string, error)) ([]string, error) {
		var got []string
		for _, a := range list {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			n, err := f(a)
			if err != nil {
				return nil, fmt.Errorf("room public %s address: %w", name, err)
			}
			if !slices.Contains(got, n) {
				got = append(got, n)
			}
		}
		return got, nil
	}
	var err error
	if out.tls, err = norm(o.PublicTLS, push.TransportTLS, func(a string) (string, error) {
		return a, push.CheckHostPort(a)
	}); err != nil {
		return out, err
	}
	if out.ws, err = norm(o.PublicWS, push.TransportWS, func(a string) (string, error) {
		return push.WSURL(push.TransportWS, a)
	}); err != nil {
		return out, err
	}
	if out.wss, err = norm(o.PublicWSS, push.TransportWSS, func(a string) (string, error) {
		return push.WSURL(push.TransportWSS, a)
	}); err != nil {
		return out, err
	}
	return out, nil
}

// publicAddr is the address clients are told to use: the configured one, or
// the bound one with a wildcard host replaced by loopback (good on one machine).
func publicAddr(configured, bound string) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return bound
}

// demoKeys are the app secrets, API keys and admin key of the embedded demo
// configuration. They are published (README, config.demo.yaml): whoever
// reaches a Center API, dispatcher or admin port that accepts them acts as
// the demo apps or as the operator.
// No demo configuration (nil): no keys.
func demoKeys(demo []byte) (map[string]bool, error) {
	if len(demo) == 0 {
		return nil, nil
	}
	cfg, err := config.Parse(demo)
	if err != nil {
		return nil, fmt.Errorf("embedded demo config: %w", err)
	}
	keys := map[string]bool{cfg.AdminKey: true}
	for _, a := range cfg.Apps {
		keys[a.Secret], keys[a.APIKey] = true, true
	}
	delete(keys, "")
	return keys, nil
}

// usesDemoKeys reports whether cfg holds any of the published demo keys of
// the demo configuration demo: that configuration, or a file copied from it.
func usesDemoKeys(demo []byte, cfg *config.Config) (bool, error) {
	keys, err := demoKeys(demo)
	if err != nil {
		return false, err
	}
	if keys[cfg.AdminKey] {
		return true, nil
	}
	for _, a := range cfg.Apps {
		if keys[a.Secret] || keys[a.APIKey] {
			return true, nil
		}
	}
	return false, nil
}

// errDemoKeys refuses to start a service holding the demo keys off loopback.
var errDemoKeys = errors.New("demo keys are published: listen on loopback or use -config with your own keys")

// Default listen addresses of the HTTP services, normally and in demo mode.
const (
	defaultCenterAddr       = ":8000"
	defaultDispatchAddr     = ":8001"
	DefaultAdminAddr        = "127.0.0.1:9000" // the -admin-addr default
	demoDefaultCenterAddr   = "127.0.0.1:8000"
	demoDefaultDispatchAddr = "127.0.0.1:8001"
)

// resolveListen fills the empty Center API, dispatcher and admin addresses
// of o and reports whether cfg is in demo mode (it holds published demo
// keys). In demo mode those services default to loopback, and an address
// that is not loopback, for a service this process runs, is refused. The
// room's client address is left as it is: devices present tokens, never API
// or admin keys (with the published demo secrets anyone can sign tokens for
// the demo apps, which reach only the demo apps' own users).
func resolveListen(o *Options, cfg *config.Config, run map[string]bool) (demo bool, err error) {
	if demo, err = usesDemoKeys(o.DemoConfig, cfg); err != nil {
		return false, err
	}
	center, dispatch := defaultCenterAddr, defaultDispatchAddr
	if demo {
		center, dispatch = demoDefaultCenterAddr, demoDefaultDispatchAddr
	}
	if o.CenterAddr == "" {
		o.CenterAddr = center
	}
	if o.DispatchAddr == "" {
		o.DispatchAddr = dispatch
	}
	if o.AdminAddr == "" {
		o.AdminAddr = DefaultAdminAddr
	}
	if !demo {
		return false, nil
	}
	check := []struct {
		on         bool
		flag, addr string
	}{
		{run["center"], "-center-addr", o.CenterAddr},
		{run["dispatcher"], "-dispatch-addr", o.DispatchAddr},
		{true, "-admin-addr", o.AdminAddr},
	}
	for _, c := range check {
		if c.on && !loopbackAddr(c.addr) {
			return true, fmt.Errorf("%s %s: %w", c.flag, c.addr, errDemoKeys)
		}
	}
	return true, nil
}

// loopbackAddr reports whether a listen address binds loopback only: a
// loopback IP or "localhost". A wildcard (":8000", "0.0.0.0:8000") or any
// other host is not.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func openStore(ctx context.Context, opts Options, cfg config.Saver) (saver.Store, error) {
	lim := saver.Limits{MaxLoads: cfg.MaxLoads, InboxCap: cfg.InboxCap}
	switch opts.Store {
	case "memory":
		return saver.NewMemoryWith(lim), nil
	case "bolt":
		if err := os.MkdirAll(opts.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		return saver.OpenBoltWith(filepath.Join(opts.DataDir, "saver.db"), saver.BoltOptions{Limits: lim, Logger: opts.Logger, BatchDelay: cfg.BoltBatchDelay})
	case "redis":
		if len(opts.RedisAddrs) == 0 || opts.MySQLDSN == "" {
			return nil, errors.New("-store=redis needs -redis and -mysql")
		}
		return saver.DialRedis(ctx, &redis.UniversalOptions{Addrs: opts.RedisAddrs, IsClusterMode: opts.RedisCluster},
			opts.MySQLDSN, saver.RedisOptions{Limits: lim, DurableQueue: cfg.DurableQueue, ReconcileEvery: cfg.ReconcileEvery, Logger: opts.Logger})
	}
	return nil, fmt.Errorf("unknown store %q (want bolt, memory or redis)", opts.Store)
}

func (s *System) start(ctx context.Context, start, stop func(context.Context) error) error {
	if err := start(ctx); err != nil {
		return err
	}
	s.shutdown = append(s.shutdown, stop)
	return nil
}

func (s *System) readyCheck(context.Context) error {
	if !s.ready.Load() || s.closed.Load() {
		return errors.New("starting or stopping")
	}
	return nil
}

// Shutdown stops the services in reverse start order: the room first tells
// its clients to go (KICK server_shutdown) while storage is still up. It is
// idempotent.
func (s *System) Shutdown(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.Keeper != nil { // others stop routing here before the services go
		for _, m := range s.joined {
			s.Keeper.Directory().Leave(m[0], m[1])
		}
	}
	if s.stopLoad != nil {
		close(s.stopLoad)
		<-s.loadDone
	}
	s.drain(ctx)
	var errs []error
	for i := len(s.shutdown) - 1; i >= 0; i-- {
		if err := s.shutdown[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.pool != nil {
		if err := s.pool.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RoomAddr is the room's bound client address ("" when not running here).
func (s *System) RoomAddr() string {
	if s.Room == nil {
		return ""
	}
	return s.Room.Addr()
}

// RoomWSAddr is the room's bound WebSocket address ("" when the room is not
// running here or serves no WebSocket).
func (s *System) RoomWSAddr() string {
	if s.Room == nil {
		return ""
	}
	return s.Room.WSAddr()
}

// CenterAddr is the Center API's bound address.
func (s *System) CenterAddr() string {
	if s.Center == nil {
		return ""
	}
	return s.Center.Addr()
}

// DispatchAddr is the dispatcher's bound address.
func (s *System) DispatchAddr() string {
	if s.Dispatcher == nil {
		return ""
	}
	return s.Dispatcher.Addr()
}

// startLoadReports publishes the room's connection count in membership every
// few seconds (each change is one ZooKeeper write, so not per connection).
func (s *System) startLoadReports(dir *keeper.Directory, r *room.Room) {
	s.stopLoad, s.loadDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.loadDone)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stopLoad:
				return
			case <-t.C:
				dir.SetLoad("room", r.ID(), r.Online())
			}
		}
	}()
}

// drain tells the room's clients to move to the other live rooms, spread
// over DrainSpread so they do not all land at once, and waits (up to
// DrainWait) for them to go: a restart without dropping everyone at once.
func (s *System) drain(ctx context.Context) {
	if s.Room == nil || s.Keeper == nil || s.opts.DrainWait <= 0 {
		return
	}
	addrs := map[string][]string{}
	n := 0
	for _, m := range s.Keeper.Directory().Members("room") {
		if m.ID != s.Room.ID() {
			for _, tr := range push.Transports {
				a := m.TransportAddrs(tr)
				addrs[tr] = append(addrs[tr], a...)
				n += len(a)
			}
		}
	}
	if n == 0 {
		return // nowhere to send them: Shutdown kicks with server_shutdown
	}
	told := s.Room.Drain(ctx, addrs, int(s.opts.DrainSpread/time.Millisecond))
	s.log.Info("draining: clients redirected", "clients", told, "to", addrs, "wait", s.opts.DrainWait)
	deadline := time.NewTimer(s.opts.DrainWait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.Room.Online() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			s.log.Info("drain time over", "still_connected", s.Room.Online())
			return
		case <-tick.C:
		}
	}
}
