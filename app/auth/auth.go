package auth

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/redis/rueidis"
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
