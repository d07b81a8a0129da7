package chat

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/mail"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/models"
	"golang.org/x/crypto/bcrypt"
)

// Login limits: failures counted per email and per address over
// loginFailTTL (from the first); past them, logins answer
// ErrLoginThrottled without checking the password.
const (
	maxFailsPerEmail = 5
	maxFailsPerAddr  = 20
	bcryptCost       = 12
)

// dummyHash is compared against when the email is unknown, so that an
// unknown email takes as long as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcryptCost)

// LoginResult is POST /console/api/login's answer.
type LoginResult struct {
	Token string `json:"token"`
	Agent struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"agent"`
}

// Login checks a console login and mints an agent token. remote is the
// caller's address.
func (s *Service) Login(ctx context.Context, email, password, remote string) (*LoginResult, error) {
	email = normalEmail(email)
	if email == "" || password == "" || len(password) > 72 {
		return nil, ErrInvalidLogin
	}
	// Counted before the (slow) compare, and taken back when right: see
	// login.lua.
	res, err := s.run(ctx, loginScript, email, remote, "try", itoa(loginFailTTL.Milliseconds())).AsIntSlice()
	if err != nil || len(res) != 4 {
		return nil, s.unavailable("login count", err)
	}
	if ne, na := res[0], res[1]; ne > maxFailsPerEmail || na > maxFailsPerAddr {
		var ttl int64
		if ne > maxFailsPerEmail {
			ttl = res[2]
		}
		if na > maxFailsPerAddr {
			ttl = max(ttl, res[3])
		}
		return nil, &ThrottledError{RetryAfterS: int(max(ttl, 1000)+999) / 1000}
	}
	a, err := s.repo.AgentByEmail(ctx, email)
	if err != nil && !errors.Is(err, models.ErrNoAgent) {
		return nil, s.unavailable("find agent", err)
	}
	hash := dummyHash
	if a != nil {
		hash = []byte(a.PasswordHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || a == nil || a.Disabled {
		s.log.Warn("console login failed", "email", email, "remote", remote)
		return nil, ErrInvalidLogin
	}
	if err := s.run(ctx, loginScript, email, remote, "ok").Error(); err != nil {
		s.log.Warn("chat: a right login stays counted as a failure", "agent", a.ID, "err", err)
	}
	tok, err := s.mint(a.ID, a.Name, s.cfg.TokenTTL)
	if err != nil {
		return nil, err
	}
	out := &LoginResult{Token: tok}
	out.Agent.ID, out.Agent.Name, out.Agent.Email = utoa(a.ID), a.Name, a.Email
	s.log.Info("console login", "agent", a.ID, "remote", remote)
	return out, nil
}

func normalEmail(e string) string {
	e = strings.ToLower(strings.TrimSpace(e))
	if len(e) > 254 {
		return ""
	}
	if addr, err := mail.ParseAddress(e); err != nil || addr.Address != e {
		return ""
	}
	return e
}

// AddAgent creates a console login with a generated password, which it
// returns: the only time it exists in clear.
func AddAgent(ctx context.Context, repo *models.ChatRepo, email, name string) (*models.ChatAgent, string, error) {
	email = normalEmail(email)
	if email == "" {
		return nil, "", errors.New("a valid --email is required")
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 {
		return nil, "", errors.New("--name is required (at most 128 bytes)")
	}
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", err
	}
	password := base64.RawURLEncoding.EncodeToString(b[:])
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return nil, "", err
	}
	a := &models.ChatAgent{Email: email, Name: name, PasswordHash: string(hash), CreatedAt: time.Now().UTC()}
	if err := repo.AddAgent(ctx, a); err != nil {
		return nil, "", err
	}
	return a, password, nil
}
