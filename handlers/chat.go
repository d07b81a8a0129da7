package handlers

import (
	"encoding/json"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/session"
)

// routeChat adds the chat's REST calls and the console login.
func routeChat(f *fiber.App, a *app.App, browser fiber.Handler) {
	g := f.Group("/api/v1/chat", browser, userAuth(a))
	g.Get("/conversations", func(c *fiber.Ctx) error {
		cs, err := a.Chat.Conversations(c.UserContext(), session.ChatSender(identity(c)))
		if err != nil {
			return chatError(err)
		}
		return c.JSON(fiber.Map{"conversations": cs})
	})
	g.Get("/conversations/:id/messages", func(c *fiber.Ctx) error {
		limit := 50
		if v := c.Query("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 200 {
				return apierr.Invalid("limit must be an integer from 1 to 200")
			}
			limit = n
		}
		var before uint64
		if v := c.Query("before"); v != "" {
			var ok bool
			if before, ok = ids.Parse(v); !ok {
				return apierr.Invalid("before must be a line id")
			}
		}
		page, err := a.Chat.Messages(c.UserContext(), session.ChatSender(identity(c)), c.Params("id"), before, limit)
		if err != nil {
			return chatError(err)
		}
		return c.JSON(page)
	})
	g.Post("/messages", func(c *fiber.Ctx) error {
		var req chat.SendRequest
		if err := json.Unmarshal(c.Body(), &req); err != nil {
			return apierr.New(400, "invalid_json", "body is not a JSON object: %v", err)
		}
		ack, err := a.Chat.Send(c.UserContext(), session.ChatSender(identity(c)), nil, req)
		if err != nil {
			return chatError(err)
		}
		return c.JSON(ack)
	})
	g.Post("/conversations/:id/close", func(c *fiber.Ctx) error {
		if err := a.Chat.Close(c.UserContext(), session.ChatSender(identity(c)), c.Params("id")); err != nil {
			return chatError(err)
		}
		return c.JSON(fiber.Map{"closed": true})
	})
	g.Get("/agents", func(c *fiber.Ctx) error {
		if identity(c).Role != auth.RoleAgent {
			return chatError(chat.ErrUsersCannot)
		}
		as, err := a.Chat.Agents(c.UserContext())
		if err != nil {
			return chatError(err)
		}
		return c.JSON(fiber.Map{"agents": as})
	})
	f.Post("/console/api/login", func(c *fiber.Ctx) error {
		var req struct{ Email, Password string }
		if err := json.Unmarshal(c.Body(), &req); err != nil {
			return apierr.New(400, "invalid_json", "body is not a JSON object: %v", err)
		}
		res, err := a.Chat.Login(c.UserContext(), req.Email, req.Password, c.IP())
		var te *chat.ThrottledError
		if asThrottled(err, &te) {
			c.Set(fiber.HeaderRetryAfter, strconv.Itoa(te.RetryAfterS))
		}
		if err != nil {
			return chatError(err)
		}
		return c.JSON(res)
	})
}

// chatError renders a chat error as the contract's body.
func chatError(err error) error {
	if e, ok := chat.AsError(err); ok {
		return apierr.New(e.Code, e.Name, "%s", e.Message)
	}
	return err
}

func asThrottled(err error, te **chat.ThrottledError) bool {
	if err == nil {
		return false
	}
	t, ok := err.(*chat.ThrottledError)
	*te = t
	return ok
}
