package remote

import (
	"fmt"

	"github.com/lcpush/lcpush/pkg/push"
	"github.com/lcpush/lcpush/pkg/rpc"
)

// Method ids of the register API.
const (
	MethodRegister   uint16 = 0x0101
	MethodUnregister uint16 = 0x0102
	MethodSetApps    uint16 = 0x0103
	MethodGet        uint16 = 0x0104
	MethodLookup     uint16 = 0x0105
	MethodScan       uint16 = 0x0106
	MethodCounts     uint16 = 0x0107
	MethodDropRoom   uint16 = 0x0108
	MethodRestore    uint16 = 0x0109
)

// Method ids of the saver API.
const (
	MethodSave          uint16 = 0x0201
	MethodSaveBroadcast uint16 = 0x0202
	MethodLoad          uint16 = 0x0203
	MethodAck           uint16 = 0x0204
	MethodStats         uint16 = 0x0205
	MethodUserStats     uint16 = 0x0206
	MethodOpenStatus    uint16 = 0x0207
	MethodAddSent       uint16 = 0x0208
	MethodStatus        uint16 = 0x0209
	MethodUserState     uint16 = 0x020a
	MethodEnqueue       uint16 = 0x020b
	MethodDequeue       uint16 = 0x020c
	MethodQueued        uint16 = 0x020d
	MethodQueueOwners   uint16 = 0x020e
	MethodClaim         uint16 = 0x020f
	MethodCreateJob     uint16 = 0x0210
	MethodJob           uint16 = 0x0211
	MethodRunningJobs   uint16 = 0x0212
	MethodClaimTask     uint16 = 0x0213
	MethodUpdateTask    uint16 = 0x0214
	MethodFinishJob     uint16 = 0x0215
	MethodCheckpoint    uint16 = 0x0216
	MethodAckMany       uint16 = 0x0217
)

// Method ids of the coordinator API.
const (
	MethodCoordKick     uint16 = 0x0301
	MethodCoordUpstream uint16 = 0x0302
	MethodCoordStatus   uint16 = 0x0303
)

// Method ids of the room API.
const (
	MethodRoomPush     uint16 = 0x0401
	MethodRoomKick     uint16 = 0x0402
	MethodRoomSessions uint16 = 0x0403
	MethodRoomBcast    uint16 = 0x0404
)

// Error codes of this package's error replies (see the package doc).
const (
	CodeClosed     = rpc.CodeUser + 1
	CodeNoCallback = rpc.CodeUser + 2
	CodeInvalid    = rpc.CodeUser + 3
)

// Errors a caller can test with errors.Is. ErrNoCallback and ErrInvalid are
// *rpc.Error values: they match any error reply with their code.
var (
	// ErrNoCallback is coordinator.ErrNoCallback across RPC: the app is
	// unknown or has no callback URL. The coordinator binding needs
	// MapError(coordinator.ErrNoCallback, ErrNoCallback) to send it.
	ErrNoCallback = rpc.NewError(CodeNoCallback, "app has no callback")
	// ErrInvalid is a service's invalid-argument error across RPC
	// (MapError(register.ErrInvalid, ErrInvalid), ...).
	ErrInvalid = rpc.NewError(CodeInvalid, "invalid argument")
	// ErrNoMember: no live member of the role can serve the call. It wraps
	// push.ErrUnavailable.
	ErrNoMember = fmt.Errorf("remote: no live member: %w", push.ErrUnavailable)
)
