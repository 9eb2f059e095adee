package room

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/lcpush/lcpush/internal/testkit"
	"github.com/lcpush/lcpush/pkg/proto"
)

// A WebSocket client that floods pings and never reads its pongs costs
// only its share: the room stops reading it once its replies back up, so
// the flood stalls on TCP instead of growing the room's memory, and a
// bystander is served meanwhile.
func TestWSPingFloodNeverRead(t *testing.T) {
	e := startWSEnv(t, nil)
	w, c := wsConnect(t, e.room.WSAddr())
	c.Login(1, "flooder", testkit.Token(1, "flooder"), 30)
	bystander, _ := e.login(1, "bystander")

	// 8,000 masked pings with 125-byte payloads per write: about 1 MiB.
	var batch bytes.Buffer
	payload := bytes.Repeat([]byte("p"), 125)
	for range 8000 {
		f := ws.MaskFrameInPlace(ws.NewPingFrame(payload))
		if err := ws.WriteFrame(&batch, f); err != nil {
			t.Fatal(err)
		}
	}
	const limit = 64 << 20
	written := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(3 * time.Second)
		for written < 4*limit && time.Now().Before(deadline) {
			_ = w.Conn.SetWriteDeadline(deadline)
			n, err := w.Conn.Write(batch.Bytes())
			written += n
			if err != nil {
				return // blocked until the deadline, or closed by the room
			}
		}
	}()
	// The bystander is answered while the flood runs.
	for range 5 {
		bystander.Send(proto.OpPing, 0, 0, nil)
		bystander.Expect(proto.OpPong)
		time.Sleep(200 * time.Millisecond)
	}
	<-done
	if written >= limit {
		t.Fatalf("the room took %d MiB of pings from a client that reads nothing", written>>20)
	}
	t.Logf("flood stalled after %.1f MiB", float64(written)/(1<<20))
}
