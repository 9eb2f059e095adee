package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"strconv"
	"strings"
	"time"
)

// Verifier is VerifyLifetime without the garbage: it keeps one keyed
// HMAC per secret and its scratch buffers, so that once warm a check
// allocates nothing (a room checks every login's token; Verify's fresh
// HMAC, digests and byte copies were ~530 bytes of garbage a login). Its
// answers are Verify's and VerifyLifetime's (FuzzVerifierAgrees). Not
// safe for concurrent use: one per goroutine, or a sync.Pool of them.
type Verifier struct {
	macs    map[string]hash.Hash // keyed HMAC per secret, at most maxVerifierSecrets
	scratch []byte
	sum     [sha256.Size]byte
}

// maxVerifierSecrets bounds the HMACs one Verifier keeps (apps' secrets).
const maxVerifierSecrets = 64

// VerifyLifetime is the package's VerifyLifetime with the secret as a string.
func (v *Verifier) VerifyLifetime(secret string, app uint32, uid, tok string, now time.Time, skew, maxLife time.Duration) error {
	exp, sig, ok := strings.Cut(tok, ".")
	if !ok || len(exp) == 0 || len(exp) > 19 || len(sig) != 2*sha256.Size {
		return ErrMalformed
	}
	// Canonical decimal: digits only, no leading zero (what Verify's
	// FormatInt round trip demands), and within int64.
	if exp[0] == '0' && len(exp) > 1 {
		return ErrMalformed
	}
	var expiry int64
	for i := 0; i < len(exp); i++ {
		c := exp[i]
		if c < '0' || c > '9' {
			return ErrMalformed
		}
		d := int64(c - '0')
		if expiry > (1<<63-1-d)/10 {
			return ErrMalformed
		}
		expiry = expiry*10 + d
	}
	var got [sha256.Size]byte
	for i := range got { // lower-case hex only, as Verify
		hi, ok1 := unhex(sig[2*i])
		lo, ok2 := unhex(sig[2*i+1])
		if !ok1 || !ok2 {
			return ErrMalformed
		}
		got[i] = hi<<4 | lo
	}
	h := v.mac(secret)
	h.Reset()
	b := strconv.AppendUint(v.scratch[:0], uint64(app), 10)
	b = append(b, '|')
	b = append(b, uid...)
	b = append(b, '|')
	b = append(b, exp...)
	v.scratch = b
	h.Write(b)
	if !hmac.Equal(got[:], h.Sum(v.sum[:0])) {
		return ErrBadMAC
	}
	if now.Add(-skew).Unix() >= expiry {
		return ErrExpired
	}
	if limit := now.Add(maxLife + skew).Unix(); expiry > limit {
		return ErrLifetime
	}
	return nil
}

// mac returns the keyed HMAC of secret, made on first use.
func (v *Verifier) mac(secret string) hash.Hash {
	if h, ok := v.macs[secret]; ok {
		return h
	}
	if v.macs == nil || len(v.macs) >= maxVerifierSecrets {
		v.macs = make(map[string]hash.Hash)
	}
	h := hmac.New(sha256.New, []byte(secret))
	v.macs[secret] = h
	return h
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
