// Package remote owns the RPC bindings of the service APIs, for when the
// services run as separate processes: the message codecs of every method
// (pkg/rpc/wire, no reflection), the method ids, server bindings that serve
// any value implementing an API on a *rpc.Server (ServeRegister, ServeSaver,
// ServeCoordinator, ServeRoom), single-target clients implementing the same
// method sets over one *rpc.Client, and cluster clients that route by
// membership (Registers, Saver, Coordinator, Rooms).
//
// It imports no service: the API interfaces below repeat the services'
// method signatures, and the assembly passes the services themselves.
//
// # Method ids
//
// Ids are part of the wire contract between processes of different
// versions: they never change meaning and are never reused.
//
//	register    0x0101 Register  0x0102 Unregister  0x0103 SetApps  0x0104 Get
//	            0x0105 Lookup    0x0106 Scan        0x0107 Counts   0x0108 DropRoom
//	            0x0109 Restore
//	saver       0x0201 Save      0x0202 SaveBroadcast 0x0203 Load   0x0204 Ack
//	            0x0205 Stats     0x0206 UserStats  0x0207 OpenStatus 0x0208 AddSent
//	            0x0209 Status    0x020a UserState  0x020b Enqueue  0x020c Dequeue
//	            0x020d Queued    0x020e QueueOwners 0x020f Claim
//	            0x0210 CreateJob 0x0211 Job        0x0212 RunningJobs 0x0213 ClaimTask
//	            0x0214 UpdateTask 0x0215 FinishJob 0x0216 Checkpoint
//	            0x0217 AckMany
//	coordinator 0x0301 Kick      0x0302 Upstream    0x0303 Status
//	room        0x0401 Push      0x0402 Kick        0x0403 Sessions 0x0404 Broadcast
//
// Register Scan pages through one register's sessions; its caller is the
// room's reconciliation (Registers, ReconcileEvery), not a broadcast:
// broadcasts are run by the rooms themselves (room Broadcast). DropRoom's
// caller is the room reaper (Registers, ReapRoomsAfter, reap.go).
//
// Saver Ack and UserStats act for apps, the tenants of the platform: an Ack
// request carries the apps it acts for after its ids (uid | ids | apps) and
// touches only their messages; a UserStats request carries one app after
// the uid (uid | app, 0 meaning every app). Both fields were added to the
// first encodings, and a request without them is refused as malformed
// (rpc.CodeBadRequest on the caller's side), never read as "no app" or "every
// app": during a rolling upgrade an old room's ACKs fail (the messages are
// delivered again later) and an old center gets no counts, rather than one
// app acting on another's messages. Saver Status and UserState carry the
// app whose message is asked for (app | id, app | id | uid): another app's
// message answers as unknown (app 0, which no app has, reads any app's:
// operators only).
//
// # Errors
//
// pkg/rpc carries push.ErrOverloaded and push.ErrUnavailable by itself. This
// package adds the codes below (from rpc.CodeUser), so that errors.Is holds
// on the calling side for:
//
//   - push.ErrClosed (CodeClosed): the remote service was shut down. The
//     error also matches push.ErrUnavailable: for the caller the dependency
//     is down, and another instance may be tried.
//   - ErrNoCallback (CodeNoCallback): coordinator.ErrNoCallback.
//   - ErrInvalid (CodeInvalid): a service's invalid-argument error
//     (register.ErrInvalid, saver.ErrInvalid).
//
// A service sentinel this package cannot import is mapped with a
// ServeOption, e.g.
//
//	remote.ServeCoordinator(srv, c, remote.MapError(coordinator.ErrNoCallback, remote.ErrNoCallback))
//
// Any other handler error reaches the caller as an *rpc.Error with
// rpc.CodeInternal and the error's text.
//
// # Codecs
//
// Integers of fixed meaning and width (ids, connection ids, app ids) are
// fixed-size big-endian; counts and signed values are varints; strings and
// payloads are length-prefixed. Decoders read with a bounds check on every
// field, check every element count against the bytes left before they
// allocate, copy what they keep (request buffers are reused), and ignore
// trailing bytes so that a later version may append fields.
package remote
