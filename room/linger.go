package room

import (
	"syscall"
	"time"
)

// lingerFor bounds how long a connection stays open after its last frame;
// the sweep enforces it, so the real bound is lingerFor plus one tick.
const lingerFor = 2 * time.Second

// lingerClose ends s's session after the room wrote its last frame (ERROR,
// KICK) and closes the socket gracefully (loop only; from OnTraffic, return
// gnet.None afterwards).
//
// A plain close() while the client's bytes sit unread in the receive buffer
// makes the kernel answer with a TCP RST and drop whatever it had not sent
// yet; a reset also destroys the frame on the way or, on some client stacks,
// unread in the client's buffer. So instead the room keeps the descriptor a
// moment: shutdown(SHUT_WR) sends the frame followed by a FIN, and inbound
// bytes are read and dropped, until the client closes its side (gnet then
// closes the connection) or the sweep closes it after lingerFor. The session
// is over at once: a lingering connection is stClosed to everything but
// OnTraffic, OnClose and the sweep; it still counts against the connection
// caps, which bounds how many there can be.
func (r *Room) lingerClose(s *connState, reason string) {
	if s.state == stClosed {
		return
	}
	r.markClose(s, reason)
	r.endSession(s)
	s.lingering = true
	s.active = r.now()
	_, _ = s.c.Discard(-1)
	r.shutWrite(s)
}

// shutWrite sends the FIN of a lingering connection once gnet has handed
// all its output to the kernel; before that the sweep and OnTraffic retry.
func (r *Room) shutWrite(s *connState) {
	if s.finSent || s.c.OutboundBuffered() > 0 {
		return
	}
	s.finSent = true
	// An error means the peer is gone already: gnet notices and closes.
	_ = syscall.Shutdown(s.c.Fd(), syscall.SHUT_WR)
}

// lingerTraffic drops what a lingering connection sends (OnTraffic).
func (r *Room) lingerTraffic(s *connState) {
	_, _ = s.c.Discard(-1)
	r.shutWrite(s)
}

// sweepLinger sends a pending FIN and closes the connection for good once
// lingerFor is over (sweep).
func (r *Room) sweepLinger(s *connState, now int64) {
	if now-s.active > int64(lingerFor) {
		r.closeConn(s, "")
		return
	}
	r.shutWrite(s)
}
