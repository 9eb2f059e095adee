package push

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckUID(t *testing.T) {
	tests := []struct {
		uid string
		ok  bool
	}{
		{"alice", true},
		{"user-42@example.com", true},
		{"名前", true},
		{"a b", true},
		{strings.Repeat("x", MaxUIDLen), true},
		{"", false},
		{strings.Repeat("x", MaxUIDLen+1), false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"a\u0085b", false}, // C1 control
		{"\xff\xfe", false}, // not UTF-8
		{"a\xc3", false},    // truncated sequence
	}
	for _, tt := range tests {
		err := CheckUID(tt.uid)
		if (err == nil) != tt.ok {
			t.Errorf("CheckUID(%q) = %v, want ok=%v", tt.uid, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadUID) {
			t.Errorf("CheckUID(%q) error %v does not wrap ErrBadUID", tt.uid, err)
		}
	}
}

func FuzzCheckUID(f *testing.F) {
	f.Add("alice")
	f.Add("a\x00b")
	f.Fuzz(func(t *testing.T, uid string) {
		if CheckUID(uid) == nil && (len(uid) == 0 || len(uid) > MaxUIDLen || strings.ContainsRune(uid, 0)) {
			t.Fatalf("accepted %q", uid)
		}
	})
}
