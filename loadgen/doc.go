// Package loadgen is the load tool (issue 5): it opens many authenticated
// client connections to rooms on this machine, measures what they cost the
// server and how fast pushes reach them, and writes the figures the
// benchmarks document is made of. The lead's binary mounts it as a
// subcommand (lcpush bench ...); Main parses the rest.
//
// Client side it is event-driven: each process runs a few epoll loops of
// its own (loop.go) that also dial — raw non-blocking sockets, AUTH written
// at once — paced by a shared rate, with no goroutine per connection. Tokens
// and AUTH frames are built before the first dial, and source addresses are
// spread (a.b.c.d becomes a.b+k.c.d) so the kernel's source-port search
// stays short. Each connection sends AUTH with a token signed locally from
// the app secret, PINGs at the negotiated heartbeat (a once-a-second sweep
// per loop), counts pushes, measures delivery
// latency from the unix-nanosecond timestamp in the first 8 bytes of the
// payload (the next 8 bytes carry the fan-out round), and ACKs QoS 1 pushes
// with one ACK frame per read. Above -per-proc connections (18,000: the hard
// open-files limit is 20,000 per process) the tool re-runs itself as worker
// processes ("worker -config JSON"), each with a slice of N and its own
// source address 127.0.0.x, and merges the Stats they print as JSON lines.
// Only loopback addresses are accepted, and every run is bounded by -timeout.
//
// Scenarios (each starts the server itself unless -room names a running one):
//
//	lcpush bench idle -n 5000                 # (a) memory per idle connection
//	lcpush bench idle -n 5000 -target naive   # the same against the baseline
//	lcpush bench storm -n 17000 -max-conns 15000 -hb 10   # (b) connect storm past the cap
//	lcpush bench fanout -n 1000 -rounds 20 -stream 5s -stream-rate 20
//	lcpush bench fanout -n 1000 -target nats  # (c) against nats-server (or mqtt: mosquitto)
//	lcpush bench fanout -n 5000 -transport ws # the same over the room's WebSocket listener
//	lcpush bench fanout -n 5000 -target centrifugo  # against Centrifugo v6 (WebSocket, HTTP API)
//	lcpush bench unicast -n 10000 -rates 1000,5000 -qos 1   # (d) open-loop unicast
//	lcpush bench bcast-qos -runs 3            # issue 15: 60 s of broadcasts to 5,000, QoS 0 vs QoS 1 RSS
//	lcpush bench bcast -room A,B -api URL1,URL2 -n 100000 -qos 1 -bcast-rate 20000 -retry 10
//	lcpush bench smoke                        # idle, fanout, unicast; N=50, a few seconds
//	lcpush bench naive-server -addr 127.0.0.1:7100 -http 127.0.0.1:7101
//	lcpush bench compare results/run-X        # side-by-side tables and charts of a folder of runs
//
// scripts/bench.sh runs each scenario with the figures' settings, the
// server pinned on CPU 0 (-server-cpu, taskset) and the tool on CPU 1.
//
// storm counts connections the room closed before AUTH_OK (refused over
// room.max_conns, also read from lcpush_room_refused_total), then asks
// /readyz and waits one heartbeat for every PING to be answered. unicast
// schedules pushes to one random uid each on a fixed timeline and queues
// them to -senders goroutines, so a late API shows as latency from the
// scheduled time (no coordinated omission). The peers (peer.go) are
// started by the tool too (nats-server, mosquitto, centrifugo with a
// generated configuration, on a free loopback port); their minimal clients
// use a reader goroutine per connection (centrifugo.go: its JSON protocol
// over WebSocket, publishes through POST /api/publish).
//
// -transport ws (wsclient.go) makes the lcpush clients speak WebSocket to
// the room's -room-ws-addr listener (the started lcpush gets one) on the
// same epoll loops: the upgrade request and the masked AUTH message go out
// in one write, every client message is masked, each binary message from
// the server is one protocol frame.
//
// idle reads the server's RSS (/proc/PID/status), its Go heap in use after a
// forced GC (/debug/pprof/heap?gc=1, then go_memstats_heap_inuse_bytes from
// /metrics) and the kernel's TCP memory (/proc/net/sockstat, both ends of
// every loopback connection, reported apart) before and after connecting.
// fanout posts 256-byte broadcasts through the push API and records, per
// round, the time until the last client had it; then it pushes an open-loop
// stream and reports delivered messages per second, the backlog each second
// and whether it drained. The started lcpush runs with the demo apps and
// its API throttles opened (see benchConfig), -store memory.
//
// qos-stream (bcast.go) gives each broadcast of its stream a round id, so
// that every connection is checked to have had every one: a connection
// marks the rounds it had (a bit each), a round counts each connection once
// and a second copy is a dup. It samples the server's RSS every second.
// bcast-qos runs it at QoS 0 and then at QoS 1, each against a fresh
// server, -runs times, and reports the RSS ratio (median, min, max). bcast
// sends one broadcast at -bcast-rate, takes the rate from the clients' first
// and last receive and reads the job through every center of -api. -retry
// dials a login the server refused (closed before AUTH_OK, e.g. ERROR
// overloaded) again after a backoff, as an SDK would.
//
// Results go to -out/<scenario>-<target>-<N>-<time>/: result.json,
// report.md and SVG charts; the summary is printed too. The naive baseline
// (package naive) speaks the same protocol with a goroutine pair per
// connection, so the same commands measure both.
package loadgen
