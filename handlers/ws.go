package handlers

import (
	"context"
	"errors"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/session"
)

const writeWait = 10 * time.Second

// wsWriter is the WebSocket side of hub.Writer. Used by one goroutine.
type wsWriter struct {
	conn *fws.Conn
	cork *corkConn // nil when the listener is not ours
	// deadline is reused until half of writeWait is left, so batches in a
	// row set the same one (corkConn skips a repeat).
	deadline time.Time
}

func (w *wsWriter) Write(frames []hub.Frame) error {
	w.setDeadline()
	if w.cork != nil && len(frames) > 1 {
		w.cork.Cork()
	}
	if err := w.frames(frames); err != nil {
		if w.cork != nil {
			_ = w.cork.Uncork()
		}
		return err
	}
	if w.cork != nil {
		return w.cork.Uncork()
	}
	return nil
}

// setDeadline gives the library a write deadline with at least half of
// writeWait left.
func (w *wsWriter) setDeadline() {
	if now := time.Now(); w.deadline.Sub(now) < writeWait/2 {
		w.deadline = now.Add(writeWait)
	}
	_ = w.conn.SetWriteDeadline(w.deadline)
}

// frames hands frames to the library, one message each.
func (w *wsWriter) frames(frames []hub.Frame) error {
	for _, f := range frames {
		var err error
		if pm := sharedOf(f); pm != nil {
			err = w.conn.WritePreparedMessage(pm)
		} else {
			err = w.conn.WriteMessage(websocket.TextMessage, f.Data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sharedOf returns f's encoding shared by every connection it goes to (a
// broadcast), or nil when f has none.
func sharedOf(f hub.Frame) *websocket.PreparedMessage {
	if f.Shared == nil {
		return nil
	}
	pm, _ := f.Shared.Get(func() any {
		pm, _ := websocket.NewPreparedMessage(websocket.TextMessage, f.Data)
		return pm
	}).(*websocket.PreparedMessage)
	return pm
}

func (w *wsWriter) Ping() error {
	return w.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait))
}

// Close sends the close frame and lets the read loop wait, up to
// closeGrace, for the peer's own close frame: closing the socket while the
// peer's last frames (a pong, say) sit unread would reset the connection,
// and a reset can destroy our close frame before the peer reads it, so the
// client would see a broken connection instead of the code. The read loop
// ends on the peer's close or the deadline, and the library closes the
// connection when the handler returns.
func (w *wsWriter) Close(code int, reason string) {
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = w.conn.SetReadDeadline(time.Now().Add(closeGrace))
}

// closeGrace is how long a closing connection waits for the peer's close.
const closeGrace = time.Second

// wsUpgrade rejects non-upgrade requests and, while draining, new ones.
func wsUpgrade(s *Server) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if s.draining.Load() {
			return apierr.New(503, "draining", "this instance is restarting, reconnect")
		}
		if !fws.IsWebSocketUpgrade(c) {
			return apierr.New(426, "upgrade_required", "this endpoint speaks WebSocket only")
		}
		c.Locals("remote", c.IP())
		if cc := corkOf(c.Context().Conn()); cc != nil {
			c.Locals("cork", cc)
		}
		return c.Next()
	}
}

var wsBufferPool sync.Pool

// wsHandler runs one WebSocket: it connects the client, starts its single
// writer, and reads frames until the peer goes, is silent too long, or
// sends a frame over the limit (the library closes that with 1009).
func wsHandler(s *Server) fiber.Handler {
	a := s.App
	return fws.New(func(conn *fws.Conn) {
		id, _ := conn.Locals(localIdentity).(auth.Identity)
		remote, _ := conn.Locals("remote").(string)
		cork, _ := conn.Locals("cork").(*corkConn)
		conn.SetReadLimit(session.MaxFrameBytes)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := a.Session.Connect(ctx, id, session.ConnectOptions{Transport: "ws", RemoteAddr: remote})
		cancel()
		if err != nil {
			// 1013 either way; a refusal under load says when to come back
			// ("retry_ms=<n>", docs/protocol.md).
			reason := "unavailable"
			var busy *session.BusyError
			if errors.As(err, &busy) {
				reason = "busy retry_ms=" + strconv.FormatInt(busy.RetryAfter.Milliseconds(), 10)
			} else {
				a.Log.Error("connect failed", "uid", id.UID, "err", err)
			}
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, reason), time.Now().Add(time.Second))
			return
		}
		heartbeat := a.Cfg.HeartbeatOf(id.Role)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_ = c.Run(&wsWriter{conn: conn, cork: cork}, heartbeat)
		}()
		// Deferred, so a panic below still ends the client and waits for
		// its writer: the library hands the conn back to its pool when
		// this returns, and a live writer would then write to whoever
		// gets it next.
		defer func() {
			a.Session.Disconnect(c, remote)
			c.Close(hub.CloseGoingAway, "") // if Disconnect found it gone already
			<-wrote
		}()
		budget := a.Session.NewFrameBudget(id.Role)
		idle := heartbeat * 5 / 2
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		// alive extends the read deadline, unless the connection is closing:
		// then only the close grace counts (see wsWriter.Close), set again in
		// case the close came between the check and the extension.
		alive := func() {
			_ = conn.SetReadDeadline(time.Now().Add(idle))
			select {
			case <-c.Done():
				_ = conn.SetReadDeadline(time.Now().Add(closeGrace))
			default:
			}
		}
		conn.SetPongHandler(func(string) error {
			a.Session.Heartbeat(c)
			alive()
			return nil
		})
		for {
			mt, data, err := conn.ReadMessage()
			if err != nil {
				break
			}
			select {
			case <-c.Done(): // closing: only the peer's close frame is awaited
				continue
			default:
			}
			alive()
			a.Session.Heartbeat(c)
			if mt != websocket.TextMessage && mt != websocket.BinaryMessage {
				continue
			}
			if !a.Session.Admit(c, budget, data) {
				select {
				case <-c.Done(): // a flood: the writer closes the connection
					return
				default:
					continue
				}
			}
			fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
			if s.frameHook != nil {
				s.frameHook(fctx, c, data)
			} else {
				a.Session.HandleFrame(fctx, c, data)
			}
			fcancel()
		}
	}, fws.Config{ReadBufferSize: 1024, WriteBufferSize: 1024, WriteBufferPool: &wsBufferPool,
		// The library's default answers a panic with a JSON message,
		// written alongside this connection's writer; log it instead.
		RecoverHandler: func(*fws.Conn) {
			if r := recover(); r != nil {
				a.Log.Error("websocket handler panicked", "panic", r, "stack", string(debug.Stack()))
			}
		}})
}
