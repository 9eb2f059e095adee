// Package push holds the plain data types that cross service boundaries:
// messages, sessions, deliveries, upstream data and status events. Every
// service speaks in these types, so that the same values travel through
// direct in-process calls today and through the pipelined RPC library when
// services run as separate processes. Besides the types it holds only the rules
// their values must pass everywhere (CheckUID, and the forms of announced
// client addresses: CheckHostPort, WSURL, HostPort), and imports nothing of
// the project.
package push

import "errors"

// QoS levels of a message.
const (
	QoS0 uint8 = 0 // best effort: not stored, dropped when the user is offline
	QoS1 uint8 = 1 // at least once: stored before sending, deleted on ACK
)

// KICK codes of the client protocol.
const (
	KickLoginElsewhere = 1
	KickAdmin          = 2
	KickBanned         = 3
	KickShutdown       = 4
)

// Shared sentinel errors. Services wrap them with context; callers test with
// errors.Is.
var (
	// ErrOverloaded means a bounded queue or pool is full: retry later.
	ErrOverloaded = errors.New("overloaded")
	// ErrUnavailable means a dependency is down.
	ErrUnavailable = errors.New("unavailable")
	// ErrClosed means the service was shut down.
	ErrClosed = errors.New("closed")
)

// Message is one push. ID is 64-bit, unique and time-ordered (pkg/idgen):
// per user, stored messages are delivered in ID order.
type Message struct {
	ID        uint64
	App       uint32
	QoS       uint8
	Expire    int64 // unix seconds; the message is dropped after it
	Broadcast bool  // addressed to every user of App, stored once
	Payload   []byte
}

// Expired reports whether the message is past its expiry at unix time now.
func (m *Message) Expired(now int64) bool { return m.Expire != 0 && now >= m.Expire }

// Session is where a user (uid) is connected: one connection on one room
// instance. A reconnect gets a new ConnID, which is what lets an old
// connection's late Unregister be ignored.
type Session struct {
	UID    string
	Room   string // room instance id
	ConnID uint64
	Apps   []uint32 // apps bound on the connection (the AUTH app first)
	Since  int64    // login time, unix seconds
	IP     string
}

// HasApp reports whether app is bound on the session.
func (s *Session) HasApp(app uint32) bool {
	for _, a := range s.Apps {
		if a == app {
			return true
		}
	}
	return false
}

// Target names one connection on a room that a push should reach.
type Target struct {
	UID    string
	ConnID uint64
}

// Upstream is data a client sent to a product (UPSTREAM frame).
type Upstream struct {
	App  uint32
	UID  string
	Type uint16
	Data []byte
	TS   int64 // unix milliseconds when the room received it
}

// Status events sent to products that subscribe.
const (
	EventOnline  = "online"
	EventOffline = "offline"
)

// StatusEvent says that a user went online or offline on a room.
type StatusEvent struct {
	App   uint32
	UID   string
	Event string // EventOnline or EventOffline
	Room  string
	TS    int64 // unix milliseconds
}

// Counts are online totals kept by register.
type Counts struct {
	Total   int            // online sessions
	PerApp  map[uint32]int // sessions with the app bound
	PerRoom map[string]int // sessions per room instance
	// Unanswered counts the register instances that could not be asked
	// (down or restarting): the totals leave their sessions out, so they
	// are a lower bound while it is not 0.
	Unanswered int
}

// StoreStats describe what the saver holds and has done.
type StoreStats struct {
	Pending       int64            // unicast messages stored and not yet ACKed or expired, one per (uid, message)
	PendingPerApp map[uint32]int64 // Pending split by app
	Broadcasts    int64            // live broadcast messages
	Saved         uint64           // unicast (uid, message) entries saved since start
	Acked         uint64           // entries deleted by ACK since start
	Expired       uint64           // entries dropped at TTL since start
	Parked        int64            // entries loaded too often without ACK: kept, no longer delivered
}

