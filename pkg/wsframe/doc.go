// Package wsframe is the server side of WebSocket (RFC 6455) for the room's
// event loops, working on byte slices: the opening handshake, the decoding of
// client frames and the encoding of server frames. It never reads from or
// writes to a connection, never blocks, never starts a goroutine, and never
// allocates from a length announced by the peer before checking it against a
// configured bound.
//
// It owns the WebSocket layer only. The bytes of each binary message are one
// client protocol frame (PROTOCOL.md "Transports"); checking that the message
// holds exactly one frame (Len field included) is the room's frame decoder's
// job, not this package's.
//
// # Library
//
// Built on github.com/gobwas/ws: its Upgrader parses and answers the upgrade
// request (driven over an in-memory io.ReadWriter holding the complete
// request, never over the connection: ws.Upgrade on a partial request would
// block or fail); ws.CheckHeader, ws.CheckCloseFrameData and the ws status
// codes validate frames; ws.Cipher unmasks. Frame headers are read and
// written on byte slices here because gobwas/ws's ReadHeader/WriteHeader take
// an io.Reader/io.Writer, which would cost an allocation per frame on an event
// loop.
//
// # How the room uses it (states)
//
// A WebSocket connection goes through two states.
//
// 1. Handshake. On every OnTraffic, Peek all inbound bytes and call
// Handshake.Parse. consumed == 0 and err == nil: the request is not complete
// yet, keep the bytes and wait (the auth deadline also bounds the upgrade).
// Otherwise write resp, Discard(consumed); if err != nil close the connection
// after the answer (Result.Status says which: 400, 403, 404, 405, 426, 431,
// 505); else the connection is upgraded and any bytes after consumed are
// already WebSocket frames.
//
// 2. Frames. Loop over the inbound bytes with Decoder.Next until it returns
// consumed == 0 (need more bytes), advancing past consumed bytes after each
// call (see "Buffers and aliasing" for the gnet loop):
//
//	KindBinary: msg is one protocol frame: decode it (AUTH first, ...).
//	KindPing:   write AppendPong(dst, msg); counts as activity.
//	KindPong:   nothing to answer; counts as activity.
//	KindClose:  write AppendCloseEcho(dst, msg), then close.
//	KindNone:   a fragment or nothing to deliver yet; go on.
//
// On an error, look at its *Error: when Reply is non-empty, send the protocol
// ERROR frame with that code first (bad_frame for a text message,
// frame_too_large for an oversize message), then AppendClose(dst, e.Code, "")
// and close.
//
// Server frames: AppendBinary for every protocol frame (PUSH, AUTH_OK, ...);
// after KICK AppendClose(dst, CloseNormal, ""), after an ERROR for auth or
// policy AppendClose(dst, ClosePolicyViolation, ""), then close.
//
// # Close codes
//
//	1000 CloseNormal           after KICK
//	1002 CloseProtocolError    WebSocket protocol error (unmasked frame, reserved bits, bad control frame, ...)
//	1007 CloseInvalidPayload   close frame whose reason is not UTF-8
//	1008 ClosePolicyViolation  after an ERROR for auth or policy; after a text message (ERROR bad_frame)
//	1009 CloseMessageTooBig    message larger than the maximum frame (ERROR frame_too_large)
//
// # Buffers and aliasing
//
// Decoder.Next unmasks the payload of a complete frame in place, in the
// caller's slice, and only when it consumes that frame (bytes of a frame not
// yet complete are never modified; Handshake.Parse never modifies its input).
// So consumed bytes must never be passed again: advance past them. With gnet:
//
//	buf, _ := c.Peek(-1)
//	off := 0
//	for {
//		n, msg, kind, err := d.Next(buf[off:])
//		... // use msg here, or copy it
//		if n == 0 { break }
//		off += n
//	}
//	c.Discard(off) // once, at the end
//
// A msg of an unfragmented message, and every control payload, aliases the
// input and is valid only as long as the input is: in gnet, until Discard
// (which may hand a combined Peek buffer back to gnet's pool) and at the
// latest until OnTraffic returns. A reassembled fragmented message is built
// in a buffer of the Decoder's that is handed over to the caller with the
// message (the Decoder keeps no buffer between messages, so idle connections
// cost nothing). Next needs the caller to hold at most one whole frame:
// MaxMessage plus 14 bytes of header (Decoder.MaxBuffered); a caller that
// sees more than that pending without progress has a bug, not a slow peer.
//
// # Known traps this avoids
//
// gobwas/ws's Upgrader and wsutil readers read with blocking semantics: on an
// event loop a request or frame split across reads either blocks the loop or
// fails (gnet-io/gnet-examples#25, gobwas/ws-examples#18,
// lesismal/go-websocket-benchmark#42). Here the request is parsed only once
// its "\r\n\r\n" is seen within MaxRequest bytes, from those bytes alone,
// and frames are parsed from byte slices with need-more answers.
//
// # Costs (go test -bench, 2 cores)
//
// Decoder.Next of a masked 256-byte binary frame: ~35 ns, 0 allocs.
// AppendBinary of 256 bytes: ~8 ns, 0 allocs. Handshake.Parse of a browser-like
// request: ~1.3-1.7 µs, 7 allocs (the answer, the Upgrader's callbacks, the
// Origin string, gobwas/ws's accept), once per connection.
package wsframe
