package handlers

import (
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/ids"
)

func postBroadcast(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		req, err := broadcast.Parse(c.Body())
		if err != nil {
			return err
		}
		res, err := a.Broadcasts.Submit(c.UserContext(), req)
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
		list, err := a.Broadcasts.Pending(c.UserContext())
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(fiber.Map{"broadcasts": list})
	}
}

func deleteBroadcast(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, ok := ids.Parse(c.Params("id"))
		if !ok {
			return apierr.Invalid("id must be a broadcast id")
		}
		if err := a.Broadcasts.Cancel(c.UserContext(), id); err != nil {
			return unavailable(err)
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}

func putSegments(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		uid, err := strconv.ParseUint(c.Params("uid"), 10, 63)
		if err != nil || uid == 0 {
			return apierr.Invalid("uid must be a positive integer")
		}
		segs, err := broadcast.ParseSegments(c.Body())
		if err != nil {
			return err
		}
		if err := a.Broadcasts.SetSegments(c.UserContext(), uid, segs); err != nil {
			return unavailable(err)
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}
