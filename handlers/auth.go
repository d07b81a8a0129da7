package handlers

import (
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/auth"
)

const localIdentity = "pushdesk.identity"

func bearer(c *fiber.Ctx) string {
	h := c.Get(fiber.HeaderAuthorization)
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// userAuth verifies the user's token from the header or ?token= and puts
// the identity in the request's locals. It answers 401 before any upgrade.
func userAuth(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		tok := bearer(c)
		if tok == "" {
			tok = c.Query("token")
		}
		id, err := a.Auth.Authenticate(c.UserContext(), tok)
		if err != nil {
			return err
		}
		c.Locals(localIdentity, id)
		return c.Next()
	}
}

func identity(c *fiber.Ctx) auth.Identity {
	id, _ := c.Locals(localIdentity).(auth.Identity)
	return id
}

// ingestAuth checks the main site's bearer key in constant time.
func ingestAuth(key string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if subtle.ConstantTimeCompare([]byte(bearer(c)), []byte(key)) != 1 {
			return apierr.New(401, "unauthorized", "missing or wrong ingest key")
		}
		return c.Next()
	}
}
