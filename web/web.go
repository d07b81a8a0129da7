package web

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
)

//go:embed static
var static embed.FS

// Mount serves the demo client at /demo/.
func Mount(f *fiber.App) {
	sub, _ := fs.Sub(static, "static")
	f.Use("/demo", filesystem.New(filesystem.Config{Root: http.FS(sub), Index: "index.html"}))
	f.Get("/", func(c *fiber.Ctx) error { return c.Redirect("/demo/") })
}
