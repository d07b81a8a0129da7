package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role names a client group.
type Role string

// Roles a token may carry.
const (
	RoleUser  Role = "user"
	RoleAgent Role = "agent"
)

// Identity is who a verified token speaks for.
type Identity struct {
	UID    uint64
	Role   Role
	Name   string
	Groups []string
}

type claims struct {
	jwt.RegisteredClaims
	Sub    json.RawMessage `json:"sub"` // a decimal string or a number
	Role   Role            `json:"role,omitempty"`
	Name   string          `json:"name,omitempty"`
	Groups []string        `json:"groups,omitempty"`
}

// clockSkew is how far the main site's clock may run ahead of ours for
// "nbf" and "iat" (a token minted just now must work). "exp" gets none:
// the contract refuses expired tokens.
const clockSkew = 5 * time.Second

// Tokens verifies and mints HS256 tokens. Safe for concurrent use.
type Tokens struct {
	secret []byte
	parser *jwt.Parser
}

// NewTokens returns a verifier for secret.
func NewTokens(secret string) *Tokens {
	return &Tokens{
		secret: []byte(secret),
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(clockSkew)),
	}
}

// Verify checks token and returns its identity, or ErrUnauthorized.
func (a *Tokens) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrUnauthorized
	}
	var c claims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil || !time.Now().Before(c.ExpiresAt.Time) || !numericTimes(token) { // no grace after exp
		return Identity{}, ErrUnauthorized
	}
	uid, ok := parseSub(c.Sub)
	if !ok {
		return Identity{}, ErrUnauthorized
	}
	role := c.Role
	switch role {
	case "":
		role = RoleUser
	case RoleUser, RoleAgent:
	default:
		return Identity{}, ErrUnauthorized
	}
	return Identity{UID: uid, Role: role, Name: c.Name, Groups: c.Groups}, nil
}

// Mint signs a token for id valid for ttl. Used by the dev token command,
// tests and the load tool; the main site mints its own.
func (a *Tokens) Mint(id Identity, ttl time.Duration) (string, error) {
	c := jwt.MapClaims{"sub": strconv.FormatUint(id.UID, 10), "exp": time.Now().Add(ttl).Unix()}
	if id.Role != "" {
		c["role"] = string(id.Role)
	}
	if id.Name != "" {
		c["name"] = id.Name
	}
	if len(id.Groups) > 0 {
		c["groups"] = id.Groups
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

func parseSub(raw json.RawMessage) (uint64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false
		}
	}
	uid, err := strconv.ParseUint(s, 10, 63)
	return uid, err == nil && uid > 0
}

// numericTimes reports whether the token's exp, nbf and iat, where
// present, are JSON numbers, as RFC 7519 says: the JWT library would also
// take a string holding a number. Called after the signature was checked.
func numericTimes(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(payload, &raw) != nil {
		return false
	}
	for _, k := range []string{"exp", "nbf", "iat"} {
		if v, ok := raw[k]; ok && (len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9'))) {
			return false
		}
	}
	return true
}