// Member is one live service instance (keeper membership).
//
// A room announces its public client addresses per transport (PROTOCOL.md,
// "Transports"): Addrs are the raw TCP ones (what every room had before the
// other transports, so a member with only Addrs is a TCP-only room), the
// others are empty when the room does not serve that transport.
type Member struct {
	Role    string   // "room", "register", "center", ...
	ID      string   // instance id, unique per role
	RPCAddr string   // internal address, empty in single-process mode
	Addrs   []string // public addresses (rooms: client TCP host:port)
	// TLSAddrs are host:port of the TLS terminators in front of the room
	// (TCP+TLS); WSAddrs and WSSAddrs are WebSocket URLs,
	// ws://host:port/v1/ws and wss://host:port/v1/ws (see WSURL).
	TLSAddrs []string
	WSAddrs  []string
	WSSAddrs []string
	IDC      string // data centre
	Load     int    // e.g. connections held
	// Epoch changes when the instance restarts (its start time, unix nanos):
	// a register that restarted empty is told apart from one that stayed.
	Epoch int64
}

// Client transports (PROTOCOL.md, "Transports"), as the dispatcher's
// transport parameter names them.
const (
	TransportTCP = "tcp" // raw TCP, the default
	TransportTLS = "tls" // TCP+TLS through a terminator
	TransportWS  = "ws"  // WebSocket
	TransportWSS = "wss" // WebSocket over TLS through a terminator
)

// Transports lists the client transports, the default first.
var Transports = []string{TransportTCP, TransportWS, TransportTLS, TransportWSS}

// TransportAddrs returns the member's public addresses of transport t (one
// of the Transport constants), nil for an unknown one. The slice is the
// member's.
func (m *Member) TransportAddrs(t string) []string {
	switch t {
	case TransportTCP:
		return m.Addrs
	case TransportTLS:
		return m.TLSAddrs
	case TransportWS:
		return m.WSAddrs
	case TransportWSS:
		return m.WSSAddrs
	}
	return nil
}

// Kinds of a message, as its delivery status names them.
const (
	KindUnicast   = "unicast"
	KindMulticast = "multicast"
	KindBroadcast = "broadcast"
)

// States of one uid's copy of a message (the saver's UserState).
const (
	StateQueued  = "queued"  // accepted, not yet stored nor sent (the center's send queue)
	StateStored  = "stored"  // stored for the uid, not yet written to its socket
	StateSent    = "sent"    // written to the uid's socket at least once, not ACKed
	StateAcked   = "acked"   // the uid ACKed it
	StateExpired = "expired" // dropped at its TTL without an ACK
	StateParked  = "parked"  // loaded too often without an ACK: no longer delivered
	StateUnknown = "unknown" // nothing known for the uid (not a recipient, or nothing happened yet)
)

// MessageStatus is the delivery status of one message, kept by the saver
// for the message's TTL (see saver.Store.OpenStatus).
type MessageStatus struct {
	MsgID   uint64
	App     uint32
	Kind    string // KindUnicast, KindMulticast or KindBroadcast
	Created int64  // unix seconds
	Expires int64  // unix seconds
	Targets int64  // recipients the center addressed
	Stored  int64  // uids it was stored for (broadcast: 1 once stored)
	Sent    int64  // writes to sockets (a redelivery counts again)
	Acked   int64  // uids that ACKed it
	Expired int64  // uids whose copy was dropped at its TTL unACKed (broadcast: 1 once swept)
	Parked  int64  // uids for whom it was parked
}

// StatusDelta is a batch of writes of one message to sockets, as the room
// reports them: Sent writes, for UID ("" for a count-only delta, e.g. a
// broadcast). Targets, on a broadcast's record only, adds the connections a
// room's sub-task found when it started (the job's targets).
type StatusDelta struct {
	MsgID   uint64
	App     uint32
	UID     string
	Sent    int64
	Targets int64
}

// SessionEnd is a session that ended on a room, with the apps it had
// bound: the saver then writes those (uid, app) broadcast cursors to its
// durable copy (saver.Store.Checkpoint).
type SessionEnd struct {
	UID  string
	Apps []uint32
}

// QueuedPush is a push waiting in a center's send queue (API.md "Send
// queues"), journaled so another center can take it over.
type QueuedPush struct {
	Msg   Message  // ID, App, QoS, Expire, Payload; Broadcast false
	UIDs  []string // its recipients
	Owner string   // the member id of the center whose queue holds it
	At    int64    // unix milliseconds when it was queued
}
