package saver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestCursorLogRoundTrip(t *testing.T) {
	type ent struct {
		uid string
		app uint32
		ver uint64
		c   bcursor
	}
	in := []ent{
		{"a", 1, 1, bcursor{Cur: 5}},
		{"user-with-a-longer-uid", 7, 300, bcursor{Cur: 9, Exc: []bexc{{Seq: 12, State: bexcAcked}, {Seq: 20, Loads: 2}}}},
		{strings.Repeat("x", 128), 1 << 31, 1 << 40, bcursor{Cur: 1 << 50}},
	}
	data := binary.AppendUvarint([]byte{cursorLogVersion}, uint64(len(in)))
	for _, e := range in {
		data = appendLogEntry(data, e.uid, e.app, encodeRCursor(e.ver, e.c))
	}
	var got []ent
	if err := decodeCursorLog(data, func(uid string, c cursorRow) { got = append(got, ent{uid, c.app, c.ver, c.cur}) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d entries, want %d", len(got), len(in))
	}
	for i := range in {
		a, b := in[i], got[i]
		if a.uid != b.uid || a.app != b.app || a.ver != b.ver || !bytes.Equal(a.c.appendTo(nil), b.c.appendTo(nil)) {
			t.Errorf("entry %d: %+v, want %+v", i, b, a)
		}
	}
}

func TestCursorLogCorrupt(t *testing.T) {
	good := appendLogEntry(binary.AppendUvarint([]byte{cursorLogVersion}, 1), "a", 1, encodeRCursor(1, bcursor{Cur: 2}))
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"bad version", append([]byte{9}, good[1:]...)},
		{"count above the bytes", binary.AppendUvarint([]byte{cursorLogVersion}, 1<<40)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"empty uid", appendLogEntry(binary.AppendUvarint([]byte{cursorLogVersion}, 1), "", 1, encodeRCursor(1, bcursor{}))},
		{"uid too long", appendLogEntry(binary.AppendUvarint([]byte{cursorLogVersion}, 1), strings.Repeat("u", 129), 1, encodeRCursor(1, bcursor{}))},
		{"bad cursor", appendLogEntry(binary.AppendUvarint([]byte{cursorLogVersion}, 1), "a", 1, "\x01\x09")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := decodeCursorLog(tt.data, func(string, cursorRow) {}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzCursorLog(f *testing.F) {
	f.Add(appendLogEntry(binary.AppendUvarint([]byte{cursorLogVersion}, 1), "a", 1, encodeRCursor(3, bcursor{Cur: 2})))
	f.Add([]byte{cursorLogVersion, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		err := decodeCursorLog(data, func(uid string, c cursorRow) {
			n++
			if uid == "" || len(uid) > 128 {
				t.Fatalf("uid %q accepted", uid)
			}
		})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err %v is not ErrCorrupt", err)
		}
		if n > len(data) {
			t.Fatalf("%d entries from %d bytes", n, len(data))
		}
	})
}

func TestEpochSince(t *testing.T) {
	tok := newEpochToken()
	if s := epochSince(tok); s <= 0 {
		t.Fatalf("epochSince(%q) = %d", tok, s)
	}
	for _, old := range []string{"", "0123456789abcdef01234567", ".x", "zz.y", "-5.y"} {
		if s := epochSince(old); s != 0 {
			t.Errorf("epochSince(%q) = %d, want 0", old, s)
		}
	}
}

// A log row MySQL refused comes back as per-(uid, app) cursor rows; a
// corrupt one as none.
func TestCursorLogRows(t *testing.T) {
	data := binary.AppendUvarint([]byte{cursorLogVersion}, 2)
	data = appendLogEntry(data, "a", 1, encodeRCursor(3, bcursor{Cur: 7}))
	data = appendLogEntry(data, "b", 2, encodeRCursor(9, bcursor{Cur: 8, Exc: []bexc{{Seq: 11, State: bexcAcked}}}))
	rows := logRows(data, slog.New(slog.DiscardHandler))
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	for i, want := range []struct {
		uid      string
		app      uint32
		ver, cur uint64
	}{{"a", 1, 3, 7}, {"b", 2, 9, 8}} {
		r := rows[i]
		if r.op != dCursor || r.uid != want.uid || r.app != want.app || r.seq != want.ver || r.cur.Cur != want.cur {
			t.Errorf("row %d: %+v, want %+v", i, r, want)
		}
	}
	if len(rows[1].cur.Exc) != 1 {
		t.Errorf("b's exceptions %v", rows[1].cur.Exc)
	}
	if rows := logRows(data[:len(data)-1], slog.New(slog.DiscardHandler)); rows != nil {
		t.Errorf("a corrupt row gave %d rows", len(rows))
	}
}
