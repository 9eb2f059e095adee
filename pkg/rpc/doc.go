// Package rpc owns the pipelined RPC that services use to talk to each other
// when they run as separate processes: a Client multiplexes many concurrent
// calls to one target over a few long-lived TCP connections, and a Server
// runs registered handlers on a bounded worker pool. Message codecs live with
// the services; package wire gives them append-style encoders and a
// bounds-checked Reader. There is no reflection on the hot path.
//
// # Using it
//
// A message encodes itself (encoding.BinaryAppender) and a reply decodes
// itself (encoding.BinaryUnmarshaler):
//
//	type LookupReq struct{ UID string }
//	func (m *LookupReq) AppendBinary(b []byte) ([]byte, error) { return wire.AppendString(b, m.UID), nil }
//	func (m *LookupReq) UnmarshalBinary(b []byte) error {
//		r := wire.NewReader(b)
//		m.UID = r.String()
//		return r.Err()
//	}
//
// Server side, one handler per method id:
//
//	srv, _ := rpc.NewServer(rpc.ServerConfig{Addr: ":7100"})
//	srv.Handle(MethodLookup, func(ctx context.Context, req []byte, rep *rpc.Reply) error {
//		var in LookupReq
//		if err := in.UnmarshalBinary(req); err != nil {
//			return err // a wire.ErrMalformed reaches the caller as CodeBadRequest
//		}
//		out := lookup(in.UID)
//		return rep.Encode(&out)
//	})
//	srv.Start(ctx)
//	defer srv.Shutdown(ctx)
//
// Client side, one Client per target, shared by every goroutine:
//
//	cl, _ := rpc.NewClient(rpc.ClientConfig{Addr: "10.0.0.7:7100"})
//	defer cl.Close()
//	var out LookupResp
//	err := cl.Call(ctx, MethodLookup, &LookupReq{UID: "u1"}, &out)
//
// # Behaviour
//
//   - Each connection has one reader goroutine and one writer goroutine. The
//     writer drains everything queued into one buffer and writes it with one
//     syscall, so under load many calls share a write. Replies come back in
//     any order, matched by a per-connection call id. No goroutine is started
//     per call; call and task objects and their buffers are pooled.
//   - Flow control: a Client has at most MaxInFlight calls in flight; the
//     next one fails at once with ErrOverloaded. A Server queues at most
//     QueueLen requests for its Workers; the next one is answered at once
//     with CodeOverloaded (the reader never blocks on the pool).
//   - Deadlines: a call returns ctx.Err() as soon as ctx ends; its late reply
//     is dropped. The remaining timeout travels in the request, and a server
//     skips a request whose deadline passed while it was queued.
//   - Failures: a broken connection fails its calls with ErrConnLost (the
//     server may have run them: the caller decides about retrying) and is
//     redialed with exponential backoff and jitter. While no connection is up
//     and none is being dialed, calls fail fast with ErrUnavailable.
//   - Shutdown: the server stops accepting, sends GoAway (clients move new
//     calls elsewhere), answers late requests CodeUnavailable, finishes the
//     calls in flight and flushes their replies, then closes.
//   - Errors from handlers travel as a code and a message (*Error); errors.Is
//     maps codes to sentinels, including the pkg/push ones and any *Error a
//     service declares.
//
// # Frame format
//
// Every frame is a 20-byte header and a body; integers are big-endian:
//
//	0  Len     uint32  bytes after this field (16 + body length)
//	4  Kind    uint8   1 request, 2 reply, 3 error reply, 4 go-away
//	5  Flags   uint8   0 (reserved)
//	6  Method  uint16  method id; echoed in replies
//	8  ID      uint64  call id, unique per connection; echoed in replies
//	16 Aux     uint32  request: timeout in ms (0 none); error: code; else 0
//	20 Body            request or reply message; error: UTF-8 message
//
// Len is checked against MaxFrame before anything is buffered or allocated;
// a frame that is too large, too short or of an unknown kind closes that
// connection only.
package rpc
