package push

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxUIDLen is the longest uid in bytes, everywhere: the client protocol,
// the Center API, the register and every store.
const MaxUIDLen = 128

// ErrBadUID is returned by CheckUID. The room answers it with ERROR
// bad_token, the Center API with 400 bad_request.
var ErrBadUID = errors.New("bad uid")

// CheckUID is the one rule a uid must pass, applied by room, center,
// dispatcher and saver alike, so that a uid one service accepts is never
// refused by the next one after the session was registered: 1..MaxUIDLen
// bytes of valid UTF-8 with no control character (C0, DEL, C1), which also
// keeps NUL, the stores' key separator, out.
func CheckUID(uid string) error {
	if uid == "" || len(uid) > MaxUIDLen {
		return fmt.Errorf("%w: must be 1..%d bytes", ErrBadUID, MaxUIDLen)
	}
	for i := 0; i < len(uid); {
		c := uid[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("%w: control character at byte %d", ErrBadUID, i)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(uid[i:])
		if r == utf8.RuneError && n <= 1 {
			return fmt.Errorf("%w: not valid UTF-8 at byte %d", ErrBadUID, i)
		}
		if r >= 0x80 && r <= 0x9f {
			return fmt.Errorf("%w: control character at byte %d", ErrBadUID, i)
		}
		i += n
	}
	return nil
}
