package handlers

import (
	"crypto/subtle"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/basicauth"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
)

// originCheck lets browser pages open /ws and /sse only from the server's
// own origin (the console, the demo) or one that cfg.AllowedOrigins lists.
// A request without an Origin header (a client that is not a browser)
// passes: browsers always send it on WebSocket handshakes and cross-origin
// EventSource requests, and cannot forge it. A refused page gets 403
// before any upgrade.
func originCheck(cfg app.Config) fiber.Handler {
	allowed := map[string]bool{}
	anyOrigin := false
	for _, o := range strings.Split(cfg.AllowedOrigins, ",") {
		switch o = strings.TrimSpace(o); o {
		case "":
		case "*":
			anyOrigin = true
		default:
			allowed[normalOrigin(o)] = true
		}
	}
	return func(c *fiber.Ctx) error {
		origin := c.Get(fiber.HeaderOrigin)
		if origin == "" || anyOrigin || allowed[normalOrigin(origin)] || ownOrigin(c, origin) {
			return c.Next()
		}
		return apierr.New(403, "origin_not_allowed", "pages from %s may not open this stream (see PUSHDESK_ALLOWED_ORIGINS)", origin)
	}
}

// ownOrigin reports whether origin names the host the request was sent to:
// its Host header, or X-Forwarded-Host behind a proxy that rewrites Host
// (a browser cannot set either on a WebSocket or EventSource request). The
// scheme is not compared: TLS may end at a proxy in front.
func ownOrigin(c *fiber.Ctx, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := hostOnly(u.Host, u.Scheme)
	if h := string(c.Request().Host()); h != "" && hostOnly(h, u.Scheme) == host {
		return true
	}
	if fwd := c.Get("X-Forwarded-Host"); fwd != "" {
		first, _, _ := strings.Cut(fwd, ",")
		return hostOnly(strings.TrimSpace(first), u.Scheme) == host
	}
	return false
}

// hostOnly lowercases host and drops the scheme's default port.
func hostOnly(host, scheme string) string {
	host = strings.ToLower(host)
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	}
	return host
}

// normalOrigin is o as origins are compared: lowercase, no trailing slash,
// no default port.
func normalOrigin(o string) string {
	o = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
	if u, err := url.Parse(o); err == nil && u.Host != "" {
		return u.Scheme + "://" + hostOnly(u.Host, u.Scheme)
	}
	return o
}

// metricsAuth guards /metrics on the public listener: it asks for
// `Authorization: Bearer <token>`, compared in constant time.
func metricsAuth(token string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if token == "" || subtle.ConstantTimeCompare([]byte(bearer(c)), []byte(token)) != 1 {
			return apierr.New(401, "unauthorized", "missing or wrong metrics token")
		}
		return c.Next()
	}
}

// routeAdmin mounts asynqmon at adminPath behind basic auth, only when an
// admin password is set and is not the ingest key: asynqmon deletes and
// runs tasks and shows their bodies, so a leaked ingest key must not open
// it. Served on the public listener (no internal one), it says so in the
// log at every start.
func routeAdmin(f *fiber.App, a *app.App, redisOpt asynq.RedisConnOpt, public bool) {
	switch {
	case a.Cfg.AdminPassword == "":
		a.Log.Info("asynqmon is off: set PUSHDESK_ADMIN_PASSWORD to serve it", "path", adminPath+"/")
		return
	case a.Cfg.AdminPassword == a.Cfg.IngestKey:
		a.Log.Error("asynqmon is off: PUSHDESK_ADMIN_PASSWORD must not be the ingest key", "path", adminPath+"/")
		return
	}
	if public {
		a.Log.Warn("asynqmon is served on the public listener: anyone who reaches it can try the admin password; set PUSHDESK_INTERNAL_ADDR to serve it only there",
			"path", adminPath+"/", "addr", a.Cfg.Addr)
	}
	mon := adaptor.HTTPHandler(asynqmon.New(asynqmon.Options{RootPath: adminPath, RedisConnOpt: redisOpt}))
	auth := basicauth.New(basicauth.Config{
		Realm: "pushdesk admin",
		Authorizer: func(user, pass string) bool {
			u := subtle.ConstantTimeCompare([]byte(user), []byte(a.Cfg.AdminUser))
			p := subtle.ConstantTimeCompare([]byte(pass), []byte(a.Cfg.AdminPassword))
			return u&p == 1
		},
		Unauthorized: func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="pushdesk admin"`)
			return apierr.New(401, "unauthorized", "admin credentials required")
		},
	})
	f.Use(adminPath, auth, mon)
}
