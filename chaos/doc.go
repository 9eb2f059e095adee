// Package chaos is the chaos suite (issue 10): against a real cluster of
// the 9 processes of scripts/cluster.sh on real Redis, MariaDB and
// ZooKeeper it runs devices that ACK every QoS 1 push and pushers that send
// QoS 1 unicasts through both centers, injects faults one at a time (kill -9
// and restart of each role, Redis SIGKILL, MariaDB and ZooKeeper stopped),
// and reports per fault: accepted, delivered, lost, duplicates, API errors
// by status, time to recover, and messages that waited for a reconnect.
//
// The binary mounts it as `lcpush chaos` (Main); TestChaosShort in the root
// package runs a short version (Run) in the test command. It reuses the load
// tool's histograms (loadgen.Hist); its devices are its own raw-protocol
// clients, one goroutine each, because the chaos accounting needs every
// message id per device and per connection, which the load tool's epoll
// clients count but do not keep.
package chaos
