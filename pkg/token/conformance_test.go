package token

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

// The shared token vectors (conformance/tokens.json, HMACs computed by
// conformance/gen.py with Python's hmac): Sign gives the same token, and
// Verify accepts it before its expiry.
func TestConformanceTokens(t *testing.T) {
	raw, err := os.ReadFile("../../conformance/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Tokens []struct {
			Secret, UID, Token string
			App                uint32
			Expiry             int64
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Tokens) < 3 {
		t.Fatalf("%d vectors, %v", len(v.Tokens), err)
	}
	for _, tv := range v.Tokens {
		if got := Sign([]byte(tv.Secret), tv.App, tv.UID, tv.Expiry); got != tv.Token {
			t.Errorf("Sign(%q, %d, %q, %d) = %s, want %s", tv.Secret, tv.App, tv.UID, tv.Expiry, got, tv.Token)
		}
		if tv.Expiry > 0 {
			if err := Verify([]byte(tv.Secret), tv.App, tv.UID, tv.Token, time.Unix(tv.Expiry-60, 0), 0); err != nil {
				t.Errorf("Verify %s: %v", tv.Token, err)
			}
		}
	}
}
