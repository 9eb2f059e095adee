package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

var secret = []byte("0123456789abcdef-secret")

// reference computes a token the long way, straight from PROTOCOL.md.
func reference(secret []byte, msg string, exp string) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(msg))
	return exp + "." + hex.EncodeToString(h.Sum(nil))
}

func TestSignKnownVector(t *testing.T) {
	got := Sign(secret, 7, "user-1", 1700000000)
	want := reference(secret, "7|user-1|1700000000", "1700000000")
	if got != want {
		t.Fatalf("Sign = %s; want %s", got, want)
	}
	// Pinned bytes (computed with Python's hmac module), so a change to the
	// reference above cannot hide a change to Sign.
	const pinned = "1700000000.1a07899b480fae6a92f6d12ae3cbc1e7fa448e27fc064fa1690530ff0557c461"
	if got != pinned {
		t.Fatalf("Sign = %s; want pinned %s", got, pinned)
	}
	maxApp := Sign(secret, 0xFFFFFFFF, "", 0)
	if want := reference(secret, "4294967295||0", "0"); maxApp != want {
		t.Fatalf("Sign(max app) = %s; want %s", maxApp, want)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1700000000, 0)
	exp := now.Add(time.Hour).Unix()
	good := Sign(secret, 7, "u1", exp)
	sig := good[strings.IndexByte(good, '.')+1:]
	tests := []struct {
		name   string
		secret []byte
		app    uint32
		uid    string
		tok    string
		now    time.Time
		skew   time.Duration
		err    error
	}{
		{"good", secret, 7, "u1", good, now, 0, nil},
		{"uppercase hex refused", secret, 7, "u1", good[:strings.IndexByte(good, '.')+1] + strings.ToUpper(sig), now, 0, ErrMalformed},
		{"expired", secret, 7, "u1", good, now.Add(2 * time.Hour), time.Minute, ErrExpired},
		{"expires exactly now", secret, 7, "u1", good, time.Unix(exp, 0), 0, ErrExpired},
		{"one second before expiry", secret, 7, "u1", good, time.Unix(exp-1, 0), 0, nil},
		{"within skew", secret, 7, "u1", good, time.Unix(exp+30, 0), time.Minute, nil},
		{"just past skew", secret, 7, "u1", good, time.Unix(exp+60, 0), time.Minute, ErrExpired},
		{"wrong uid", secret, 7, "u2", good, now, 0, ErrBadMAC},
		{"wrong app", secret, 8, "u1", good, now, 0, ErrBadMAC},
		{"wrong secret", []byte("another-secret-of-16"), 7, "u1", good, now, 0, ErrBadMAC},
		{"expiry changed", secret, 7, "u1", Sign(secret, 7, "u1", exp)[:1] + "9" + good[2:], now, 0, ErrBadMAC},
		{"empty", secret, 7, "u1", "", now, 0, ErrMalformed},
		{"no dot", secret, 7, "u1", strings.Replace(good, ".", "", 1), now, 0, ErrMalformed},
		{"empty expiry", secret, 7, "u1", "." + sig, now, 0, ErrMalformed},
		{"empty sig", secret, 7, "u1", "123.", now, 0, ErrMalformed},
		{"short sig", secret, 7, "u1", good[:len(good)-2], now, 0, ErrMalformed},
		{"long sig", secret, 7, "u1", good + "00", now, 0, ErrMalformed},
		{"bad hex", secret, 7, "u1", good[:len(good)-1] + "g", now, 0, ErrMalformed},
		{"two dots", secret, 7, "u1", "1.2." + sig[4:], now, 0, ErrMalformed},
		{"leading zero", secret, 7, "u1", "0" + good, now, 0, ErrMalformed},
		{"plus sign", secret, 7, "u1", "+" + good, now, 0, ErrMalformed},
		{"minus sign", secret, 7, "u1", reference(secret, "7|u1|-1", "-1"), now, 0, ErrMalformed},
		{"space", secret, 7, "u1", " " + good, now, 0, ErrMalformed},
		{"not a number", secret, 7, "u1", "12a4." + sig, now, 0, ErrMalformed},
		{"overflows int64", secret, 7, "u1", reference(secret, "7|u1|9223372036854775808", "9223372036854775808"), now, 0, ErrMalformed},
		{"20 digits", secret, 7, "u1", reference(secret, "7|u1|10000000000000000000", "10000000000000000000"), now, 0, ErrMalformed},
		{"max int64 expiry", secret, 7, "u1", Sign(secret, 7, "u1", 9223372036854775807), now, 0, nil},
		{"zero expiry", secret, 7, "u1", Sign(secret, 7, "u1", 0), now, 0, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.app, tt.uid, tt.tok, tt.now, tt.skew)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("Verify = %v; want %v", err, tt.err)
			}
		})
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Now()
	for _, uid := range []string{"", "u", "with|pipe", "ünïcødé", strings.Repeat("x", 1000)} {
		for _, app := range []uint32{0, 1, 0xFFFFFFFF} {
			tok := Sign(secret, app, uid, now.Add(time.Minute).Unix())
			if err := Verify(secret, app, uid, tok, now, 0); err != nil {
				t.Fatalf("app %d uid %q: %v", app, uid, err)
			}
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(uint32(7), "u1", Sign(secret, 7, "u1", 1700003600), int64(1700000000))
	f.Add(uint32(7), "u1", "1700003600.zz", int64(0))
	f.Add(uint32(0), "", ".", int64(-1))
	f.Add(uint32(1), "a|b", "99999999999999999999."+strings.Repeat("0", 64), int64(1<<62))
	f.Fuzz(func(t *testing.T, app uint32, uid, tok string, now int64) {
		err := Verify(secret, app, uid, tok, time.Unix(now, 0), time.Minute)
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrBadMAC) {
			t.Fatalf("unexpected error %v", err)
		}
		if err == nil {
			// Only a token this package signed verifies: re-signing its expiry gives the same MAC.
			exp, _, _ := strings.Cut(tok, ".")
			if !strings.EqualFold(Sign(secret, app, uid, mustParse(t, exp)), tok) {
				t.Fatalf("accepted a token Sign would not produce: %q", tok)
			}
		}
	})
}

func mustParse(t *testing.T, s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("accepted expiry %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestVerifyLifetime(t *testing.T) {
	secret := []byte("0123456789abcdef")
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name   string
		expiry int64
		want   error
	}{
		{"an hour", now.Unix() + 3600, nil},
		{"at the maximum", now.Add(30 * 24 * time.Hour).Unix(), nil},
		{"within the skew past the maximum", now.Add(30*24*time.Hour + 30*time.Second).Unix(), nil},
		{"a day past the maximum", now.Add(31 * 24 * time.Hour).Unix(), ErrLifetime},
		{"for ever", 1<<63 - 1, ErrLifetime},
		{"expired", now.Unix() - 3600, ErrExpired},
	}
	for _, tt := range tests {
		tok := Sign(secret, 1, "u", tt.expiry)
		if err := VerifyLifetime(secret, 1, "u", tok, now, time.Minute, 30*24*time.Hour); !errors.Is(err, tt.want) && err != tt.want {
			t.Errorf("%s: VerifyLifetime = %v, want %v", tt.name, err, tt.want)
		}
	}
}
