package handlers

import (
	"bufio"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/session"
)

// sseHeartbeat is the comment interval; the contract asks for at most 25 s.
const sseHeartbeat = 20 * time.Second

// sseWriter is the SSE side of hub.Writer.
type sseWriter struct {
	w         *bufio.Writer
	heartbeat func() // a successful ping shows the peer is still there
}

func (s sseWriter) Write(frames []hub.Frame) error {
	for _, f := range frames {
		s.w.WriteString("event: ")
		s.w.WriteString(f.Type)
		if f.ID != "" {
			s.w.WriteString("\nid: ")
			s.w.WriteString(f.ID)
		}
		s.w.WriteString("\ndata: ")
		s.w.Write(f.Data)
		s.w.WriteString("\n\n")
	}
	return s.w.Flush()
}

func (s sseWriter) Ping() error {
	s.w.WriteString(": ping\n\n")
	if err := s.w.Flush(); err != nil {
		return err
	}
	s.heartbeat()
	return nil
}

func (s sseWriter) Close(code int, reason string) {
	if code == hub.CloseRestart || code == hub.CloseGoingAway || code == hub.CloseTryLater {
		s.w.WriteString("event: reconnect\ndata: {\"reason\":\"" + reason + "\"}\n\n")
		_ = s.w.Flush()
	}
}

// sseHandler is GET /sse: hello, replay (or resume after Last-Event-ID),
// then live events and comment heartbeats until the client goes.
func sseHandler(s *Server) fiber.Handler {
	a := s.App
	return func(c *fiber.Ctx) error {
		if s.draining.Load() {
			return apierr.New(503, "draining", "this instance is restarting, reconnect")
		}
		id := identity(c)
		var last uint64
		// A browser's own EventSource retry sends the header; a client
		// that reconnects on its own schedule (with jitter) can only put
		// it in the query.
		v := c.Get("Last-Event-ID")
		if v == "" {
			v = c.Query("last_event_id")
		}
		if v != "" {
			var ok bool
			if last, ok = ids.Parse(v); !ok {
				return apierr.Invalid("Last-Event-ID is not a message id")
			}
		}
		remote := c.IP()
		ctx, cancel := context.WithTimeout(c.UserContext(), 10*time.Second)
		cl, err := a.Session.Connect(ctx, id, session.ConnectOptions{Transport: "sse", RemoteAddr: remote, LastEventID: last})
		cancel()
		var busy *session.BusyError
		if errors.As(err, &busy) {
			c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(busy.RetryAfter.Round(time.Second)/time.Second)))
			return apierr.New(503, "busy", "too many connections at once, retry in %d ms", busy.RetryAfter.Milliseconds())
		}
		if err != nil {
			return unavailable(err)
		}
		c.Set(fiber.HeaderContentType, "text/event-stream")
		c.Set(fiber.HeaderCacheControl, "no-cache")
		c.Set(fiber.HeaderConnection, "keep-alive")
		c.Set("X-Accel-Buffering", "no")
		c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
			w.WriteString("retry: 2000\n\n")
			if w.Flush() == nil {
				_ = cl.Run(sseWriter{w: w, heartbeat: func() { a.Session.Heartbeat(cl) }}, min(sseHeartbeat, a.Cfg.HeartbeatOf(id.Role)))
			}
			a.Session.Disconnect(cl, remote)
		})
		return nil
	}
}
