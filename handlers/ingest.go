package handlers

import (
	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/delivery"
)

// postMessages is POST /internal/v1/messages.
func postMessages(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		req, err := delivery.ParseIngest(c.Body())
		if err != nil {
			return err
		}
		res, err := a.Delivery.Ingest(c.UserContext(), req)
		if err != nil {
			return err
		}
		status := fiber.StatusAccepted
		if res.Duplicate {
			status = fiber.StatusOK
		}
		return c.Status(status).JSON(res)
	}
}
