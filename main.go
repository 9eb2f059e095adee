// Command lcpush is the push platform in one binary. With no arguments it
// runs every service in one process on the embedded demo configuration:
//
//	go run .
//
// -target picks the services a process runs; subcommands are tools:
//
//	lcpush [flags]                 run services (default -target=all)
//	lcpush client [flags]          example SDK client: receive and ACK pushes
//	lcpush keeper COMMAND          operator CLI for configuration in ZooKeeper
//	lcpush bench SCENARIO          load generator (smoke, idle, storm, fanout, unicast, compare)
//	lcpush chaos [flags]           faults one at a time against a 9-process cluster under load
//
// lcpush -h prints the subcommands and the server flags.
//
// The services live in their own packages; package system assembles them.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lcpush/lcpush/chaos"
	"github.com/lcpush/lcpush/keeper"
	"github.com/lcpush/lcpush/loadgen"
	"github.com/lcpush/lcpush/system"
)

// demoConfig is the published demo configuration: the configuration
// without -config, and the keys whose presence means demo mode.
//
//go:embed config.demo.yaml
var demoConfig []byte

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "client":
		err = runClient(args[1:])
	case len(args) > 0 && args[0] == "bench":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err = loadgen.Main(ctx, args[1:], os.Stdout, os.Stderr)
		stop()
	case len(args) > 0 && args[0] == "chaos":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err = chaos.Main(ctx, args[1:], os.Stdout, os.Stderr)
		stop()
	case len(args) > 0 && args[0] == "keeper":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err = keeper.RunCLI(ctx, args[1:], os.Stdout, os.Stderr)
		stop()
	case len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		err = runServer([]string{"-h"}) // prints usage and the server flags
	default:
		err = runServer(args)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "lcpush:", err)
		os.Exit(1)
	}
}

// usage prints the subcommands; the server's flag set adds its flags.
func usage() {
	fmt.Fprint(os.Stderr, `lcpush: a long-connection push platform

usage:
  lcpush [server flags]      run services (the server flags below)
  lcpush client [flags]      example client: receive pushes and ACK them
  lcpush keeper COMMAND      configuration and membership in ZooKeeper (lcpush keeper help)
  lcpush bench SCENARIO      load generator: smoke, idle, storm, fanout, unicast; compare DIR (lcpush bench -h)
  lcpush chaos [flags]       faults one at a time against a 9-process cluster under load (lcpush chaos -h)
`)
}

// defaultWSAddr is the WebSocket listen address of the out-of-the-box run
// (no -room-addr, no -room-ws-addr).
const defaultWSAddr = ":7001"

// freeWSAddr returns defaultWSAddr when the port can be bound now, else ""
// (with a note on stderr): a convenience default must not stop a server
// whose operator did not ask for WebSocket. Runs that choose their ports
// (tests, deployments) set -room-addr and get no default.
func freeWSAddr() string {
	ln, err := net.Listen("tcp", defaultWSAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "note: no WebSocket listener: %s is taken (%v); set -room-ws-addr\n", defaultWSAddr, err)
		return ""
	}
	_ = ln.Close()
	return defaultWSAddr
}

