package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/redis/rueidis"
	"golang.org/x/sync/singleflight"
)

// rejectedMark is the cached answer for a token the user center refused.
const rejectedMark = "!"

// userCenter checks opaque tokens against PUSHDESK_AUTH_URL and caches
// the answers in Redis with a jittered TTL, so that the tokens cached
// during one peak do not all expire together (seed 002). Safe for
// concurrent use.
type userCenter struct {
	url    string
	client *http.Client
	group  singleflight.Group // one user-center call per token at a time
}

// userCenterAnswer is what the user center returns for a valid token:
// {"uid": 42 | "42", "role": "user"|"agent", "name": "…", "groups": [...]}.
type userCenterAnswer struct {
	UID    json.RawMessage `json:"uid"`
	Role   Role            `json:"role"`
	Name   string          `json:"name"`
	Groups []string        `json:"groups"`
}

// TTL returns a cache lifetime: base plus a random whole number of
// seconds from 1 to jitter (seed: 3650 s + rand(1, 3000) s).
func TTL(base, jitter time.Duration) time.Duration {
	n := int64(jitter / time.Second)
	if n < 1 {
		return base
	}
	return base + time.Duration(1+rand.Int64N(n))*time.Second
}

func looksLikeJWT(tok string) bool {
	return strings.Count(tok, ".") == 2 && strings.HasPrefix(tok, "eyJ")
}

// Authenticate verifies a token: a JWT locally; anything else at the user
// center when one is configured. It returns ErrUnauthorized or, when the
// user center is down and the token is not cached, ErrUnavailable.
func (a *Service) Authenticate(ctx context.Context, tok string) (Identity, error) {
	if tok == "" {
		return Identity{}, ErrUnauthorized
	}
	if looksLikeJWT(tok) || a.users == nil {
		return a.tokens.Verify(tok)
	}
	sum := sha256.Sum256([]byte(tok))
	key := keyToken + hex.EncodeToString(sum[:])
	cached, err := a.rc.Do(ctx, a.rc.B().Get().Key(key).Build()).ToString()
	switch {
	case err == nil && cached == rejectedMark:
		return Identity{}, ErrUnauthorized
	case err == nil:
		var id Identity
		if json.Unmarshal([]byte(cached), &id) == nil && id.UID > 0 {
			return id, nil
		}
	case !rueidis.IsRedisNil(err):
		return Identity{}, apierr.ErrUnavailable
	}
	v, err, _ := a.users.group.Do(key, func() (any, error) {
		id, err := a.users.verify(ctx, tok)
		switch {
		case errors.Is(err, ErrUnauthorized):
			a.rc.Do(ctx, a.rc.B().Set().Key(key).Value(rejectedMark).Px(a.cfg.NegativeTTL).Build())
		case err == nil:
			ttl := TTL(a.cfg.TTLBase, a.cfg.TTLJitter)
			a.rc.Do(ctx, a.rc.B().Set().Key(key).Value(string(encodeIdentity(id))).Px(ttl).Build())
		}
		return id, err
	})
	if err != nil {
		return Identity{}, err
	}
	return v.(Identity), nil
}

func (u *userCenter) verify(ctx context.Context, tok string) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url, nil)
	if err != nil {
		return Identity{}, fmt.Errorf("user center request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := u.client.Do(req)
	if err != nil {
		return Identity{}, ErrUnavailable
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden || res.StatusCode == http.StatusNotFound:
		return Identity{}, ErrUnauthorized
	case res.StatusCode != http.StatusOK:
		return Identity{}, ErrUnavailable
	}
	var ans userCenterAnswer
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil {
		return Identity{}, ErrUnavailable
	}
	uid, ok := parseSub(ans.UID)
	if !ok {
		return Identity{}, ErrUnauthorized
	}
	role := ans.Role
	if role != RoleAgent {
		role = RoleUser
	}
	return Identity{UID: uid, Role: role, Name: ans.Name, Groups: ans.Groups}, nil
}
