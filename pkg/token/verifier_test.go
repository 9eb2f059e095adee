package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestVerifierAgrees checks Verifier against VerifyLifetime on the cases
// of TestVerify and TestVerifyLifetime, one Verifier for all (its cached
// HMACs must not leak from one secret to another).
func TestVerifierAgrees(t *testing.T) {
	now := time.Unix(1700000000, 0)
	exp := now.Add(time.Hour).Unix()
	good := Sign(secret, 7, "u1", exp)
	sig := good[strings.IndexByte(good, '.')+1:]
	other := []byte("another-secret-of-16")
	toks := []string{
		good, "", ".", "." + sig, "123.", good + "00", good[:len(good)-2], good[:len(good)-1] + "g",
		good[:strings.IndexByte(good, '.')+1] + strings.ToUpper(sig), "0" + good, "+" + good, " " + good,
		"1.2." + sig[4:], "12a4." + sig, reference(secret, "7|u1|-1", "-1"),
		reference(secret, "7|u1|9223372036854775808", "9223372036854775808"),
		reference(secret, "7|u1|10000000000000000000", "10000000000000000000"),
		Sign(secret, 7, "u1", 1<<63-1), Sign(secret, 7, "u1", 0), Sign(other, 7, "u1", exp),
		Sign(secret, 7, "u1", now.Add(31*24*time.Hour).Unix()), Sign(secret, 8, "u1", exp), Sign(secret, 7, "u2", exp),
	}
	var v Verifier
	for _, sec := range [][]byte{secret, other, secret} {
		for _, tok := range toks {
			for _, at := range []time.Time{now, now.Add(2 * time.Hour), time.Unix(exp, 0), time.Unix(exp+30, 0)} {
				for _, uid := range []string{"u1", "u2"} {
					want := VerifyLifetime(sec, 7, uid, tok, at, time.Minute, 30*24*time.Hour)
					got := v.VerifyLifetime(string(sec), 7, uid, tok, at, time.Minute, 30*24*time.Hour)
					if !errors.Is(got, want) && got != want {
						t.Fatalf("secret %q uid %s tok %q at %d: Verifier %v, VerifyLifetime %v", sec, uid, tok, at.Unix(), got, want)
					}
				}
			}
		}
	}
}

func TestVerifierAllocatesNothing(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tok := Sign(secret, 7, "user-123456", now.Add(time.Hour).Unix())
	var v Verifier
	sec := string(secret)
	if err := v.VerifyLifetime(sec, 7, "user-123456", tok, now, time.Minute, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = v.VerifyLifetime(sec, 7, "user-123456", tok, now, time.Minute, 24*time.Hour)
	}); n != 0 {
		t.Fatalf("%v allocations per check, want 0", n)
	}
}

func TestVerifierBoundsSecrets(t *testing.T) {
	var v Verifier
	for i := range 3 * maxVerifierSecrets {
		sec := strings.Repeat("k", 16) + string(rune('a'+i%26)) + strings.Repeat("z", i)
		tok := Sign([]byte(sec), 1, "u", 1<<31)
		if err := v.VerifyLifetime(sec, 1, "u", tok, time.Unix(0, 0), 0, 1<<62); err != nil {
			t.Fatalf("secret %d: %v", i, err)
		}
		if len(v.macs) > maxVerifierSecrets {
			t.Fatalf("%d HMACs kept", len(v.macs))
		}
	}
}

// FuzzVerifierAgrees: on any token, Verifier answers as VerifyLifetime.
func FuzzVerifierAgrees(f *testing.F) {
	f.Add(uint32(7), "u1", Sign(secret, 7, "u1", 1700003600), int64(1700000000))
	f.Add(uint32(7), "u1", "1700003600.zz", int64(0))
	f.Add(uint32(0), "", ".", int64(-1))
	f.Add(uint32(1), "a|b", "99999999999999999999."+strings.Repeat("0", 64), int64(1<<62))
	f.Add(uint32(1), "a", "01."+strings.Repeat("a", 64), int64(0))
	var v Verifier
	f.Fuzz(func(t *testing.T, app uint32, uid, tok string, now int64) {
		at := time.Unix(now, 0)
		want := VerifyLifetime(secret, app, uid, tok, at, time.Minute, time.Hour)
		got := v.VerifyLifetime(string(secret), app, uid, tok, at, time.Minute, time.Hour)
		if !errors.Is(got, want) && got != want {
			t.Fatalf("tok %q: Verifier %v, VerifyLifetime %v", tok, got, want)
		}
	})
}