func runServer(args []string) error {
	fs := flag.NewFlagSet("lcpush", flag.ContinueOnError)
	fs.Usage = func() {
		usage()
		fmt.Fprintln(fs.Output(), "\nserver flags:")
		fs.PrintDefaults()
	}
	o := system.Options{DemoConfig: demoConfig}
	target := fs.String("target", "all", "services to run: all, or a comma list of keeper,register,saver,coordinator,room,center,dispatcher")
	fs.StringVar(&o.ConfigPath, "config", "", "configuration file (YAML); empty uses the embedded demo config (config.demo.yaml)")
	fs.StringVar(&o.DataDir, "data", "data", "data directory of the embedded message store")
	fs.StringVar(&o.Store, "store", "bolt", "message store: bolt (durable, embedded), memory, or redis (Redis hot store + MySQL durable copy)")
	redisAddrs := fs.String("redis", "", "Redis address(es) for -store=redis, comma separated")
	fs.BoolVar(&o.RedisCluster, "redis-cluster", false, "the -redis addresses are a Redis Cluster")
	fs.StringVar(&o.MySQLDSN, "mysql", "", "MySQL/MariaDB DSN for -store=redis, e.g. user:pass@tcp(127.0.0.1:3306)/lcpush")
	fs.StringVar(&o.RoomID, "room-id", "room-1", "room instance id")
	fs.StringVar(&o.RoomAddr, "room-addr", ":7000", "room client TCP listen address")
	fs.StringVar(&o.PublicAddr, "room-public", "", "room TCP address handed to clients by the dispatcher (transport=tcp; default: the bound address)")
	fs.StringVar(&o.WSAddr, "room-ws-addr", "", `room WebSocket listen address, path /v1/ws (default `+defaultWSAddr+` when -room-addr is left at its default and that port is free, so a browser connects out of the box; "": no WebSocket)`)
	publicWS := fs.String("room-public-ws", "", "room WebSocket address(es) handed out for transport=ws, comma separated: ws://host:port[/v1/ws] or host:port, announced as ws://host:port/v1/ws")
	publicTLS := fs.String("room-public-tls", "", "host:port of the TLS terminator(s) in front of this room's TCP port, handed out for transport=tls, comma separated")
	publicWSS := fs.String("room-public-wss", "", "WebSocket-over-TLS address(es) of the terminator(s) in front of this room, handed out for transport=wss, comma separated: wss://host:port[/v1/ws] or host:port, announced as wss://host:port/v1/ws")
	// Empty addresses are resolved once the configuration is known
	// (resolveListen): with the published demo keys, only loopback.
	fs.StringVar(&o.CenterAddr, "center-addr", "", `Center API listen address (default ":8000"; "127.0.0.1:8000", and loopback only, with the published demo keys)`)
	fs.StringVar(&o.DispatchAddr, "dispatch-addr", "", `dispatcher listen address (default ":8001"; "127.0.0.1:8001", and loopback only, with the published demo keys)`)
	fs.StringVar(&o.AdminAddr, "admin-addr", system.DefaultAdminAddr, "admin port: /healthz /readyz /metrics /debug/pprof (off loopback /metrics and pprof need the admin key; with the demo keys loopback only)")
	fs.IntVar(&o.NodeID, "node", 0, "message-id node number, unique per center process (0..1023)")
	fs.StringVar(&o.IDC, "idc", "", "data centre name of this process")
	zkServers := fs.String("zk", "", "ZooKeeper servers (host:port,...): configuration and membership from ZooKeeper instead of -config")
	fs.StringVar(&o.ZKRoot, "zk-root", "/lcpush", "root znode")
	zkAuthFile := fs.String("zk-auth-file", "", "file whose first line is the ZooKeeper digest credential user:password (mode 0600): every znode gets its ACL, no world access")
	zkAuth := fs.String("zk-auth", "", "ZooKeeper digest credential user:password, like -zk-auth-file but visible in ps: prefer the file")
	fs.StringVar(&o.ID, "id", "", "instance id of this process's services in membership (default ROLE-1; rooms use -room-id)")
	fs.StringVar(&o.RPCAddr, "rpc-addr", "127.0.0.1:0", "internal RPC listen address (cluster mode)")
	fs.StringVar(&o.RPCAdvertise, "rpc-advertise", "", "internal RPC address other processes dial (default: the bound one)")
	fs.DurationVar(&o.DrainSpread, "drain-spread", 5*time.Second, "on shutdown in a cluster, clients are redirected to other rooms over this long")
	fs.DurationVar(&o.DrainWait, "drain-wait", 8*time.Second, "on shutdown in a cluster, wait this long for redirected clients to leave (0: no drain)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log JSON instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.Targets = strings.Split(*target, ",")
	if *redisAddrs != "" {
		o.RedisAddrs = strings.Split(*redisAddrs, ",")
	}
	if *zkServers != "" {
		o.ZKServers = strings.Split(*zkServers, ",")
	}
	o.PublicWS, o.PublicTLS, o.PublicWSS = splitList(*publicWS), splitList(*publicTLS), splitList(*publicWSS)
	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })
	if !setFlags["room-ws-addr"] && !setFlags["room-addr"] && slices.ContainsFunc(o.Targets, func(t string) bool { return t == "all" || t == "room" }) {
		o.WSAddr = freeWSAddr()
	}
	var err error
	if o.ZKAuth, err = keeper.LoadZKAuth(*zkAuth, *zkAuthFile); err != nil {
		return err
	}
	if !o.ZKAuth.IsZero() && len(o.ZKServers) == 0 {
		return errors.New("-zk-auth and -zk-auth-file need -zk")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	if *logJSON {
		o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	} else {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sys, err := system.Start(ctx, o)
	if err != nil {
		return err
	}
	if o.ConfigPath == "" {
		o.Logger.Info("using the embedded demo config: apps 1 and 2, see README")
	}
	<-ctx.Done()
	o.Logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sys.Shutdown(sctx)
}

// splitList splits a comma separated flag value; empty is nil.
func splitList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	return strings.Split(v, ",")
}
