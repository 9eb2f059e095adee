// Package token signs and verifies the client tokens of PROTOCOL.md:
//
//	token = expiry "." hex(HMAC-SHA256(secret, app "|" uid "|" expiry))
//
// Verification is offline (no RPC), uses a constant-time compare and allows a
// configurable clock skew on the expiry.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Verification errors; all map to the bad_token protocol error.
var (
	ErrMalformed = errors.New("token: malformed")
	ErrExpired   = errors.New("token: expired")
	ErrBadMAC    = errors.New("token: bad signature")
	ErrLifetime  = errors.New("token: lifetime over the maximum")
)

// Sign returns the token for (app, uid) valid until expiry (unix seconds).
func Sign(secret []byte, app uint32, uid string, expiry int64) string {
	exp := strconv.FormatInt(expiry, 10)
	return exp + "." + hex.EncodeToString(mac(secret, app, uid, exp))
}

func mac(secret []byte, app uint32, uid, exp string) []byte {
	h := hmac.New(sha256.New, secret)
	var b [10]byte
	h.Write(strconv.AppendUint(b[:0], uint64(app), 10))
	h.Write([]byte{'|'})
	h.Write([]byte(uid))
	h.Write([]byte{'|'})
	h.Write([]byte(exp))
	return h.Sum(nil)
}

// Verify checks tok for (app, uid) at time now; a token expired by less than
// skew is still accepted.
func Verify(secret []byte, app uint32, uid, tok string, now time.Time, skew time.Duration) error {
	exp, sig, ok := strings.Cut(tok, ".")
	if !ok || len(exp) == 0 || len(exp) > 19 || len(sig) != 2*sha256.Size {
		return ErrMalformed
	}
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || expiry < 0 || strconv.FormatInt(expiry, 10) != exp {
		return ErrMalformed
	}
	for i := 0; i < len(sig); i++ { // lower-case hex only: one token string per (app, uid, expiry)
		if c := sig[i]; c >= 'A' && c <= 'F' {
			return ErrMalformed
		}
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(sig)); err != nil {
		return ErrMalformed
	}
	if !hmac.Equal(got[:], mac(secret, app, uid, exp)) {
		return ErrBadMAC
	}
	if now.Add(-skew).Unix() >= expiry {
		return ErrExpired
	}
	return nil
}

// VerifyLifetime is Verify plus a bound on the token's remaining lifetime: a
// token whose expiry lies more than maxLife (plus skew) after now is refused
// with ErrLifetime, so a back end cannot mint tokens that never expire.
func VerifyLifetime(secret []byte, app uint32, uid, tok string, now time.Time, skew, maxLife time.Duration) error {
	if err := Verify(secret, app, uid, tok, now, skew); err != nil {
		return err
	}
	exp, _, _ := strings.Cut(tok, ".")
	expiry, _ := strconv.ParseInt(exp, 10, 64) // checked by Verify
	if limit := now.Add(maxLife + skew).Unix(); expiry > limit {
		return ErrLifetime
	}
	return nil
}
