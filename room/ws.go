package room

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"

	"github.com/panjf2000/gnet/v2"

	"github.com/lcpush/lcpush/pkg/config"
	"github.com/lcpush/lcpush/pkg/proto"
	"github.com/lcpush/lcpush/pkg/proxyhdr"
	"github.com/lcpush/lcpush/pkg/wsframe"
)

// The WebSocket transport (PROTOCOL.md "Transports"), on the room's
// WebSocket listener (Config.WSAddr), built on pkg/wsframe:
//
//   - Handshake: the upgrade request (GET /v1/ws; subprotocol lcpush.v1
//     selected when offered; Origin checked against room.websocket.origins,
//     a request without Origin accepted; an optional sticky cookie) is
//     buffered in gnet's inbound buffer until complete, never read with a
//     blocking reader; wsframe bounds it (MaxRequest) and the auth deadline
//     bounds its time, as everything before AUTH_OK. A refusal (404, 403,
//     400, ...) is answered and the connection closed. First bytes that
//     are a PROXY signature are refused without an answer (proxy.go).
//   - Frames: each binary message is exactly one protocol frame, Len
//     included; its size is checked from the WebSocket header before it is
//     buffered (max_auth_frame before AUTH, max_frame after, plus the Len
//     field), a fragmented message is reassembled and counted whole. A
//     text message or a message that is not exactly one frame: ERROR
//     bad_frame; too large: ERROR frame_too_large; then a close frame and
//     the close. A WebSocket protocol error (unmasked frame, reserved bits,
//     bad control frame) gets only the close frame (1002). Pings are
//     answered with pongs (under the output budget) and, like pongs, count
//     as activity once authenticated; a client's close is echoed, then the
//     connection closes.
//   - Out: each protocol frame the room writes travels in its own binary
//     message, built on the loop's wire buffer (no allocation); before the
//     room closes a connection it sends a close frame: 1000 after KICK,
//     1008 after an ERROR for auth or policy, 1009 after frame_too_large,
//     1002 after a WebSocket protocol error (appendClose).

// Errors of the WebSocket transport. Those with a protocol ERROR code are
// wrapped proto errors (proto.Code names the code); the others are
// closeErrors, which close without an ERROR.
var (
	errWSTooLarge  = fmt.Errorf("websocket: message larger than the maximum frame: %w", proto.ErrTooLarge)
	errWSText      = fmt.Errorf("websocket: text message: %w", proto.ErrBadLen)
	errWSNotOne    = fmt.Errorf("websocket: a binary message must hold exactly one frame: %w", proto.ErrBadLen)
	errWSProtocol  = &closeError{reason: closeProtocol, msg: "websocket protocol error"}
	errWSPeerClose = &closeError{reason: closePeer, msg: "websocket close from the client"}
)

// wsConn is the WebSocket transport of one connection (loop-owned).
type wsConn struct {
	r   *Room
	s   *connState
	dec wsframe.Decoder
	// closeCode, when not 0, is the close code the transport decided (a
	// decoder error; the code of the client's close, echoed); peerClosed:
	// the client sent a close frame (echoed, with no body when its had none).
	closeCode  uint16
	peerClosed bool
}

func (w *wsConn) attach(s *connState) { w.s = s }

func (*wsConn) handshaking() bool { return true }

func (w *wsConn) handshake(c gnet.Conn, out []byte) (handshakeStep, error) {
	buf, _ := c.Peek(-1)
	switch proxyhdr.Sniff(buf) {
	case proxyhdr.SniffNeedMore:
		return handshakeStep{}, nil
	case proxyhdr.SniffV1, proxyhdr.SniffV2:
		return handshakeStep{}, errProxyUntrusted
	}
	n, resp, res, err := w.r.wsHandshake().Parse(buf)
	if n == 0 && err == nil {
		return handshakeStep{}, nil // the request is not complete yet
	}
	_, _ = c.Discard(n)
	step := handshakeStep{reply: append(out, resp...)}
	if err != nil {
		return step, fmt.Errorf("websocket upgrade refused (%d): %w", res.Status, err)
	}
	step.done = true
	return step, nil
}

