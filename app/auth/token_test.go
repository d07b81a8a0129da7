package auth

import (
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The main site's clock may run a little ahead of ours: a token it just
// minted ("nbf"/"iat" a moment in our future) works. Expiry has no grace.
func TestTokenClockSkew(t *testing.T) {
	auth := NewTokens("s")
	sign := func(c jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte("s"))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	ahead := sign(jwt.MapClaims{"sub": "5", "nbf": now.Add(2 * time.Second).Unix(), "iat": now.Add(2 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()})
	if id, err := auth.Verify(ahead); err != nil || id.UID != 5 {
		t.Fatalf("token from a clock 2 s ahead = %+v, %v; want uid 5", id, err)
	}
	early := sign(jwt.MapClaims{"sub": "5", "nbf": now.Add(time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()})
	if _, err := auth.Verify(early); err != ErrUnauthorized {
		t.Fatalf("token valid only in a minute: %v, want ErrUnauthorized", err)
	}
	expired := sign(jwt.MapClaims{"sub": "5", "exp": now.Add(-time.Second).Unix()})
	if _, err := auth.Verify(expired); err != ErrUnauthorized {
		t.Fatalf("token expired a second ago: %v, want ErrUnauthorized", err)
	}
}

// Times must be numbers, and an iat past the allowed skew is refused.
func TestTokenTimesAreStrict(t *testing.T) {
	a := NewTokens("s")
	sign := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte("s"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	for name, c := range map[string]jwt.MapClaims{
		"exp as a string":   {"sub": "5", "exp": strconv.FormatInt(exp, 10)},
		"iat an hour ahead": {"sub": "5", "exp": exp, "iat": time.Now().Add(time.Hour).Unix()},
		"nbf as a string":   {"sub": "5", "exp": exp, "nbf": "0"},
		"iat as a bool":     {"sub": "5", "exp": exp, "iat": true},
	} {
		if _, err := a.Verify(sign(c)); err != ErrUnauthorized {
			t.Errorf("%s: Verify = %v, want ErrUnauthorized", name, err)
		}
	}
	if _, err := a.Verify(sign(jwt.MapClaims{"sub": "5", "exp": exp, "iat": time.Now().Unix()})); err != nil {
		t.Errorf("a plain token: %v", err)
	}
}
