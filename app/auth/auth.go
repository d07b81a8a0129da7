// Package auth says who a token speaks for: an HS256 JWT from the main
// site, checked here, or an opaque token checked at the user center
// (PUSHDESK_AUTH_URL) with the answers cached in Redis. It owns Identity
// and Role and must not know what the identity is then used for.
package auth

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/redis/rueidis"
)

// Errors a caller may match with errors.Is.
var (
	// ErrUnauthorized is a missing, malformed or expired token.
	ErrUnauthorized = &apierr.Error{Status: 401, Code: "unauthorized", Message: "missing, invalid or expired token"}
	// ErrUnavailable is an opaque token that could not be checked because
	// the user center did not answer (and no cached answer exists).
	ErrUnavailable = &apierr.Error{Status: 503, Code: "auth_unavailable", Message: "the user center is not answering; try again"}
)

// keyToken, with the token's SHA-256 in hex after it, caches a user-center
// answer (the only Redis key this package owns).
const keyToken = "pd:tok:"

// Config is what Service needs from the process configuration.
type Config struct {
	Secret string // PUSHDESK_JWT_SECRET
	// UserCenterURL checks opaque tokens; empty: JWTs only.
	UserCenterURL string
	// An answer is cached TTLBase plus up to TTLJitter, a refusal for
	// NegativeTTL.
	TTLBase, TTLJitter, NegativeTTL time.Duration
}

// Service authenticates tokens. Safe for concurrent use.
type Service struct {
	cfg    Config
	tokens *Tokens
	rc     rueidis.Client
	users  *userCenter // nil without a user center
}

// New returns a Service caching user-center answers in rc.
func New(cfg Config, rc rueidis.Client) *Service {
	s := &Service{cfg: cfg, tokens: NewTokens(cfg.Secret), rc: rc}
	if cfg.UserCenterURL != "" {
		s.users = &userCenter{url: cfg.UserCenterURL, client: &http.Client{Timeout: 2 * time.Second}}
	}
	return s
}

// Mint signs a token for id, valid for ttl.
func (a *Service) Mint(id Identity, ttl time.Duration) (string, error) { return a.tokens.Mint(id, ttl) }

func encodeIdentity(id Identity) []byte {
	b, _ := json.Marshal(id) // plain fields only: cannot fail
	return b
}