// next decodes WebSocket frames until a binary message, which it returns
// as the protocol frame it must be; control frames are handled on the way
// and dropped from the input at once.
func (w *wsConn) next(c gnet.Conn, maxLen int) ([]byte, int, error) {
	w.dec.MaxMessage = maxLen + proto.LenSize
	for {
		buf, _ := c.Peek(-1)
		if len(buf) == 0 {
			return nil, 0, nil
		}
		n, msg, kind, err := w.dec.Next(buf)
		if err != nil {
			return nil, 0, w.fail(err)
		}
		if n == 0 {
			return nil, 0, nil // the frame is not complete yet (at most MaxBuffered bytes)
		}
		switch kind {
		case wsframe.KindBinary:
			if len(msg) < proto.LenSize || int(binary.BigEndian.Uint32(msg))+proto.LenSize != len(msg) {
				if len(msg) >= proto.LenSize {
					if _, err := proto.FrameLen(msg, maxLen); err != nil {
						return nil, 0, err // as raw TCP would say of that Len
					}
				}
				return nil, 0, errWSNotOne
			}
			return msg, n, nil
		case wsframe.KindPing:
			w.activity()
			l := w.s.loop
			l.wire = wsframe.AppendPong(l.wire[:0], msg)
			if !w.r.sendWire(w.s, kindReply, l.wire) {
				return nil, 0, nil // closed under the output budget
			}
			if w.s.paused { // past the reply budget: read on once it drains
				_, _ = c.Discard(n)
				return nil, 0, nil
			}
		case wsframe.KindPong:
			w.activity()
		case wsframe.KindClose:
			code, _ := wsframe.ParseClose(msg)
			w.closeCode, w.peerClosed = code, true
			_, _ = c.Discard(n)
			return nil, 0, errWSPeerClose
		}
		_, _ = c.Discard(n) // a control frame, or a fragment the decoder kept
	}
}

// activity counts a ping or pong as a frame for the idle timeout (not for
// the auth deadline, which only AUTH meets).
func (w *wsConn) activity() {
	if w.s.state == stAuthed {
		w.s.active = w.r.now()
	}
}

// fail maps a decoder error to the room's and keeps its close code.
func (w *wsConn) fail(err error) error {
	var e *wsframe.Error
	if !errors.As(err, &e) {
		w.closeCode = wsframe.CloseProtocolError
		return errWSProtocol
	}
	w.closeCode = e.Code
	switch e.Reply {
	case proto.ErrCodeFrameTooLarge:
		return errWSTooLarge
	case proto.ErrCodeBadFrame:
		return errWSText
	case "":
		return errWSProtocol
	}
	return errWSText
}

func (*wsConn) done(c gnet.Conn, n int) { _, _ = c.Discard(n) }

// appendWire puts each frame in its own binary message.
func (*wsConn) appendWire(dst, frames []byte) []byte {
	for len(frames) >= proto.LenSize {
		n := min(int(binary.BigEndian.Uint32(frames))+proto.LenSize, len(frames))
		dst = wsframe.AppendBinaryHeader(dst, n)
		dst = append(dst, frames[:n]...)
		frames = frames[n:]
	}
	return dst
}

// appendClose appends the close frame PROTOCOL.md names for why the room
// closes.
func (w *wsConn) appendClose(dst []byte, reason, code string) []byte {
	if w.peerClosed || w.closeCode != 0 {
		return wsframe.AppendClose(dst, w.closeCode, "")
	}
	return wsframe.AppendClose(dst, wsCloseCode(reason, code), "")
}

// wsCloseCode is the close code after an ERROR with code (or none: "") and
// a close for reason.
func wsCloseCode(reason, code string) uint16 {
	switch code {
	case "":
	case proto.ErrCodeFrameTooLarge:
		return wsframe.CloseMessageTooBig
	case proto.ErrCodeInternal:
		return 1011 // internal error
	case proto.ErrCodeOverloaded:
		return 1013 // try again later
	default: // auth_required, bad_token, bad_frame, unknown_op, rate_limited, ...
		return wsframe.ClosePolicyViolation
	}
	switch reason {
	case closeAuthTimeout, closeIdle, closeSlow, closeInbound, closeErrors, closeAuthFailed:
		return wsframe.ClosePolicyViolation
	}
	return wsframe.CloseNormal // KICK (a shutdown too), and anything else
}

// wsConf is the upgrade configuration built from one config.Config.
type wsConf struct {
	src *config.Config
	hs  wsframe.Handshake
}

// wsHandshake returns the Handshake for the current configuration, built
// again only when the configuration changed.
func (r *Room) wsHandshake() *wsframe.Handshake {
	cfg := r.deps.Config.Load()
	if p := r.wsConf.Load(); p != nil && p.src == cfg {
		return &p.hs
	}
	wc := &wsConf{src: cfg, hs: wsframe.Handshake{Origins: cfg.Room.WebSocket.Origins}}
	if name := cfg.Room.WebSocket.Cookie; name != "" {
		wc.hs.Cookie = &http.Cookie{Name: name, Value: r.cfg.ID, Path: wsframe.DefaultPath, HttpOnly: true}
	}
	r.wsConf.Store(wc)
	return &wc.hs
}
