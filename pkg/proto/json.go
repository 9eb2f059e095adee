package proto

import (
	"encoding/json"
	"fmt"
)

// JSON bodies of the control frames. Unknown fields are ignored on receipt,
// so that peers can add fields (PROTOCOL.md allows new JSON fields).

// Auth is the AUTH body.
type Auth struct {
	UID    string `json:"uid"`
	Token  string `json:"token"`
	Device string `json:"device,omitempty"`
	Net    string `json:"net,omitempty"`
	HB     int    `json:"hb,omitempty"`
	SDK    string `json:"sdk,omitempty"`
}

// AuthOK is the AUTH_OK body.
type AuthOK struct {
	HB         int    `json:"hb"`
	Room       string `json:"room"`
	ServerTime int64  `json:"server_time"`
}

// Bind is the BIND body.
type Bind struct {
	Token string `json:"token"`
}

// Kick is the KICK body.
type Kick struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// Redirect is the REDIRECT body.
type Redirect struct {
	Addrs   []string `json:"addrs"`
	AfterMS int      `json:"after_ms"`
	Reason  string   `json:"reason"`
}

// Error is the ERROR body.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// KickReason returns the protocol's reason string for a KICK code.
func KickReason(code int) string {
	switch code {
	case 1:
		return "login_elsewhere"
	case 2:
		return "admin"
	case 3:
		return "banned"
	case 4:
		return "server_shutdown"
	}
	return "unknown"
}

// DecodeJSON decodes a JSON body into v; it fails on trailing data
// (json.Unmarshal checks the whole body first). Unmarshal, not a Decoder:
// every AUTH goes through here, and a Decoder with its read buffer cost
// ~750 bytes of garbage more per login.
func DecodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	return nil
}

// AppendJSON appends a frame whose body is v encoded as JSON. Control frames
// are rare, so this path may allocate.
func AppendJSON(dst []byte, h Header, v any) []byte {
	body, err := json.Marshal(v)
	if err != nil { // only our own types reach here
		body = []byte("{}")
	}
	return AppendFrame(dst, h, body)
}

// AppendError appends an ERROR frame answering the request with sequence seq.
func AppendError(dst []byte, seq uint32, code, msg string) []byte {
	return AppendJSON(dst, Header{Op: OpError, Seq: seq}, Error{Code: code, Message: msg})
}
