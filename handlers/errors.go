package handlers

import (
	"errors"

	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app/apierr"
)

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorHandler renders every error as the contract's body: app errors as
// they are, Fiber's own (404, 405, 413…) mapped to a snake_case code, and
// anything else as a 500 that is logged, not shown.
func errorHandler(log func(msg string, args ...any)) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		status, code, msg := fiber.StatusInternalServerError, "internal", "internal error"
		var fe *fiber.Error
		if e, ok := apierr.As(err); ok {
			status, code, msg = e.Status, e.Code, e.Message
		} else if errors.As(err, &fe) {
			status, msg = fe.Code, fe.Message
			switch fe.Code {
			case fiber.StatusNotFound:
				code = "not_found"
			case fiber.StatusMethodNotAllowed:
				code = "method_not_allowed"
			case fiber.StatusRequestEntityTooLarge:
				code = "too_large"
			case fiber.StatusBadRequest:
				code = "invalid_input"
			default:
				code = "http_error"
			}
		} else {
			log("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		}
		var body errorBody
		body.Error.Code, body.Error.Message = code, msg
		return c.Status(status).JSON(body)
	}
}
