package handlers

import (
	"encoding/json"
	"log/slog"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/session"
)

func getUnread(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		u, err := a.Delivery.Unread(c.UserContext(), identity(c).UID)
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(u)
	}
}

func getMessages(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		limit := 50
		if v := c.Query("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 200 {
				return apierr.Invalid("limit must be an integer from 1 to 200")
			}
			limit = n
		}
		unread := false
		switch c.Query("unread") {
		case "", "false", "0":
		case "true", "1":
			unread = true
		default:
			return apierr.Invalid("unread must be true or false")
		}
		page, err := a.Session.ListMessages(c.UserContext(), identity(c).UID, unread, c.Query("before"), limit)
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(page)
	}
}

type idsBody struct {
	IDs []json.RawMessage `json:"ids"`
	All bool              `json:"all"`
}

func parseIDsBody(c *fiber.Ctx, allowAll bool) (idsBody, []uint64, error) {
	var b idsBody
	if err := json.Unmarshal(c.Body(), &b); err != nil {
		return b, nil, apierr.New(400, "invalid_json", "body is not a JSON object: %v", err)
	}
	if b.All && allowAll {
		if len(b.IDs) > 0 {
			return b, nil, apierr.Invalid("give ids or all, not both")
		}
		return b, nil, nil
	}
	ids, err := session.ParseIDList(b.IDs)
	return b, ids, err
}

func postRead(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		b, ids, err := parseIDsBody(c, true)
		if err != nil {
			return err
		}
		n, err := a.Session.Read(c.UserContext(), identity(c).UID, ids, b.All)
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(fiber.Map{"updated": n})
	}
}

func postAck(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		_, ids, err := parseIDsBody(c, false)
		if err != nil {
			return err
		}
		n, err := a.Session.Ack(c.UserContext(), identity(c).UID, ids)
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(fiber.Map{"acked": n})
	}
}

// unavailable passes client errors through and turns dependency failures
// into the contract's 503.
func unavailable(err error) error {
	if _, ok := apierr.As(err); ok {
		return err
	}
	slog.Error("dependency failed", "err", err)
	return apierr.ErrUnavailable
}
