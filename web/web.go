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

// csp lets a page run only its own scripts and styles, and talk only to
// its own origin (WebSocket included: CSP's 'self' covers ws: and wss:
// of the same host).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Mount serves the browser pages: the agent console at /console/, the
// user demo (bell and chat widget) at /demo/, and the client module
// /pushdesk.js that both use and that other sites may load.
func Mount(f *fiber.App) {
	dir := func(name string) fiber.Handler {
		sub, err := fs.Sub(static, name)
		if err != nil {
			panic(err) // a path under the embedded tree: only a typo gets here
		}
		return filesystem.New(filesystem.Config{Root: http.FS(sub), Index: "index.html"})
	}
	headers := func(c *fiber.Ctx) error {
		c.Set("Content-Security-Policy", csp)
		c.Set("X-Content-Type-Options", "nosniff")
		c.Set("Referrer-Policy", "no-referrer")
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.Next()
	}
	f.Use("/console", headers, dir("static/console"))
	f.Use("/demo", headers, dir("static/demo"))
	f.Get("/base.css", headers, file("static/base.css", "text/css; charset=utf-8"))
	// The main site imports the module from its own pages: a module
	// script from another origin needs CORS.
	f.Get("/pushdesk.js", headers, func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderAccessControlAllowOrigin, "*")
		return c.Next()
	}, file("static/pushdesk.js", "text/javascript; charset=utf-8"))
	f.Get("/", func(c *fiber.Ctx) error { return c.Redirect("/demo/") })
}

// file serves one embedded file.
func file(name, contentType string) fiber.Handler {
	b, err := static.ReadFile(name)
	if err != nil {
		panic(err) // a path under the embedded tree: only a typo gets here
	}
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, contentType)
		return c.Send(b)
	}
}
