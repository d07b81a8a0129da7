package handlers

import (
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
)

func postBroadcast(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		req, err := app.ParseBroadcast(c.Body())
		if err != nil {
			return err
		}
		res, err := a.SubmitBroadcast(c.UserContext(), req)
		if err != nil {
			return err
		}
		if res.Duplicate {
			return c.Status(fiber.StatusOK).JSON(res)
		}
		return c.Status(fiber.StatusAccepted).JSON(res)
	}
}

func listBroadcasts(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		list, err := a.PendingBroadcasts(c.UserContext())
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(fiber.Map{"broadcasts": list})
	}
}

func deleteBroadcast(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, ok := app.ParseID(c.Params("id"))
		if !ok {
			return app.Invalid("id must be a broadcast id")
		}
		if err := a.CancelBroadcast(c.UserContext(), id); err != nil {
			return unavailable(err)
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}

func putSegments(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		uid, err := strconv.ParseUint(c.Params("uid"), 10, 63)
		if err != nil || uid == 0 {
			return app.Invalid("uid must be a positive integer")
		}
		segs, err := app.ParseSegments(c.Body())
		if err != nil {
			return err
		}
		if err := a.SetSegments(c.UserContext(), uid, segs); err != nil {
			return unavailable(err)
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}
